//! The server through real sockets on loopback, asked by hickory's own client over UDP and TCP.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_server::net::client::{Client, ClientHandle};
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::net::tcp::TcpClientStream;
use hickory_server::net::udp::UdpClientStream;
use stead_dns::{DnsConfig, DnsError, DnsServer, Records};
use tokio::net::UdpSocket;

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Every test body runs under a timeout: nothing waits forever.
fn run<F: Future<Output = ()>>(body: F) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async { tokio::time::timeout(TEST_TIMEOUT, body).await.expect("test timed out") });
}

fn config(upstreams: Vec<SocketAddr>) -> DnsConfig {
    DnsConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        cluster_domain: "cluster.local".to_string(),
        upstreams,
        ttl: 30,
    }
}

async fn udp_client(addr: SocketAddr) -> Client<TokioRuntimeProvider> {
    let conn = UdpClientStream::builder(addr, TokioRuntimeProvider::default())
        .with_timeout(Some(Duration::from_secs(5)))
        .build();
    let (client, bg) = Client::<TokioRuntimeProvider>::from_sender(conn);
    tokio::spawn(bg);
    client
}

async fn tcp_client(addr: SocketAddr) -> Client<TokioRuntimeProvider> {
    let (stream, sender) =
        TcpClientStream::new(addr, None, Some(Duration::from_secs(5)), TokioRuntimeProvider::new());
    let (client, bg) = Client::<TokioRuntimeProvider>::new(stream.await.unwrap(), sender);
    tokio::spawn(bg);
    client
}

async fn ask(client: &mut Client<TokioRuntimeProvider>, name: &str, t: RecordType) -> Message {
    let response = client.query(Name::from_str(name).unwrap(), DNSClass::IN, t).await.unwrap();
    response.into_message()
}

fn a_of(m: &Message) -> Vec<Ipv4Addr> {
    let mut ips: Vec<Ipv4Addr> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    ips.sort();
    ips
}

fn has_soa_authority(m: &Message) -> bool {
    m.authorities.iter().any(|r| r.record_type() == RecordType::SOA)
}

fn cluster_records() -> Records {
    let mut r = Records::new();
    for i in 10..13 {
        let ip = Ipv4Addr::new(10, 244, 0, i);
        r.add_a("web.default.svc.cluster.local", ip);
        r.add_a(&format!("web-{}.web.default.svc.cluster.local", i - 10), ip);
        r.add_a(&format!("10-244-0-{i}.default.pod.cluster.local"), ip);
        r.add_srv(
            "_http._tcp.web.default.svc.cluster.local",
            8080,
            &format!("web-{}.web.default.svc.cluster.local", i - 10),
            0,
            100,
        );
    }
    r.add_a("api.shop.svc.cluster.local", Ipv4Addr::new(10, 96, 0, 20));
    r
}

