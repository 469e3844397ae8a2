use super::*;
use crate::syscall::{LinuxSyscall, RecordingSyscall, SysCall};
use nix::sys::signal::Signal;
use serde_json::json;
use std::net::Ipv4Addr;

fn container() -> Container {
    serde_json::from_value(json!({"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}))
        .expect("container")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[test]
fn ports_by_number_and_name() {
    let c = container();
    assert_eq!(resolve_port(&c, &IntOrString::Int(80)), Ok(80));
    assert_eq!(resolve_port(&c, &IntOrString::String("http".into())), Ok(8080));
    assert_eq!(resolve_port(&c, &IntOrString::String("9090".into())), Ok(9090));
    assert_eq!(
        resolve_port(&c, &IntOrString::String("grpc".into())).unwrap_err().to_string(),
        "container \"app\": port \"grpc\" is not a named containerPort of the container"
    );
    assert_eq!(
        resolve_port(&c, &IntOrString::Int(70000)).unwrap_err().to_string(),
        "container \"app\": port 70000 is out of range 1-65535"
    );
}

#[test]
fn http_request_shape() {
    let a: HTTPGetAction = serde_json::from_value(json!({"port": 80, "path": "healthz",
        "httpHeaders": [{"name": "X-Probe", "value": "a\r\nEvil: 1"}, {"name": "Host", "value": "svc"}]}))
    .expect("action");
    let req = http_request(&a, IpAddr::V4(Ipv4Addr::new(10, 244, 0, 5)), 80);
    assert_eq!(
        req,
        "GET /healthz HTTP/1.1\r\nUser-Agent: kube-probe/1.35\r\nAccept: */*\r\nX-Probe: aEvil: 1\r\n\
         Host: svc\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(parse_status(b"HTTP/1.0 204 No Content\r\n"), Some(204));
    assert_eq!(parse_status(b"SSH-2.0\r\n"), None);
}

/// Serves one canned HTTP response per connection on loopback; returns the port.
async fn http_server(status: u16) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n").as_bytes()).await;
        }
    });
    port
}

#[test]
fn http_get_success_failure_and_timeout() {
    rt().block_on(async {
        let c = container();
        let t = Duration::from_secs(2);
        let ok = http_server(200).await;
        let bad = http_server(500).await;
        let action =
            |port: u16| -> HTTPGetAction { serde_json::from_value(json!({"port": port})).expect("a") };
        assert_eq!(http_get(&action(ok), &c, LOOPBACK, t).await.result, ProbeResult::Success);
        let o = http_get(&action(bad), &c, LOOPBACK, t).await;
        assert_eq!(o.result, ProbeResult::Failure);
        assert!(o.message.ends_with("HTTP probe failed with statuscode: 500"), "{}", o.message);
        // A listener that never answers: the timeout decides.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = silent.local_addr().expect("addr").port();
        let o = http_get(&action(port), &c, LOOPBACK, Duration::from_millis(200)).await;
        assert!(o.message.contains("timed out"), "{}", o.message);
        let ftp: HTTPGetAction = serde_json::from_value(json!({"port": ok, "scheme": "FTP"})).expect("a");
        assert_eq!(
            http_get(&ftp, &c, LOOPBACK, t).await.message,
            "scheme \"FTP\" is not supported (HTTP or HTTPS)"
        );
    });
}

/// A real TLS server on loopback with the self-signed test certificate in `tests/data` (made once
/// with `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 36500
/// -subj /CN=localhost -keyout probe-tls-key.pem -out probe-tls-cert.pem`). Each connection's
/// request head is sent on `seen`; the reply is a canned status.
async fn https_server(status: u16, seen: tokio::sync::mpsc::UnboundedSender<String>) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    let cert = CertificateDer::from_pem_file(format!("{data}/probe-tls-cert.pem")).expect("cert");
    let key = PrivateKeyDer::from_pem_file(format!("{data}/probe-tls-key.pem")).expect("key");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let Ok(mut s) = acceptor.accept(tcp).await else { continue };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = seen.send(String::from_utf8_lossy(&head).into_owned());
            let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
            let _ = s.write_all(reply.as_bytes()).await;
            let _ = s.shutdown().await;
        }
    });
    port
}

