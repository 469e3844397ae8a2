//! [`Zone`]: one immutable, compiled snapshot of the cluster domain, and the pure lookup over it.
//!
//! Every hickory `Record` is built once here, at update time, so answering a query only borrows.
//! Names are `LowerName`s, so lookups ignore case.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, NS, PTR, SOA, SRV};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::records::Records;

/// SOA timers (seconds). Nothing transfers this zone; the values only need to be sane.
const SOA_REFRESH: i32 = 7200;
const SOA_RETRY: i32 = 1800;
const SOA_EXPIRE: i32 = 86400;

/// Records of one owner name. Empty for names that exist only because a longer name lies under
/// them (empty non-terminals such as `svc.cluster.local`), which answer NODATA, not NXDOMAIN.
#[derive(Debug, Default)]
struct NameEntry {
    a: Vec<Record>,
    srv: Vec<Record>,
}

/// The compiled zone. Built by [`Zone::build`], swapped in whole by the server.
#[derive(Debug)]
pub(crate) struct Zone {
    origin: LowerName,
    soa: Record,
    ns: Record,
    names: HashMap<LowerName, NameEntry>,
    /// `d.c.b.a.in-addr.arpa.` → one PTR, for every address the A records hold.
    reverse: HashMap<LowerName, Record>,
    /// Rotates multi-address A answers (round robin across queries).
    rotation: AtomicUsize,
}

/// What the zone says about one question.
#[derive(Debug)]
pub(crate) enum Lookup<'z> {
    /// An authoritative answer: records (possibly none) with a response code.
    Answer {
        code: ResponseCode,
        answers: Vec<&'z Record>,
        /// The SOA, for negative answers (NXDOMAIN and NODATA), so resolvers can cache them.
        authority: Option<&'z Record>,
        /// A records of SRV targets inside the zone.
        additionals: Vec<&'z Record>,
    },
    /// Not ours: forward it (or refuse, with no upstream).
    Outside,
}

/// Zone parameters that do not come from the engine's records.
#[derive(Debug, Clone)]
pub(crate) struct ZoneParams {
    /// The cluster domain, fully qualified.
    pub(crate) origin: Name,
    pub(crate) ttl: u32,
    pub(crate) serial: u32,
    /// Addresses of this server, published as `ns.dns.<domain>`.
    pub(crate) ns_addrs: Vec<Ipv4Addr>,
}

impl Zone {
    /// Compiles records into a zone. Names that are not valid DNS names, or lie outside the
    /// cluster domain, are left out with a warning: one bad name never blocks the others.
    pub(crate) fn build(params: &ZoneParams, records: &Records) -> Zone {
        let origin = params.origin.clone();
        let ttl = params.ttl;
        let ns_name = fqdn_under("ns.dns", &origin);
        let soa_data = SOA::new(
            ns_name.clone(),
            fqdn_under("hostmaster", &origin),
            params.serial,
            SOA_REFRESH,
            SOA_RETRY,
            SOA_EXPIRE,
            ttl,
        );
        let soa = Record::from_rdata(origin.clone(), ttl, RData::SOA(soa_data));
        let ns = Record::from_rdata(origin.clone(), ttl, RData::NS(NS(ns_name.clone())));

        let mut zone = Zone {
            origin: LowerName::new(&origin),
            soa,
            ns,
            names: HashMap::new(),
            reverse: HashMap::new(),
            rotation: AtomicUsize::new(0),
        };
        zone.names.insert(zone.origin.clone(), NameEntry::default());

        // (address, owner) pairs, for the PTR records.
        let mut owners: Vec<(Ipv4Addr, Name)> = Vec::new();
        let ns_a = (!params.ns_addrs.is_empty()).then(|| (ns_name.to_ascii(), params.ns_addrs.clone()));
        let a_records = records.a.iter().map(|(name, ips)| (name.clone(), ips.iter().copied().collect()));
        for (name, ips) in ns_a.into_iter().chain(a_records) {
            let Some(owner) = zone.owner(&name) else { continue };
            let entry = zone.entry(&owner);
            let ips: Vec<Ipv4Addr> = ips;
            for ip in ips {
                entry.a.push(Record::from_rdata(owner.clone(), ttl, RData::A(A(ip))));
                owners.push((ip, owner.clone()));
            }
        }
        for (name, targets) in &records.srv {
            let Some(owner) = zone.owner(name) else { continue };
            for srv in targets {
                let Some(target) = parse_fqdn(&srv.target) else {
                    tracing::warn!(name = %name, target = %srv.target, "dns: srv target is not a dns name; left out");
                    continue;
                };
                let data = SRV::new(srv.priority, srv.weight, srv.port, target);
                let record = Record::from_rdata(owner.clone(), ttl, RData::SRV(data));
                zone.entry(&owner).srv.push(record);
            }
        }

        // One PTR per address: the owner with the most labels wins (a pod's own name beats its
        // Service's name), then the alphabetically first, so the choice is deterministic.
        let mut best: HashMap<Ipv4Addr, Name> = HashMap::with_capacity(owners.len());
        for (ip, owner) in owners {
            match best.entry(ip) {
                Entry::Vacant(slot) => {
                    slot.insert(owner);
                }
                Entry::Occupied(mut slot) => {
                    let current = slot.get();
                    let more_labels = owner.num_labels() > current.num_labels();
                    let same_and_first = owner.num_labels() == current.num_labels()
                        && owner.cmp_case(current) == std::cmp::Ordering::Less;
                    if more_labels || same_and_first {
                        slot.insert(owner);
                    }
                }
            }
        }
        zone.reverse.reserve(best.len());
        for (ip, owner) in best {
            let reverse = Name::from(ip);
            let record = Record::from_rdata(reverse.clone(), ttl, RData::PTR(PTR(owner)));
            zone.reverse.insert(LowerName::new(&reverse), record);
        }
        zone
    }