#[test]
fn answers_every_record_type_over_udp_and_tcp() {
    run(async {
        let server = DnsServer::bind(config(vec![])).await.unwrap();
        server.update(cluster_records());
        let addr = server.local_addrs()[0];
        for tcp in [false, true] {
            let mut c = if tcp { tcp_client(addr).await } else { udp_client(addr).await };

            let m = ask(&mut c, "web.default.svc.cluster.local.", RecordType::A).await;
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert!(m.metadata.authoritative, "AA bit");
            assert_eq!(a_of(&m), (10..13).map(|i| Ipv4Addr::new(10, 244, 0, i)).collect::<Vec<_>>());

            let m = ask(&mut c, "web-1.web.default.svc.cluster.local.", RecordType::A).await;
            assert_eq!(a_of(&m), vec![Ipv4Addr::new(10, 244, 0, 11)]);
            let m = ask(&mut c, "10-244-0-12.default.pod.cluster.local.", RecordType::A).await;
            assert_eq!(a_of(&m), vec![Ipv4Addr::new(10, 244, 0, 12)]);

            // AAAA of a name with only A: empty NOERROR (not NXDOMAIN), SOA for negative caching.
            let m = ask(&mut c, "web.default.svc.cluster.local.", RecordType::AAAA).await;
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert!(m.answers.is_empty());
            assert!(has_soa_authority(&m));
            assert!(m.metadata.authoritative);

            // Other types of existing names: NODATA too.
            let m = ask(&mut c, "web.default.svc.cluster.local.", RecordType::MX).await;
            assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NoError, 0));

            let m = ask(&mut c, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV).await;
            let mut srv: Vec<(u16, String)> = m
                .answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::SRV(s) => Some((s.port, s.target.to_ascii())),
                    _ => None,
                })
                .collect();
            srv.sort();
            assert_eq!(srv.len(), 3);
            assert_eq!(srv[0], (8080, "web-0.web.default.svc.cluster.local.".to_string()));
            assert_eq!(m.additionals.iter().filter(|r| r.record_type() == RecordType::A).count(), 3);

            let m = ask(&mut c, "11.0.244.10.in-addr.arpa.", RecordType::PTR).await;
            let ptrs: Vec<String> = m
                .answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::PTR(p) => Some(p.0.to_ascii()),
                    _ => None,
                })
                .collect();
            assert_eq!(ptrs, vec!["web-1.web.default.svc.cluster.local.".to_string()]);
            let m = ask(&mut c, "20.0.96.10.in-addr.arpa.", RecordType::PTR).await;
            assert_eq!(m.answers.len(), 1);

            let m = ask(&mut c, "cluster.local.", RecordType::SOA).await;
            assert!(matches!(&m.answers[..], [r] if r.record_type() == RecordType::SOA));
            let m = ask(&mut c, "cluster.local.", RecordType::NS).await;
            let RData::NS(ns) = &m.answers[0].data else { panic!("NS expected, got {m:?}") };
            assert_eq!(ns.0.to_ascii(), "ns.dns.cluster.local.");
            let m = ask(&mut c, "ns.dns.cluster.local.", RecordType::A).await;
            assert_eq!(a_of(&m), vec![Ipv4Addr::LOCALHOST]);

            // Empty non-terminals exist.
            let m = ask(&mut c, "default.svc.cluster.local.", RecordType::A).await;
            assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NoError, 0));
        }
        server.shutdown().await;
    });
}

#[test]
fn unknown_names_in_the_zone_are_nxdomain_with_soa() {
    run(async {
        let server = DnsServer::bind(config(vec![])).await.unwrap();
        server.update(cluster_records());
        let mut c = udp_client(server.local_addrs()[0]).await;
        for name in
            ["nope.default.svc.cluster.local.", "web-9.web.default.svc.cluster.local.", "x.cluster.local."]
        {
            let m = ask(&mut c, name, RecordType::A).await;
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
            assert!(m.metadata.authoritative);
            assert!(m.answers.is_empty());
            let soa = m.authorities.iter().find(|r| r.record_type() == RecordType::SOA).expect("SOA");
            assert_eq!(soa.name.to_ascii(), "cluster.local.");
        }
        server.shutdown().await;
    });
}