#[test]
fn https_get_skips_verification_and_judges_the_status() {
    rt().block_on(async {
        let c = container();
        let t = Duration::from_secs(5);
        let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let ok = https_server(200, tx.clone()).await;
        let bad = https_server(500, tx).await;
        let action = |port: u16| -> HTTPGetAction {
            serde_json::from_value(json!({"port": port, "scheme": "HTTPS", "path": "/healthz",
                "httpHeaders": [{"name": "X-Probe", "value": "1"}]}))
            .expect("a")
        };
        // The certificate is self-signed for "localhost" and the probe dials 127.0.0.1: only a
        // client that skips verification, as the kubelet does, gets through.
        let o = http_get(&action(ok), &c, LOOPBACK, t).await;
        assert_eq!(o.result, ProbeResult::Success, "{}", o.message);
        assert_eq!(o.message, format!("GET https://127.0.0.1:{ok}/healthz: HTTP 200"));
        let head = seen.recv().await.expect("request");
        assert!(head.starts_with("GET /healthz HTTP/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("Host: 127.0.0.1:{ok}\r\n")), "{head}");
        assert!(head.contains("User-Agent: kube-probe/1.35\r\n"), "{head}");
        assert!(head.contains("X-Probe: 1\r\n"), "{head}");

        let o = http_get(&action(bad), &c, LOOPBACK, t).await;
        assert_eq!(o.result, ProbeResult::Failure);
        assert!(o.message.ends_with("HTTP probe failed with statuscode: 500"), "{}", o.message);

        // A plain-HTTP server answered over HTTPS: the handshake fails and says so.
        let plain = http_server(200).await;
        let o = http_get(&action(plain), &c, LOOPBACK, t).await;
        assert_eq!(o.result, ProbeResult::Failure);
        assert!(o.message.contains("TLS handshake failed"), "{}", o.message);

        // A listener that accepts but never answers the ClientHello: the timeout decides.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = silent.local_addr().expect("addr").port();
        let o = http_get(&action(port), &c, LOOPBACK, Duration::from_millis(300)).await;
        assert_eq!(o.result, ProbeResult::Failure);
        assert!(o.message.contains("timed out"), "{}", o.message);
    });
}

#[test]
fn tcp_socket_connects_or_fails() {
    rt().block_on(async {
        let c = container();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        let a: TCPSocketAction = serde_json::from_value(json!({"port": port})).expect("a");
        assert_eq!(tcp_socket(&a, &c, LOOPBACK, Duration::from_secs(2)).await.result, ProbeResult::Success);
        drop(l);
        assert_eq!(tcp_socket(&a, &c, LOOPBACK, Duration::from_secs(2)).await.result, ProbeResult::Failure);
    });
}

#[test]
fn exec_exit_codes_and_timeout() {
    rt().block_on(async {
        let cmd = |script: &str| {
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c").arg(script).process_group(0);
            c
        };
        assert_eq!(
            exec(&LinuxSyscall, cmd("exit 0"), Duration::from_secs(5)).await.result,
            ProbeResult::Success
        );
        assert_eq!(
            exec(&LinuxSyscall, cmd("exit 3"), Duration::from_secs(5)).await.result,
            ProbeResult::Failure
        );
        let t = std::time::Instant::now();
        let o = exec(&LinuxSyscall, cmd("sleep 30"), Duration::from_millis(200)).await;
        assert!(o.message.contains("timed out"), "{}", o.message);
        assert!(t.elapsed() < Duration::from_secs(10));
    });
}

#[test]
fn an_exec_timeout_kills_the_process_group_through_the_syscall_seam() {
    let sys = RecordingSyscall::default();
    rt().block_on(async {
        let mut cmd = tokio::process::Command::new("sleep");
        cmd.arg("30").process_group(0);
        let o = exec(&sys, cmd, Duration::from_millis(100)).await;
        assert!(o.message.contains("timed out"), "{}", o.message);
    });
    let calls = sys.calls();
    assert!(matches!(calls.as_slice(), [SysCall::Killpg(pgid, Signal::SIGKILL)] if *pgid > 0), "{calls:?}");
}

#[test]
fn h2_request_frames() {
    let req = h2::request("10.0.0.1:50051", "cart");
    assert!(req.starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
    let rest = &req[24..];
    // SETTINGS: empty, stream 0.
    assert_eq!(&rest[..9], &[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let rest = &rest[9..];
    assert_eq!((rest[3], rest[4], rest[8]), (1, 4, 1), "HEADERS, END_HEADERS, stream 1");
    let hlen = usize::from(rest[2]);
    let block = &rest[9..9 + hlen];
    assert_eq!(&block[..2], &[0x83, 0x86]);
    assert!(block.windows(28).any(|w| w == b"/grpc.health.v1.Health/Check"));
    let data = &rest[9 + hlen..];
    assert_eq!((data[3], data[4]), (0, 1), "DATA with END_STREAM");
    assert_eq!(&data[9..], &[0, 0, 0, 0, 6, 0x0a, 4, b'c', b'a', b'r', b't']);
    let mut v = vec![];
    h2::hpack_int(&mut v, 0, 7, 300);
    assert_eq!(v, [127, 173, 1], "RFC 7541 integer encoding");
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[test]
fn h2_reader_acks_and_reads_the_status() {
    let mut r = h2::Reader::default();
    let mut input = frame(4, 0, 0, &[0, 3, 0, 0, 0, 100]);
    input.extend(frame(6, 0, 0, &[1, 2, 3, 4, 5, 6, 7, 8]));
    input.extend(frame(1, 4, 1, &[0x88]));
    let step = r.feed(&input).expect("feed");
    let mut want = frame(4, 1, 0, &[]);
    want.extend(frame(6, 1, 0, &[1, 2, 3, 4, 5, 6, 7, 8]));
    assert_eq!(step, h2::Step { reply: want, status: None });
    // The message split over two DATA frames, the first one padded.
    let step = r.feed(&frame(0, 8, 1, &[2, 0, 0, 0, 0, 0xff, 0xff])).expect("feed");
    assert_eq!(step.status, None);
    let step = r.feed(&frame(0, 0, 1, &[2, 0x08, 0x01])).expect("feed");
    assert_eq!(step.status, Some(1));
    let mut r = h2::Reader::default();
    let e = r.feed(&frame(1, 5, 1, &[0x88])).unwrap_err();
    assert!(e.contains("no response message"), "{e}");
    assert_eq!(h2::parse_response(&[0x08, 0x02]), Ok(2));
    assert_eq!(h2::parse_response(&[]), Ok(0));
}

#[test]
fn an_exec_probe_failure_carries_the_commands_output() {
    let sh = |script: &str| {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    };
    rt().block_on(async {
        let ok = exec(&LinuxSyscall, sh("echo fine"), Duration::from_secs(5)).await;
        assert_eq!(ok.result, ProbeResult::Success);
        let failed = exec(
            &LinuxSyscall,
            sh("echo not ready yet; echo missing /mnt/ready >&2; exit 1"),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(
            (failed.result, failed.message.as_str()),
            (ProbeResult::Failure, "not ready yet\nmissing /mnt/ready")
        );
        let silent = exec(&LinuxSyscall, sh("exit 3"), Duration::from_secs(5)).await;
        assert_eq!((silent.result, silent.message.as_str()), (ProbeResult::Failure, "exec: exit status: 3"));
        let long =
            exec(&LinuxSyscall, sh("head -c 100000 /dev/zero | tr '\\0' x; exit 1"), Duration::from_secs(5))
                .await;
        assert_eq!(long.message.len(), 10 * 1024, "the output kept is bounded");
        // Output past the limit is read and dropped: the writer does not die of SIGPIPE.
        let verbose =
            exec(&LinuxSyscall, sh("head -c 100000 /dev/zero; echo done >&2"), Duration::from_secs(5)).await;
        assert_eq!(verbose.result, ProbeResult::Success, "{}", verbose.message);
        // A background child holding the pipes does not turn a clean exit into a timeout.
        let background = exec(&LinuxSyscall, sh("sleep 5 & exit 0"), Duration::from_secs(2)).await;
        assert_eq!(background.result, ProbeResult::Success, "{}", background.message);
        let background = exec(&LinuxSyscall, sh("echo no; sleep 5 & exit 1"), Duration::from_secs(2)).await;
        assert_eq!((background.result, background.message.as_str()), (ProbeResult::Failure, "no"));
        let slow = exec(&LinuxSyscall, sh("sleep 5"), Duration::from_millis(200)).await;
        assert_eq!(slow.message, "exec: command timed out after 0.2s");
    });
}