    /// Parses a record's owner name and checks it lies inside the zone.
    fn owner(&self, name: &str) -> Option<Name> {
        let Some(owner) = parse_fqdn(name) else {
            tracing::warn!(name = %name, "dns: record name is not a dns name; left out");
            return None;
        };
        if !self.origin.zone_of(&LowerName::new(&owner)) {
            tracing::warn!(name = %name, zone = %self.origin, "dns: record name is outside the cluster domain; left out");
            return None;
        }
        Some(owner)
    }

    /// The entry of `owner`, created with every ancestor up to the apex (so they exist).
    fn entry(&mut self, owner: &Name) -> &mut NameEntry {
        let key = LowerName::new(owner);
        let mut parent = key.base_name();
        // Stop at the first ancestor already present: its own ancestors are present too.
        while parent.num_labels() > self.origin.num_labels() && !self.names.contains_key(&parent) {
            let next = parent.base_name();
            self.names.insert(parent, NameEntry::default());
            parent = next;
        }
        self.names.entry(key).or_default()
    }

    /// Answers one question, or says it is not ours. Pure apart from the round-robin counter.
    pub(crate) fn lookup(&self, name: &LowerName, qtype: RecordType) -> Lookup<'_> {
        if !self.origin.zone_of(name) {
            return match (self.reverse.get(name), qtype) {
                (Some(ptr), RecordType::PTR | RecordType::ANY) => Lookup::Answer {
                    code: ResponseCode::NoError,
                    answers: vec![ptr],
                    authority: None,
                    additionals: Vec::new(),
                },
                _ => Lookup::Outside,
            };
        }
        let Some(entry) = self.names.get(name) else {
            return Lookup::Answer {
                code: ResponseCode::NXDomain,
                answers: Vec::new(),
                authority: Some(&self.soa),
                additionals: Vec::new(),
            };
        };
        let apex = *name == self.origin;
        let mut answers: Vec<&Record> = Vec::new();
        if matches!(qtype, RecordType::A | RecordType::ANY) {
            self.push_rotated(&entry.a, &mut answers);
        }
        if matches!(qtype, RecordType::SRV | RecordType::ANY) {
            answers.extend(entry.srv.iter());
        }
        if apex && matches!(qtype, RecordType::SOA | RecordType::ANY) {
            answers.push(&self.soa);
        }
        if apex && matches!(qtype, RecordType::NS | RecordType::ANY) {
            answers.push(&self.ns);
        }
        let additionals = self.srv_additionals(&answers);
        let authority = if answers.is_empty() { Some(&self.soa) } else { None };
        Lookup::Answer { code: ResponseCode::NoError, answers, authority, additionals }
    }

    fn push_rotated<'z>(&self, records: &'z [Record], out: &mut Vec<&'z Record>) {
        if records.is_empty() {
            return;
        }
        let start = self.rotation.fetch_add(1, Ordering::Relaxed) % records.len();
        out.extend(records[start..].iter().chain(records[..start].iter()));
    }

    /// The A records of in-zone SRV targets, so a client needs no second query.
    fn srv_additionals(&self, answers: &[&Record]) -> Vec<&Record> {
        let mut out = Vec::new();
        for record in answers {
            if let RData::SRV(srv) = &record.data
                && let Some(entry) = self.names.get(&LowerName::new(&srv.target))
            {
                out.extend(entry.a.iter());
            }
        }
        out
    }
}

/// `label.origin`, for names this module makes itself (always valid).
fn fqdn_under(labels: &str, origin: &Name) -> Name {
    Name::from_ascii(labels).and_then(|n| n.append_domain(origin)).unwrap_or_else(|_| origin.clone())
}