#[test]
fn names_are_case_insensitive() {
    run(async {
        let server = DnsServer::bind(config(vec![])).await.unwrap();
        let mut r = Records::new();
        r.add_a("Api.Shop.svc.Cluster.Local", Ipv4Addr::new(10, 96, 0, 20));
        server.update(r);
        let mut c = udp_client(server.local_addrs()[0]).await;
        for name in
            ["API.SHOP.SVC.CLUSTER.LOCAL.", "api.shop.svc.cluster.local.", "aPi.sHoP.Svc.CLUSTER.local."]
        {
            let m = ask(&mut c, name, RecordType::A).await;
            assert_eq!(a_of(&m), vec![Ipv4Addr::new(10, 96, 0, 20)], "{name}");
        }
        let m = ask(&mut c, "SOA-less.CLUSTER.LOCAL.", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        server.shutdown().await;
    });
}

/// Generation `g`: one name with four addresses `10.g.0.1-4`. A torn answer would mix
/// generations or miss addresses.
fn generation(g: u8) -> Records {
    let mut r = Records::new();
    for i in 1..=4 {
        r.add_a("gen.default.svc.cluster.local", Ipv4Addr::new(10, g, 0, i));
        r.add_a(&format!("p{i}.gen.default.svc.cluster.local"), Ipv4Addr::new(10, g, 0, i));
    }
    r
}

#[test]
fn updates_are_atomic_while_queries_run() {
    run(async {
        let server = Arc::new(DnsServer::bind(config(vec![])).await.unwrap());
        server.update(generation(1));
        let addr = server.local_addrs()[0];
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut askers = Vec::new();
        for k in 0..4 {
            let stop = Arc::clone(&stop);
            askers.push(tokio::spawn(async move {
                let mut c = if k % 2 == 0 { udp_client(addr).await } else { tcp_client(addr).await };
                let mut seen = std::collections::BTreeSet::new();
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let m = ask(&mut c, "gen.default.svc.cluster.local.", RecordType::A).await;
                    let ips = a_of(&m);
                    assert_eq!(ips.len(), 4, "torn answer: {ips:?}");
                    let g = ips[0].octets()[1];
                    assert!(ips.iter().all(|ip| ip.octets()[1] == g), "mixed generations: {ips:?}");
                    assert_eq!(ips, (1..=4).map(|i| Ipv4Addr::new(10, g, 0, i)).collect::<Vec<_>>());
                    seen.insert(g);
                    n += 1;
                }
                (n, seen)
            }));
        }
        for g in 2..=200u8 {
            server.update(generation(g));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // An update takes effect at once: the very next query sees it.
        let mut c = udp_client(addr).await;
        let m = ask(&mut c, "gen.default.svc.cluster.local.", RecordType::A).await;
        assert_eq!(a_of(&m)[0], Ipv4Addr::new(10, 200, 0, 1));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut generations = std::collections::BTreeSet::new();
        for asker in askers {
            let (n, seen) = asker.await.unwrap();
            assert!(n > 0);
            generations.extend(seen);
        }
        assert!(generations.len() > 2, "queries should have run across updates: {generations:?}");
        match Arc::try_unwrap(server) {
            Ok(server) => server.shutdown().await,
            Err(_) => panic!("server still shared"),
        }
    });
}

/// A fake upstream resolver on loopback: answers every A question with 192.0.2.1 (documentation
/// range, never contacted) and records the names it was asked.
struct FakeUpstream {
    addr: SocketAddr,
    asked: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeUpstream {
    async fn start(code: ResponseCode) -> FakeUpstream {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&asked);
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else { return };
                let Ok(query) = Message::from_vec(&buf[..n]) else { continue };
                let Some(q) = query.queries.first().cloned() else { continue };
                log.lock().unwrap().push(q.name().to_ascii().to_ascii_lowercase());
                let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
                answer.metadata.recursion_available = true;
                answer.metadata.response_code = code;
                answer.add_query(q.clone());
                if code == ResponseCode::NoError && q.query_type() == RecordType::A {
                    answer.add_answer(Record::from_rdata(
                        q.name().clone(),
                        60,
                        RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
                    ));
                }
                let _ = socket.send_to(&answer.to_vec().unwrap(), from).await;
            }
        });
        FakeUpstream { addr, asked, task }
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

/// A loopback address with nothing listening on it (bound, then closed).
async fn dead_upstream() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.local_addr().unwrap()
}

#[test]
fn forwards_outside_names_and_never_cluster_names() {
    run(async {
        let failing = FakeUpstream::start(ResponseCode::ServFail).await;
        let upstream = FakeUpstream::start(ResponseCode::NoError).await;
        let dead = dead_upstream().await;
        let server = DnsServer::bind(config(vec![dead, failing.addr, upstream.addr])).await.unwrap();
        server.update(cluster_records());
        let addr = server.local_addrs()[0];
        for tcp in [false, true] {
            let mut c = if tcp { tcp_client(addr).await } else { udp_client(addr).await };
            let m = ask(&mut c, "www.example.com.", RecordType::A).await;
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert_eq!(a_of(&m), vec![Ipv4Addr::new(192, 0, 2, 1)]);
            assert!(!m.metadata.authoritative, "relayed answers are not authoritative");
            assert!(m.metadata.recursion_available);

            // In-zone names, existing or not, any type, any case: answered here, never forwarded.
            for (name, t) in [
                ("web.default.svc.cluster.local.", RecordType::A),
                ("nope.default.svc.cluster.local.", RecordType::A),
                ("NOPE.CLUSTER.LOCAL.", RecordType::AAAA),
                ("cluster.local.", RecordType::TXT),
                ("_x._tcp.nope.cluster.local.", RecordType::SRV),
            ] {
                let m = ask(&mut c, name, t).await;
                assert!(m.metadata.authoritative, "{name}");
            }
            // A reverse name we know is answered here too.
            let m = ask(&mut c, "10.0.244.10.in-addr.arpa.", RecordType::PTR).await;
            assert!(m.metadata.authoritative);
        }
        let asked = upstream.asked();
        assert_eq!(asked, vec!["www.example.com.".to_string(); 2]);
        assert_eq!(failing.asked().len(), 2, "the failing upstream is tried first, then skipped");
        for name in failing.asked().iter().chain(asked.iter()) {
            assert!(!name.ends_with("cluster.local."), "cluster name forwarded: {name}");
        }
        server.shutdown().await;
        upstream.task.abort();
        failing.task.abort();
    });
}

