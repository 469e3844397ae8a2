//! `upstreams_from_resolv_conf` over resolv.conf texts as hosts write them.

use std::net::SocketAddr;

use stead_dns::upstreams_from_resolv_conf;

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

#[test]
fn systemd_resolved_stub() {
    let text = "# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).\n\
                nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n";
    assert_eq!(upstreams_from_resolv_conf(text), addrs(&["127.0.0.53:53"]));
}

#[test]
fn several_servers_in_order_deduplicated_at_most_three() {
    let text = "search example.org\nnameserver 10.0.0.2\nnameserver   192.168.1.1  \n\
                nameserver 10.0.0.2\nnameserver 2001:db8::1\nnameserver 10.0.0.9\n";
    assert_eq!(
        upstreams_from_resolv_conf(text),
        addrs(&["10.0.0.2:53", "192.168.1.1:53", "[2001:db8::1]:53"])
    );
}

#[test]
fn comments_junk_and_zones() {
    let text = "; comment\n#nameserver 10.1.1.1\nnameserver 10.0.0.3 # trailing comment\n\
                nameserver\nnameserver not-an-ip\nnameservers 10.9.9.9\n  nameserver\t10.0.0.4;x\n\
                nameserver fe80::1%eth0\nnameserver fe80::1%2\r\n";
    let got = upstreams_from_resolv_conf(text);
    assert_eq!(got[..2], addrs(&["10.0.0.3:53", "10.0.0.4:53"])[..]);
    let SocketAddr::V6(v6) = got[2] else { panic!("v6 expected: {got:?}") };
    assert_eq!((v6.port(), v6.scope_id()), (53, 2));
    assert_eq!(got.len(), 3);
}

#[test]
fn empty_and_binary_texts() {
    assert!(upstreams_from_resolv_conf("").is_empty());
    assert!(upstreams_from_resolv_conf("options ndots:5\n").is_empty());
    assert!(upstreams_from_resolv_conf("\u{0}\u{7f}nameserver\u{0}1.2.3.4").is_empty());
}