/// A fully qualified name from text; `None` if it is not a DNS name (or is the root).
pub(crate) fn parse_fqdn(text: &str) -> Option<Name> {
    let trimmed = text.trim().trim_end_matches('.');
    if trimmed.is_empty() {
        return None;
    }
    let mut name = Name::from_ascii(trimmed).ok()?;
    name.set_fqdn(true);
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> ZoneParams {
        ZoneParams {
            origin: parse_fqdn("cluster.local").unwrap(),
            ttl: 30,
            serial: 1,
            ns_addrs: vec![Ipv4Addr::new(10, 244, 0, 1)],
        }
    }

    fn q(zone: &Zone, name: &str, t: RecordType) -> (ResponseCode, usize, bool) {
        match zone.lookup(&LowerName::new(&parse_fqdn(name).unwrap()), t) {
            Lookup::Answer { code, answers, authority, .. } => (code, answers.len(), authority.is_some()),
            Lookup::Outside => (ResponseCode::Refused, usize::MAX, false),
        }
    }

    #[test]
    fn empty_non_terminals_exist_and_unknown_names_do_not() {
        let mut r = Records::new();
        r.add_a("web-0.web.default.svc.cluster.local", Ipv4Addr::new(10, 244, 0, 10));
        let zone = Zone::build(&params(), &r);
        assert_eq!(
            q(&zone, "web.default.svc.cluster.local", RecordType::A),
            (ResponseCode::NoError, 0, true)
        );
        assert_eq!(q(&zone, "svc.cluster.local", RecordType::A), (ResponseCode::NoError, 0, true));
        assert_eq!(q(&zone, "nope.cluster.local", RecordType::A), (ResponseCode::NXDomain, 0, true));
        assert_eq!(q(&zone, "cluster.local", RecordType::SOA), (ResponseCode::NoError, 1, false));
        assert_eq!(q(&zone, "ns.dns.cluster.local", RecordType::A), (ResponseCode::NoError, 1, false));
        assert_eq!(q(&zone, "example.com", RecordType::A).1, usize::MAX);
    }

    #[test]
    fn names_outside_the_zone_or_invalid_are_left_out() {
        let mut r = Records::new();
        r.add_a("web.default.svc.example.com", Ipv4Addr::new(10, 0, 0, 1));
        r.add_a("bad..name.cluster.local", Ipv4Addr::new(10, 0, 0, 2));
        r.add_a("ok.default.svc.cluster.local", Ipv4Addr::new(10, 0, 0, 3));
        let zone = Zone::build(&params(), &r);
        assert_eq!(q(&zone, "ok.default.svc.cluster.local", RecordType::A).1, 1);
        assert_eq!(zone.reverse.len(), 2, "ns.dns and ok have PTRs, the rejected names none");
    }

    #[test]
    fn ptr_prefers_the_most_specific_name() {
        let mut r = Records::new();
        let ip = Ipv4Addr::new(10, 244, 0, 10);
        r.add_a("web.default.svc.cluster.local", ip);
        r.add_a("web-0.web.default.svc.cluster.local", ip);
        r.add_a("10-244-0-10.default.pod.cluster.local", ip);
        let zone = Zone::build(&params(), &r);
        let Lookup::Answer { answers, .. } = zone.lookup(&LowerName::new(&Name::from(ip)), RecordType::PTR)
        else {
            panic!("reverse name of a known address must be answered");
        };
        let RData::PTR(ptr) = &answers[0].data else { panic!("not a PTR") };
        assert_eq!(ptr.0.to_ascii(), "web-0.web.default.svc.cluster.local.");
    }

    #[test]
    fn ptr_ties_break_alphabetically_whatever_the_order() {
        let ip = Ipv4Addr::new(10, 96, 0, 7);
        for names in [
            ["b.ns.svc.cluster.local", "a.ns.svc.cluster.local"],
            ["a.ns.svc.cluster.local", "b.ns.svc.cluster.local"],
        ] {
            let mut r = Records::new();
            for n in names {
                r.add_a(n, ip);
            }
            let zone = Zone::build(&params(), &r);
            let Lookup::Answer { answers, .. } =
                zone.lookup(&LowerName::new(&Name::from(ip)), RecordType::ANY)
            else {
                panic!("known address");
            };
            let RData::PTR(ptr) = &answers[0].data else { panic!("not a PTR") };
            assert_eq!(ptr.0.to_ascii(), "a.ns.svc.cluster.local.");
        }
    }

    #[test]
    fn a_answers_rotate() {
        let mut r = Records::new();
        for i in 1..=3 {
            r.add_a("web.default.svc.cluster.local", Ipv4Addr::new(10, 0, 0, i));
        }
        let zone = Zone::build(&params(), &r);
        let first = |zone: &Zone| match zone
            .lookup(&LowerName::new(&parse_fqdn("web.default.svc.cluster.local").unwrap()), RecordType::A)
        {
            Lookup::Answer { answers, .. } => answers[0].data.clone(),
            Lookup::Outside => panic!("in zone"),
        };
        let firsts: std::collections::HashSet<_> = (0..3).map(|_| first(&zone)).collect();
        assert_eq!(firsts.len(), 3);
    }
}