#[test]
fn servfail_is_relayed_when_no_upstream_does_better() {
    run(async {
        let failing = FakeUpstream::start(ResponseCode::ServFail).await;
        let server = DnsServer::bind(config(vec![failing.addr])).await.unwrap();
        let mut c = udp_client(server.local_addrs()[0]).await;
        let m = ask(&mut c, "www.example.com.", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        server.shutdown().await;
        failing.task.abort();

        let server = DnsServer::bind(config(vec![dead_upstream().await])).await.unwrap();
        let mut c = udp_client(server.local_addrs()[0]).await;
        let m = ask(&mut c, "www.example.com.", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        server.shutdown().await;
    });
}

#[test]
fn outside_names_are_refused_without_upstream() {
    run(async {
        let server = DnsServer::bind(config(vec![])).await.unwrap();
        server.update(cluster_records());
        let mut c = udp_client(server.local_addrs()[0]).await;
        let m = ask(&mut c, "www.example.com.", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        // Reverse names of unknown addresses are outside too.
        let m = ask(&mut c, "1.2.0.192.in-addr.arpa.", RecordType::PTR).await;
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        let m = ask(&mut c, "web.default.svc.cluster.local.", RecordType::A).await;
        assert_eq!(a_of(&m).len(), 3);
        server.shutdown().await;
    });
}

/// A query without EDNS (512-byte UDP limit) as raw bytes.
fn raw_query(id: u16, name: &str, t: RecordType, edns: bool) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.add_query(Query::query(Name::from_str(name).unwrap(), t));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(4096);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

#[test]
fn large_udp_answers_are_truncated_and_complete_over_tcp() {
    run(async {
        let server = DnsServer::bind(config(vec![])).await.unwrap();
        let mut r = Records::new();
        for i in 0..100u8 {
            r.add_a("big.default.svc.cluster.local", Ipv4Addr::new(10, 1, 0, i));
        }
        server.update(r);
        let addr = server.local_addrs()[0];
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket
            .send_to(&raw_query(7, "big.default.svc.cluster.local.", RecordType::A, false), addr)
            .await
            .unwrap();
        let mut buf = vec![0u8; 65535];
        let (n, _) = socket.recv_from(&mut buf).await.unwrap();
        assert!(n <= 512, "udp answer without edns must fit 512 bytes, was {n}");
        let m = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(m.metadata.id, 7);
        assert!(m.metadata.truncation, "TC bit");

        // With EDNS 4096 the whole answer fits in UDP.
        socket
            .send_to(&raw_query(8, "big.default.svc.cluster.local.", RecordType::A, true), addr)
            .await
            .unwrap();
        let (n, _) = socket.recv_from(&mut buf).await.unwrap();
        let m = Message::from_vec(&buf[..n]).unwrap();
        assert!(!m.metadata.truncation);
        assert_eq!(a_of(&m).len(), 100);

        let mut c = tcp_client(addr).await;
        let m = ask(&mut c, "big.default.svc.cluster.local.", RecordType::A).await;
        assert!(!m.metadata.truncation);
        assert_eq!(a_of(&m).len(), 100);
        server.shutdown().await;
    });
}

#[test]
fn malformed_packets_do_not_crash_the_server() {
    run(async {
        use tokio::io::AsyncWriteExt;
        let server = DnsServer::bind(config(vec![])).await.unwrap();
        server.update(cluster_records());
        let addr = server.local_addrs()[0];
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let valid = raw_query(1, "web.default.svc.cluster.local.", RecordType::A, false);
        let mut garbage: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0xff; 11],
            vec![0xff; 12],
            vec![0; 512],
            vec![0xff; 4000],
            // header claiming 65535 questions with none present
            vec![0, 1, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0],
            // a compression pointer to itself
            vec![0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1],
            // a response (QR set): must be ignored, not answered
            {
                let mut v = valid.clone();
                v[2] |= 0x80;
                v
            },
            // truncated valid query
            valid[..valid.len() - 3].to_vec(),
            // update opcode
            {
                let mut v = valid.clone();
                v[2] = (v[2] & 0x87) | (5 << 3);
                v
            },
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in [13usize, 17, 40, 100, 300] {
            garbage.push(
                (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed as u8
                    })
                    .collect(),
            );
        }
        for g in &garbage {
            socket.send_to(g, addr).await.unwrap();
        }
        for g in &garbage {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let len = u16::try_from(g.len()).unwrap();
            let _ = tcp.write_all(&len.to_be_bytes()).await;
            let _ = tcp.write_all(g).await;
        }
        // Drain whatever error responses came back, then the server must still answer.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut buf = vec![0u8; 65535];
        while let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(50), socket.recv_from(&mut buf)).await
        {}
        let mut c = udp_client(addr).await;
        let m = ask(&mut c, "web.default.svc.cluster.local.", RecordType::A).await;
        assert_eq!(a_of(&m).len(), 3);
        let mut c = tcp_client(addr).await;
        let m = ask(&mut c, "web.default.svc.cluster.local.", RecordType::A).await;
        assert_eq!(a_of(&m).len(), 3);
        server.shutdown().await;
    });
}

