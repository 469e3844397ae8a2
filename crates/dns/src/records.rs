//! [`Records`]: the plain value the engine hands to [`crate::DnsServer::update`].
//!
//! It only collects names and data; validation (is the name a DNS name, is it inside the cluster
//! domain) happens when the server compiles it into a zone, so building a `Records` never fails.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// One SRV record's data, as the engine gave it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SrvData {
    pub(crate) priority: u16,
    pub(crate) weight: u16,
    pub(crate) port: u16,
    pub(crate) target: String,
}

/// The cluster's DNS data: A records and SRV records by fully qualified name. PTR records are
/// derived from the A records when the zone is built. Names are compared without regard to case
/// or a trailing dot; adding the same record twice keeps one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    pub(crate) a: BTreeMap<String, BTreeSet<Ipv4Addr>>,
    pub(crate) srv: BTreeMap<String, BTreeSet<SrvData>>,
}

impl Records {
    /// No records: the zone then holds only its SOA and NS.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an A record. Call once per address for a name with several (round robin).
    pub fn add_a(&mut self, fqdn: &str, ip: Ipv4Addr) {
        self.a.entry(normalize(fqdn)).or_default().insert(ip);
    }

    /// Adds an SRV record, e.g. `_http._tcp.web.default.svc.cluster.local` → `web-0.web...:8080`.
    pub fn add_srv(&mut self, fqdn: &str, port: u16, target: &str, priority: u16, weight: u16) {
        let data = SrvData { priority, weight, port, target: normalize(target) };
        self.srv.entry(normalize(fqdn)).or_default().insert(data);
    }
}

/// Lower case without the trailing dot: the key under which a name is stored.
pub(crate) fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_keyed_without_case_or_trailing_dot() {
        let mut r = Records::new();
        r.add_a("Web.Default.svc.cluster.local.", Ipv4Addr::new(10, 0, 0, 1));
        r.add_a("web.default.svc.cluster.local", Ipv4Addr::new(10, 0, 0, 1));
        r.add_a("web.default.svc.cluster.local", Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(r.a.len(), 1);
        assert_eq!(r.a["web.default.svc.cluster.local"].len(), 2);
    }
}
