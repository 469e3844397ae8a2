//! Pod IP allocation over a configurable IPv4 CIDR, persisted to `<state>/ipam.json`.
//!
//! - The first host address is the bridge's (the pods' gateway); network and broadcast are never given.
//! - Allocation is idempotent per owner (the caller passes a stable key, e.g. the pod UID).
//! - Addresses are handed out round-robin after the last one given, like CNI host-local, so a
//!   released address is not reused at once.
//! - The top of a pod CIDR of /24 or larger ([`service_range`]: its top quarter, at most a /20) is
//!   never given to pods: the local engine takes its Services' virtual IPs from there, so they stay
//!   inside the pods' own network (a test's namespace) and need no route of their own.
//! - Every change is written to a temporary file and renamed over `ipam.json`, so a crash leaves
//!   either the old or the new state; a restart reloads it.

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The name of the allocation file inside the state directory.
pub const IPAM_FILE: &str = "ipam.json";

/// IPAM failures, naming the file, CIDR or owner concerned.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("pod CIDR {0} is too small: it needs room for a gateway and at least one pod (at most /30)")]
    TooSmall(Ipv4Net),
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid allocation file: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error(
        "{path} holds allocations for CIDR {found}, but the configured pod CIDR is {configured}: remove the file only once no pod uses those addresses"
    )]
    CidrChanged { path: PathBuf, found: Ipv4Net, configured: Ipv4Net },
    #[error(
        "pod CIDR {cidr} is exhausted: all {size} addresses are allocated (cannot allocate for {owner:?})"
    )]
    Exhausted { cidr: Ipv4Net, size: u32, owner: String },
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Stored {
    cidr: Ipv4Net,
    last: Option<Ipv4Addr>,
    allocations: BTreeMap<Ipv4Addr, String>,
}

/// The part of `pod_cidr` kept for Service virtual IPs: the top quarter, at most 4096 addresses
/// (a /20), for pod CIDRs of /24 or larger; `None` for smaller ones (too few addresses to share).
/// The pod CIDR's broadcast address is inside it and must not be used.
pub fn service_range(pod_cidr: Ipv4Net) -> Option<Ipv4Net> {
    let cidr = pod_cidr.trunc();
    if cidr.prefix_len() > 24 {
        return None;
    }
    let prefix = (cidr.prefix_len() + 2).max(20);
    let size = 1u32 << (32 - prefix);
    let start = u32::from(cidr.broadcast()).wrapping_sub(size - 1);
    Ipv4Net::new(Ipv4Addr::from(start), prefix).ok()
}

/// The allocator.
#[derive(Debug)]
pub struct Ipam {
    path: PathBuf,
    state: Stored,
}

impl Ipam {
    /// Opens (or creates) the allocation file under `state_dir` for `cidr`.
    pub fn open(state_dir: &Path, cidr: Ipv4Net) -> Result<Ipam, IpamError> {
        let cidr = cidr.trunc();
        if cidr.prefix_len() > 30 {
            return Err(IpamError::TooSmall(cidr));
        }
        let path = state_dir.join(IPAM_FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => {
                let stored: Stored = serde_json::from_slice(&bytes)
                    .map_err(|source| IpamError::Corrupt { path: path.clone(), source })?;
                if stored.cidr != cidr {
                    return Err(IpamError::CidrChanged { path, found: stored.cidr, configured: cidr });
                }
                stored
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Stored { cidr, last: None, allocations: BTreeMap::new() }
            }
            Err(source) => return Err(IpamError::Read { path, source }),
        };
        Ok(Ipam { path, state })
    }

    /// The configured CIDR.
    pub fn cidr(&self) -> Ipv4Net {
        self.state.cidr
    }