#[test]
fn bind_rejects_bad_configs() {
    run(async {
        let mut cfg = config(vec![]);
        cfg.listen.clear();
        assert!(matches!(DnsServer::bind(cfg).await, Err(DnsError::NoListenAddress)));
        for domain in ["", ".", "bad..domain", "a b.local"] {
            let mut cfg = config(vec![]);
            cfg.cluster_domain = domain.to_string();
            let err = DnsServer::bind(cfg).await.expect_err(domain);
            assert!(matches!(err, DnsError::InvalidDomain { .. }), "{domain}: {err}");
        }
        // A taken port is an error naming the address.
        let server = DnsServer::bind(config(vec![])).await.unwrap();
        let taken = server.local_addrs()[0];
        let mut cfg = config(vec![]);
        cfg.listen = vec![taken];
        let err = DnsServer::bind(cfg).await.expect_err("port in use");
        assert!(err.to_string().contains(&taken.to_string()), "{err}");
        server.shutdown().await;
    });
}

#[test]
fn custom_cluster_domain() {
    run(async {
        let upstream = FakeUpstream::start(ResponseCode::NoError).await;
        let mut cfg = config(vec![upstream.addr]);
        cfg.cluster_domain = "Corp.Internal.".to_string();
        let server = DnsServer::bind(cfg).await.unwrap();
        let mut r = Records::new();
        r.add_a("db.prod.svc.corp.internal", Ipv4Addr::new(10, 9, 9, 9));
        r.add_a("db.prod.svc.cluster.local", Ipv4Addr::new(10, 9, 9, 8)); // outside: left out
        server.update(r);
        let mut c = udp_client(server.local_addrs()[0]).await;
        let m = ask(&mut c, "db.prod.svc.corp.internal.", RecordType::A).await;
        assert_eq!(a_of(&m), vec![Ipv4Addr::new(10, 9, 9, 9)]);
        // cluster.local is not this server's zone now: forwarded like any other name.
        let m = ask(&mut c, "db.prod.svc.cluster.local.", RecordType::A).await;
        assert_eq!(a_of(&m), vec![Ipv4Addr::new(192, 0, 2, 1)]);
        assert_eq!(upstream.asked(), vec!["db.prod.svc.cluster.local.".to_string()]);
        server.shutdown().await;
        upstream.task.abort();
    });
}

#[test]
fn never_forwards_to_itself() {
    run(async {
        // Find a free port, then ask the server to listen there with itself as the upstream.
        let probe = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let mut cfg = config(vec![addr]);
        cfg.listen = vec![addr];
        let Ok(server) = DnsServer::bind(cfg).await else {
            stead_testkit::not_applicable(&format!("port {addr} was taken between probe and bind"));
            return;
        };
        let mut c = udp_client(addr).await;
        let m = ask(&mut c, "www.example.com.", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::Refused, "the only upstream is this server");
        server.shutdown().await;
    });
}
