//! Queries per second and latency of the stead DNS server against a baseline: a plain hickory
//! `Server` with a `Catalog` over hickory's static `InMemoryZoneHandler` holding the same A
//! records, in the same process, asked by the same raw-UDP client on loopback.
//!
//! `cargo bench -p stead-dns` runs ~2 s per phase; run as a test (no `--bench` argument) it is a
//! short smoke run. Load is bounded and stops by itself.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::rdata::{A, NS, SOA};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use stead_dns::{DnsConfig, DnsServer, Records};
use tokio::net::UdpSocket;

const SERVICES: u32 = 1000;
const CLIENTS: usize = 8;

fn service_name(i: u32) -> String {
    format!("svc-{i}.ns-{}.svc.cluster.local.", i % 10)
}

fn ip(i: u32, k: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + i * 4 + k)
}

fn stead_records() -> Records {
    let mut r = Records::new();
    for i in 0..SERVICES {
        for k in 0..3 {
            r.add_a(&service_name(i), ip(i, k));
        }
    }
    r
}

async fn baseline_server() -> (Server<Catalog>, SocketAddr) {
    let origin = Name::from_ascii("cluster.local.").unwrap();
    let mut zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
        origin.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
    );
    let ns = Name::from_ascii("ns.dns.cluster.local.").unwrap();
    let hostmaster = Name::from_ascii("hostmaster.cluster.local.").unwrap();
    let soa = SOA::new(ns.clone(), hostmaster, 1, 7200, 1800, 86400, 30);
    zone.upsert_mut(Record::from_rdata(origin.clone(), 30, RData::SOA(soa)), 1);
    zone.upsert_mut(Record::from_rdata(origin.clone(), 30, RData::NS(NS(ns))), 1);
    for i in 0..SERVICES {
        let name = Name::from_ascii(service_name(i)).unwrap();
        for k in 0..3 {
            zone.upsert_mut(Record::from_rdata(name.clone(), 30, RData::A(A(ip(i, k)))), 1);
        }
    }
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::new(&origin), vec![Arc::new(zone)]);
    let mut server = Server::new(catalog);
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    server.register_socket(udp);
    (server, addr)
}

/// Pre-encoded queries: A of existing services, plus one in ten for a name that does not exist.
fn queries() -> Vec<Vec<u8>> {
    (0..SERVICES)
        .map(|i| {
            let name =
                if i % 10 == 9 { format!("nope-{i}.ns-1.svc.cluster.local.") } else { service_name(i) };
            let mut m = Message::query();
            m.metadata.id = (i % 65536) as u16;
            m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
            m.to_vec().unwrap()
        })
        .collect()
}

/// `CLIENTS` sockets, each one query in flight, for `duration`. Returns queries per second.
async fn throughput(addr: SocketAddr, duration: Duration, queries: Arc<Vec<Vec<u8>>>) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (stop, done, queries) = (Arc::clone(&stop), Arc::clone(&done), Arc::clone(&queries));
        tasks.push(tokio::spawn(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            socket.connect(addr).await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut i = c * 97;
            while !stop.load(Ordering::Relaxed) {
                socket.send(&queries[i % queries.len()]).await.unwrap();
                // A lost datagram must not hang the run.
                if let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buf)).await
                {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// One client, one query at a time: (p50, p99) latency.
async fn latency(addr: SocketAddr, n: usize, queries: &[Vec<u8>]) -> (Duration, Duration) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        socket.send(&queries[i % queries.len()]).await.unwrap();
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buf)).await {
            samples.push(t.elapsed());
        }
    }
    samples.sort();
    let at = |q: f64| samples.get(((samples.len() as f64 - 1.0) * q) as usize).copied().unwrap_or_default();
    (at(0.5), at(0.99))
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (duration, samples) =
        if full { (Duration::from_secs(2), 5000) } else { (Duration::from_millis(200), 200) };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let cfg = DnsConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            cluster_domain: "cluster.local".into(),
            upstreams: vec![],
            ttl: 30,
        };
        let stead = DnsServer::bind(cfg).await.unwrap();
        // Best of five: the machine may be shared; the update itself is what is measured.
        let mut update_time = Duration::MAX;
        for _ in 0..5 {
            let records = stead_records();
            let t = Instant::now();
            stead.update(records);
            update_time = update_time.min(t.elapsed());
        }
        let stead_addr = stead.local_addrs()[0];
        let (mut baseline, baseline_addr) = baseline_server().await;
        let queries = Arc::new(queries());

        // Warm both up, then measure each in turn.
        throughput(stead_addr, duration / 4, Arc::clone(&queries)).await;
        throughput(baseline_addr, duration / 4, Arc::clone(&queries)).await;
        let stead_qps = throughput(stead_addr, duration, Arc::clone(&queries)).await;
        let base_qps = throughput(baseline_addr, duration, Arc::clone(&queries)).await;
        let (s50, s99) = latency(stead_addr, samples, &queries).await;
        let (b50, b99) = latency(baseline_addr, samples, &queries).await;

        let mut table = BTreeMap::new();
        table.insert("1 stead-dns", (stead_qps, s50, s99));
        table.insert("2 baseline (hickory Catalog + InMemoryZoneHandler)", (base_qps, b50, b99));
        println!(
            "dns: {SERVICES} services x 3 A records, {CLIENTS} UDP clients on loopback, {duration:?} per run"
        );
        for (name, (qps, p50, p99)) in &table {
            println!(
                "  {:<52} {:>9.0} queries/s   latency p50 {:>7.1?} p99 {:>7.1?}",
                &name[2..],
                qps,
                p50,
                p99
            );
        }
        println!(
            "  ratio stead/baseline: {:.2}x queries/s, p99 {:.2}x",
            stead_qps / base_qps,
            s99.as_secs_f64() / b99.as_secs_f64().max(1e-9)
        );
        println!("  zone update ({SERVICES} names, {} A records; best of 5): {update_time:?}", SERVICES * 3);

        stead.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), baseline.shutdown_gracefully()).await;
    });
}
