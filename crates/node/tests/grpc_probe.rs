//! The hand-written h2c `grpc.health.v1.Health/Check` client against a real gRPC server (tonic's
//! health service) on loopback: SERVING, NOT_SERVING, an unknown service, and no server at all.

use k8s_openapi::api::core::v1::GRPCAction;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use stead_node::probe::ProbeResult;
use stead_node::prober;

fn action(port: u16, service: Option<&str>) -> GRPCAction {
    GRPCAction { port: i32::from(port), service: service.map(str::to_owned) }
}

#[test]
fn grpc_health_check_against_tonic() {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), async {
            let (reporter, service) = tonic_health::server::health_reporter();
            reporter.set_service_status("cart", tonic_health::ServingStatus::Serving).await;
            reporter.set_service_status("down", tonic_health::ServingStatus::NotServing).await;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let server = tokio::spawn(
                tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming),
            );
            let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
            let t = Duration::from_secs(5);
            let o = prober::grpc(&action(port, None), ip, t).await;
            assert_eq!(o.result, ProbeResult::Success, "{}", o.message);
            let o = prober::grpc(&action(port, Some("cart")), ip, t).await;
            assert_eq!(o.result, ProbeResult::Success, "{}", o.message);
            let o = prober::grpc(&action(port, Some("down")), ip, t).await;
            assert_eq!(o.result, ProbeResult::Failure);
            assert!(o.message.ends_with("service \"down\" status NOT_SERVING"), "{}", o.message);
            let o = prober::grpc(&action(port, Some("nope")), ip, t).await;
            assert_eq!(o.result, ProbeResult::Failure);
            assert!(o.message.contains("no response message"), "{}", o.message);
            server.abort();
            let _ = server.await;
            let o = prober::grpc(&action(port, None), ip, t).await;
            assert_eq!(o.result, ProbeResult::Failure, "{}", o.message);
        })
        .await
        .expect("test timed out");
    });
}
