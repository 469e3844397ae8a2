//! Reading the host's upstream resolvers from a `resolv.conf` text.

use std::net::{IpAddr, SocketAddr, SocketAddrV6};

/// glibc reads at most this many `nameserver` lines (MAXNS); so do we.
const MAX_NAMESERVERS: usize = 3;

/// The `nameserver` addresses of a resolv.conf text, port 53, in file order, without duplicates,
/// at most three (as glibc). Pure: no IO.
///
/// Loopback entries such as systemd-resolved's `127.0.0.53` are kept: the server runs in the
/// host's network namespace, where they work. A caller that cannot reach them filters with
/// `retain(|a| !a.ip().is_loopback())`. Comments (`#`, `;`), other keywords, and addresses that
/// do not parse (including IPv6 link-local with a named zone such as `%eth0`) are skipped;
/// a numeric zone (`fe80::1%2`) is kept as the scope id.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next().and_then(parse_nameserver) else { continue };
        if !out.contains(&addr) {
            out.push(addr);
        }
        if out.len() == MAX_NAMESERVERS {
            break;
        }
    }
    out
}

fn parse_nameserver(word: &str) -> Option<SocketAddr> {
    let (ip, zone) = match word.split_once('%') {
        Some((ip, zone)) => (ip, Some(zone)),
        None => (word, None),
    };
    match (ip.parse::<IpAddr>().ok()?, zone) {
        (ip, None) => Some(SocketAddr::new(ip, 53)),
        (IpAddr::V6(ip), Some(zone)) => {
            let scope: u32 = zone.parse().ok()?;
            Some(SocketAddr::V6(SocketAddrV6::new(ip, 53, 0, scope)))
        }
        (IpAddr::V4(_), Some(_)) => None,
    }
}