    /// The gateway (bridge) address: the first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.state.cidr.network()).saturating_add(1))
    }

    /// The gateway with the CIDR's prefix, as assigned to the bridge.
    pub fn gateway_net(&self) -> Ipv4Net {
        Ipv4Net::new(self.gateway(), self.state.cidr.prefix_len()).unwrap_or(self.state.cidr)
    }

    /// The address held by `owner`, if any.
    pub fn get(&self, owner: &str) -> Option<Ipv4Addr> {
        self.state.allocations.iter().find(|(_, o)| o.as_str() == owner).map(|(ip, _)| *ip)
    }

    /// All allocations.
    pub fn allocations(&self) -> &BTreeMap<Ipv4Addr, String> {
        &self.state.allocations
    }

    /// Allocates an address for `owner` (or returns the one it has) and persists it.
    pub fn allocate(&mut self, owner: &str) -> Result<Ipv4Addr, IpamError> {
        if let Some(ip) = self.get(owner) {
            return Ok(ip);
        }
        let first = u32::from(self.gateway()) + 1;
        let last = match service_range(self.state.cidr) {
            Some(reserved) => u32::from(reserved.network()) - 1,
            None => u32::from(self.state.cidr.broadcast()) - 1,
        };
        let size = last - first + 1;
        let start = self
            .state
            .last
            .map(u32::from)
            .filter(|l| (first..=last).contains(l))
            .map_or(first, |l| if l == last { first } else { l + 1 });
        for i in 0..size {
            let candidate = first + (start - first + i) % size;
            let ip = Ipv4Addr::from(candidate);
            if let std::collections::btree_map::Entry::Vacant(slot) = self.state.allocations.entry(ip) {
                slot.insert(owner.to_owned());
                self.state.last = Some(ip);
                self.save()?;
                return Ok(ip);
            }
        }
        Err(IpamError::Exhausted { cidr: self.state.cidr, size, owner: owner.to_owned() })
    }

    /// Releases `owner`'s address, returning it; persists the change.
    pub fn release(&mut self, owner: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        let Some(ip) = self.get(owner) else { return Ok(None) };
        self.state.allocations.remove(&ip);
        self.save()?;
        Ok(Some(ip))
    }

    fn save(&self) -> Result<(), IpamError> {
        let write_err = |source| IpamError::Write { path: self.path.clone(), source };
        let bytes =
            serde_json::to_vec_pretty(&self.state).map_err(|e| write_err(std::io::Error::other(e)))?;
        crate::fsutil::write_atomic(&self.path, &bytes, 0o600).map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cidr(s: &str) -> Ipv4Net {
        s.parse().expect("cidr")
    }

    #[test]
    fn allocates_after_gateway_and_survives_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ipam = Ipam::open(dir.path(), cidr("10.244.0.0/16")).expect("open");
        assert_eq!(ipam.gateway(), Ipv4Addr::new(10, 244, 0, 1));
        assert_eq!(ipam.gateway_net().to_string(), "10.244.0.1/16");
        assert_eq!(ipam.allocate("pod-a").expect("a"), Ipv4Addr::new(10, 244, 0, 2));
        assert_eq!(ipam.allocate("pod-b").expect("b"), Ipv4Addr::new(10, 244, 0, 3));
        assert_eq!(ipam.allocate("pod-a").expect("a again"), Ipv4Addr::new(10, 244, 0, 2));
        drop(ipam);
        let mut ipam = Ipam::open(dir.path(), cidr("10.244.0.0/16")).expect("reopen");
        assert_eq!(ipam.get("pod-b"), Some(Ipv4Addr::new(10, 244, 0, 3)));
        assert_eq!(ipam.release("pod-a").expect("release"), Some(Ipv4Addr::new(10, 244, 0, 2)));
        // Round-robin: the released address is not reused at once.
        assert_eq!(ipam.allocate("pod-c").expect("c"), Ipv4Addr::new(10, 244, 0, 4));
        drop(ipam);
        let ipam = Ipam::open(dir.path(), cidr("10.244.0.0/16")).expect("reopen");
        assert_eq!(ipam.get("pod-a"), None);
        assert_eq!(ipam.allocations().len(), 2);
    }

    #[test]
    fn service_range_is_the_top_quarter_at_most_a_slash_20() {
        assert_eq!(service_range(cidr("10.244.220.0/24")), Some(cidr("10.244.220.192/26")));
        assert_eq!(service_range(cidr("10.244.0.0/16")), Some(cidr("10.244.240.0/20")));
        assert_eq!(service_range(cidr("10.244.0.0/22")), Some(cidr("10.244.3.0/24")));
        assert_eq!(service_range(cidr("10.244.0.0/25")), None);
        assert_eq!(service_range(cidr("0.0.0.0/0")), Some(cidr("255.255.240.0/20")));
    }

    #[test]
    fn pods_never_get_the_service_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ipam = Ipam::open(dir.path(), cidr("10.244.220.0/24")).expect("open");
        // .1 gateway, .2-.191 pods, .192-.255 services.
        let got: Vec<_> = (0..190).map(|i| ipam.allocate(&format!("p{i}")).expect("alloc")).collect();
        assert_eq!(got.last(), Some(&Ipv4Addr::new(10, 244, 220, 191)));
        let err = ipam.allocate("late").unwrap_err().to_string();
        assert!(err.contains("all 190 addresses are allocated"), "{err}");
    }

    #[test]
    fn exhaustion_and_wraparound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ipam = Ipam::open(dir.path(), cidr("192.168.7.0/29")).expect("open");
        // .1 gateway, .2-.6 pods, .7 broadcast.
        let got: Vec<_> = (0..5).map(|i| ipam.allocate(&format!("p{i}")).expect("alloc")).collect();
        assert_eq!(got.first(), Some(&Ipv4Addr::new(192, 168, 7, 2)));
        assert_eq!(got.last(), Some(&Ipv4Addr::new(192, 168, 7, 6)));
        let err = ipam.allocate("late").unwrap_err();
        assert_eq!(
            err.to_string(),
            "pod CIDR 192.168.7.0/29 is exhausted: all 5 addresses are allocated (cannot allocate for \"late\")"
        );
        ipam.release("p1").expect("release");
        assert_eq!(ipam.allocate("late").expect("wraps"), Ipv4Addr::new(192, 168, 7, 3));
    }

    #[test]
    fn configuration_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            Ipam::open(dir.path(), cidr("10.0.0.0/31")).unwrap_err().to_string(),
            "pod CIDR 10.0.0.0/31 is too small: it needs room for a gateway and at least one pod (at most /30)"
        );
        let mut ipam = Ipam::open(dir.path(), cidr("10.244.0.0/24")).expect("open");
        ipam.allocate("x").expect("alloc");
        let err = Ipam::open(dir.path(), cidr("10.245.0.0/24")).unwrap_err().to_string();
        assert!(err.ends_with("holds allocations for CIDR 10.244.0.0/24, but the configured pod CIDR is 10.245.0.0/24: remove the file only once no pod uses those addresses"), "{err}");
        std::fs::write(dir.path().join(IPAM_FILE), b"{not json").expect("write");
        let err = Ipam::open(dir.path(), cidr("10.244.0.0/24")).unwrap_err().to_string();
        assert!(err.contains("ipam.json is not a valid allocation file: "), "{err}");
    }

    proptest! {
        // Every step fsyncs: keep the case count modest.
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Under any sequence of allocate/release, addresses are unique, inside the CIDR, never the
        /// network, gateway or broadcast address, and the state reloads identically.
        #[test]
        fn unique_and_persistent(ops in proptest::collection::vec((any::<bool>(), 0u8..12), 1..60)) {
            let dir = tempfile::tempdir().expect("tempdir");
            let net = cidr("10.9.0.0/28");
            let mut ipam = Ipam::open(dir.path(), net).expect("open");
            for (alloc, who) in ops {
                let owner = format!("pod-{who}");
                if alloc {
                    match ipam.allocate(&owner) {
                        Ok(ip) => {
                            prop_assert!(net.contains(&ip));
                            prop_assert!(ip != net.network() && ip != net.broadcast() && ip != ipam.gateway());
                        }
                        Err(IpamError::Exhausted { .. }) => prop_assert_eq!(ipam.allocations().len(), 13),
                        Err(e) => prop_assert!(false, "unexpected error {e}"),
                    }
                } else {
                    ipam.release(&owner).expect("release");
                }
                let owners: std::collections::BTreeSet<_> = ipam.allocations().values().collect();
                prop_assert_eq!(owners.len(), ipam.allocations().len());
            }
            let reloaded = Ipam::open(dir.path(), net).expect("reopen");
            prop_assert_eq!(&reloaded.state, &ipam.state);
        }
    }
}
