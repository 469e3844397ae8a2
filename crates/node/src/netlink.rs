//! Every netlink (rtnetlink) call, behind [`Netlink`], with the real [`RtNetlink`] and the recording
//! fake [`RecordingNetlink`].
//!
//! Calls address a network namespace with [`NetnsRef`]: the host's, or one pinned at a path. The real
//! implementation opens a netlink socket inside a pinned namespace from a short-lived thread that
//! `setns`es into it; the socket stays bound to that namespace.
//!
//! The trait's methods are `async` through `async_trait` (each call's future is boxed), so the
//! kubelet can hold an `Arc<dyn Netlink>` beside its `Arc<dyn Syscall>`: a box per netlink call
//! costs nothing next to the kernel round trip, and no kubelet type carries a type parameter.

use futures::TryStreamExt;
use ipnet::IpNet;
use nix::sched::CloneFlags;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};
use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A network namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NetnsRef {
    /// The runtime's own (the host's, or the node sandbox's when rootless).
    Host,
    /// A namespace pinned (bind-mounted) at this path.
    Path(PathBuf),
}

impl std::fmt::Display for NetnsRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetnsRef::Host => f.write_str("host netns"),
            NetnsRef::Path(p) => write!(f, "netns {}", p.display()),
        }
    }
}

/// A failed netlink operation, naming it and its arguments.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{op}: {message}")]
pub struct NetlinkError {
    /// The operation, e.g. `link add veth sv1234 peer eth0 in netns /x`.
    pub op: String,
    pub message: String,
}

/// The netlink operations the sandbox uses.
#[async_trait::async_trait]
pub trait Netlink: Send + Sync {
    /// Whether a link named `name` exists in `ns`.
    async fn link_exists(&self, ns: &NetnsRef, name: &str) -> Result<bool, NetlinkError>;
    /// Creates a bridge in the host netns.
    async fn create_bridge(&self, name: &str) -> Result<(), NetlinkError>;
    /// Creates a veth pair in the host netns; the peer is created directly inside `peer_netns` if given
    /// (much faster than moving it afterwards).
    async fn create_veth(
        &self,
        host: &str,
        peer: &str,
        peer_netns: Option<&Path>,
    ) -> Result<(), NetlinkError>;
    /// Moves a host link into the namespace pinned at `netns`.
    async fn move_to_netns(&self, link: &str, netns: &Path) -> Result<(), NetlinkError>;
    /// Enslaves a host link to a bridge.
    async fn set_master(&self, link: &str, bridge: &str) -> Result<(), NetlinkError>;
    /// Adds an address (with its prefix) to a link.
    async fn add_address(&self, ns: &NetnsRef, link: &str, addr: IpNet) -> Result<(), NetlinkError>;
    /// The addresses (with their prefixes) of a link.
    async fn addresses(&self, ns: &NetnsRef, link: &str) -> Result<Vec<IpNet>, NetlinkError>;
    /// Removes an address (with its prefix) from a link; `Ok(false)` when the link did not have it.
    async fn delete_address(&self, ns: &NetnsRef, link: &str, addr: IpNet) -> Result<bool, NetlinkError>;
    /// Sets a link up.
    async fn set_up(&self, ns: &NetnsRef, link: &str) -> Result<(), NetlinkError>;
    /// Adds a default route via `gateway`.
    async fn add_default_route(&self, ns: &NetnsRef, gateway: IpAddr) -> Result<(), NetlinkError>;
    /// Deletes a link; `Ok(false)` when it did not exist.
    async fn delete_link(&self, ns: &NetnsRef, name: &str) -> Result<bool, NetlinkError>;
}

/// A handle whose private connection (if any) is closed on drop.
struct ScopedHandle {
    handle: Handle,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::ops::Deref for ScopedHandle {
    type Target = Handle;
    fn deref(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for ScopedHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Netlink over rtnetlink. Needs a tokio runtime.
#[derive(Clone, Debug)]
pub struct RtNetlink {
    host: Handle,
}

fn fail(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let op = op.into();
    move |e| NetlinkError { op, message: error_text(&e) }
}

fn error_text(e: &rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
        other => other.to_string(),
    }
}

fn is_enodev(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc_enodev())
}

fn is_errno(e: &rtnetlink::Error, errno: nix::errno::Errno) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -(errno as i32))
}

const fn libc_enodev() -> i32 {
    nix::errno::Errno::ENODEV as i32
}

/// The current tokio runtime, or an error saying one is needed.
fn runtime(op: &str) -> Result<tokio::runtime::Handle, NetlinkError> {
    tokio::runtime::Handle::try_current().map_err(|_| NetlinkError {
        op: op.to_owned(),
        message: "no tokio runtime: RtNetlink must be used from within a tokio runtime".into(),
    })
}

impl RtNetlink {
    /// Connects to the runtime's own netns.
    pub fn new() -> Result<RtNetlink, NetlinkError> {
        let op = "open netlink socket";
        let rt = runtime(op)?;
        let _guard = rt.enter();
        let (conn, host, _) = rtnetlink::new_connection()
            .map_err(|e| NetlinkError { op: op.into(), message: e.to_string() })?;
        rt.spawn(conn);
        Ok(RtNetlink { host })
    }

    /// A handle for `ns`. Inside a pinned namespace this is a fresh socket whose connection task is
    /// aborted when the returned value is dropped: a socket kept open would keep the namespace alive
    /// after teardown, so nothing is cached. Opening costs a short blocking thread hop.
    fn handle(&self, ns: &NetnsRef) -> Result<ScopedHandle, NetlinkError> {
        let path = match ns {
            NetnsRef::Host => return Ok(ScopedHandle { handle: self.host.clone(), task: None }),
            NetnsRef::Path(p) => p.clone(),
        };
        let op = format!("open netlink socket in netns {}", path.display());
        let rt = runtime(&op)?;
        let opened = std::thread::scope(|s| {
            s.spawn(|| -> Result<_, String> {
                let _guard = rt.enter();
                let file = File::open(&path).map_err(|e| e.to_string())?;
                nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())?;
                let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| e.to_string())?;
                Ok((conn, handle))
            })
            .join()
        });
        match opened {
            Ok(Ok((conn, handle))) => Ok(ScopedHandle { handle, task: Some(rt.spawn(conn)) }),
            Ok(Err(message)) => Err(NetlinkError { op, message }),
            Err(_) => Err(NetlinkError { op, message: "the namespace thread panicked".into() }),
        }
    }

    async fn index(handle: &Handle, name: &str, op: &str) -> Result<Option<u32>, NetlinkError> {
        match handle.link().get().match_name(name.to_owned()).execute().try_next().await {
            Ok(Some(msg)) => Ok(Some(msg.header.index)),
            Ok(None) => Ok(None),
            Err(e) if is_enodev(&e) => Ok(None),
            Err(e) => Err(fail(op)(e)),
        }
    }

    async fn require_index(handle: &Handle, name: &str, op: &str) -> Result<u32, NetlinkError> {
        Self::index(handle, name, op)
            .await?
            .ok_or_else(|| NetlinkError { op: op.to_owned(), message: format!("no link named {name:?}") })
    }
}

#[async_trait::async_trait]
impl Netlink for RtNetlink {
    async fn link_exists(&self, ns: &NetnsRef, name: &str) -> Result<bool, NetlinkError> {
        let h = self.handle(ns)?;
        Ok(Self::index(&h, name, &format!("link show {name} in {ns}")).await?.is_some())
    }

    async fn create_bridge(&self, name: &str) -> Result<(), NetlinkError> {
        let op = format!("link add {name} type bridge");
        self.host.link().add(LinkBridge::new(name).build()).execute().await.map_err(fail(op))
    }

    async fn create_veth(
        &self,
        host: &str,
        peer: &str,
        peer_netns: Option<&Path>,
    ) -> Result<(), NetlinkError> {
        let mut op = format!("link add {host} type veth peer name {peer}");
        let msg = match peer_netns {
            None => LinkVeth::new(host, peer).build(),
            Some(path) => {
                op.push_str(&format!(" netns {}", path.display()));
                let file =
                    File::open(path).map_err(|e| NetlinkError { op: op.clone(), message: e.to_string() })?;
                let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
                    .name(peer.to_owned())
                    .setns_by_fd(file.as_raw_fd())
                    .build();
                let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
                    .name(host.to_owned())
                    .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
                    .build();
                // The fd must stay open until the kernel has the request.
                let result = self.host.link().add(msg).execute().await.map_err(fail(op));
                drop(file);
                return result;
            }
        };
        self.host.link().add(msg).execute().await.map_err(fail(op))
    }

    async fn move_to_netns(&self, link: &str, netns: &Path) -> Result<(), NetlinkError> {
        let op = format!("link set {link} netns {}", netns.display());
        let idx = Self::require_index(&self.host, link, &op).await?;
        let file = File::open(netns).map_err(|e| NetlinkError { op: op.clone(), message: e.to_string() })?;
        let msg = LinkUnspec::new_with_index(idx).setns_by_fd(file.as_raw_fd()).build();
        let result = self.host.link().set(msg).execute().await.map_err(fail(op));
        drop(file);
        result
    }

    async fn set_master(&self, link: &str, bridge: &str) -> Result<(), NetlinkError> {
        let op = format!("link set {link} master {bridge}");
        let idx = Self::require_index(&self.host, link, &op).await?;
        let br = Self::require_index(&self.host, bridge, &op).await?;
        let msg = LinkUnspec::new_with_index(idx).controller(br).build();
        self.host.link().set(msg).execute().await.map_err(fail(op))
    }

    async fn add_address(&self, ns: &NetnsRef, link: &str, addr: IpNet) -> Result<(), NetlinkError> {
        let op = format!("addr add {addr} dev {link} in {ns}");
        let h = self.handle(ns)?;
        let idx = Self::require_index(&h, link, &op).await?;
        h.address().add(idx, addr.addr(), addr.prefix_len()).execute().await.map_err(fail(op))
    }

    async fn addresses(&self, ns: &NetnsRef, link: &str) -> Result<Vec<IpNet>, NetlinkError> {
        let op = format!("addr show dev {link} in {ns}");
        let h = self.handle(ns)?;
        let idx = Self::require_index(&h, link, &op).await?;
        let mut stream = h.address().get().set_link_index_filter(idx).execute();
        let mut out = Vec::new();
        while let Some(msg) = stream.try_next().await.map_err(fail(op.clone()))? {
            let addr = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let addr = addr.or_else(|| {
                msg.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
            });
            if let Some(net) = addr.and_then(|ip| IpNet::new(ip, msg.header.prefix_len).ok()) {
                out.push(net);
            }
        }
        Ok(out)
    }

    async fn delete_address(&self, ns: &NetnsRef, link: &str, addr: IpNet) -> Result<bool, NetlinkError> {
        let op = format!("addr del {addr} dev {link} in {ns}");
        let h = self.handle(ns)?;
        let Some(idx) = Self::index(&h, link, &op).await? else { return Ok(false) };
        let mut stream = h
            .address()
            .get()
            .set_link_index_filter(idx)
            .set_address_filter(addr.addr())
            .set_prefix_length_filter(addr.prefix_len())
            .execute();
        let mut found = Vec::new();
        while let Some(msg) = stream.try_next().await.map_err(fail(op.clone()))? {
            found.push(msg);
        }
        let deleted = !found.is_empty();
        for msg in found {
            match h.address().del(msg).execute().await {
                Ok(()) => {}
                Err(e) if is_errno(&e, nix::errno::Errno::EADDRNOTAVAIL) => {}
                Err(e) => return Err(fail(op)(e)),
            }
        }
        Ok(deleted)
    }

    async fn set_up(&self, ns: &NetnsRef, link: &str) -> Result<(), NetlinkError> {
        let op = format!("link set {link} up in {ns}");
        let h = self.handle(ns)?;
        let idx = Self::require_index(&h, link, &op).await?;
        h.link().set(LinkUnspec::new_with_index(idx).up().build()).execute().await.map_err(fail(op))
    }

    async fn add_default_route(&self, ns: &NetnsRef, gateway: IpAddr) -> Result<(), NetlinkError> {
        let op = format!("route add default via {gateway} in {ns}");
        let h = self.handle(ns)?;
        let msg = match gateway {
            IpAddr::V4(gw) => RouteMessageBuilder::<std::net::Ipv4Addr>::new().gateway(gw).build(),
            IpAddr::V6(gw) => RouteMessageBuilder::<std::net::Ipv6Addr>::new().gateway(gw).build(),
        };
        h.route().add(msg).execute().await.map_err(fail(op))
    }

    async fn delete_link(&self, ns: &NetnsRef, name: &str) -> Result<bool, NetlinkError> {
        let op = format!("link del {name} in {ns}");
        let h = self.handle(ns)?;
        let Some(idx) = Self::index(&h, name, &op).await? else { return Ok(false) };
        match h.link().del(idx).execute().await {
            Ok(()) => Ok(true),
            Err(e) if is_enodev(&e) => Ok(false),
            Err(e) => Err(fail(op)(e)),
        }
    }
}

/// One recorded netlink call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NlCall {
    LinkExists(NetnsRef, String),
    CreateBridge(String),
    CreateVeth { host: String, peer: String, peer_netns: Option<PathBuf> },
    MoveToNetns(String, PathBuf),
    SetMaster(String, String),
    AddAddress(NetnsRef, String, IpNet),
    Addresses(NetnsRef, String),
    DeleteAddress(NetnsRef, String, IpNet),
    SetUp(NetnsRef, String),
    AddDefaultRoute(NetnsRef, IpAddr),
    DeleteLink(NetnsRef, String),
}

/// A fake that records calls and keeps a set of existing host links, so `link_exists` and
/// `delete_link` answer consistently. A chosen call can be made to fail.
#[derive(Debug, Default)]
pub struct RecordingNetlink {
    calls: Mutex<Vec<NlCall>>,
    links: Mutex<Vec<(NetnsRef, String)>>,
    addrs: Mutex<Vec<(NetnsRef, String, IpNet)>>,
    fail: Mutex<Option<NlCall>>,
}

impl RecordingNetlink {
    /// The calls made so far, in order.
    pub fn calls(&self) -> Vec<NlCall> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Forgets the recorded calls (the links stay).
    pub fn clear_calls(&self) {
        if let Ok(mut c) = self.calls.lock() {
            c.clear();
        }
    }

    /// Pretends `name` exists in `ns`.
    pub fn add_existing_link(&self, ns: NetnsRef, name: &str) {
        if let Ok(mut l) = self.links.lock() {
            l.push((ns, name.to_owned()));
        }
    }

    /// Makes `call` fail (it is still recorded).
    pub fn fail_on(&self, call: NlCall) {
        if let Ok(mut f) = self.fail.lock() {
            *f = Some(call);
        }
    }

    fn record(&self, call: NlCall) -> Result<(), NetlinkError> {
        let fails = self.fail.lock().ok().is_some_and(|f| f.as_ref() == Some(&call));
        let op = format!("{call:?}");
        if let Ok(mut c) = self.calls.lock() {
            c.push(call);
        }
        if fails { Err(NetlinkError { op, message: "injected failure".into() }) } else { Ok(()) }
    }

    fn has(&self, ns: &NetnsRef, name: &str) -> bool {
        self.links.lock().is_ok_and(|l| l.iter().any(|(n, l)| n == ns && l == name))
    }

    fn set_link(&self, ns: NetnsRef, name: &str, present: bool) {
        if let Ok(mut l) = self.links.lock() {
            l.retain(|(n, x)| !(*n == ns && x == name));
            if present {
                l.push((ns, name.to_owned()));
            }
        }
    }
}

#[async_trait::async_trait]
impl Netlink for RecordingNetlink {
    async fn link_exists(&self, ns: &NetnsRef, name: &str) -> Result<bool, NetlinkError> {
        self.record(NlCall::LinkExists(ns.clone(), name.to_owned()))?;
        Ok(self.has(ns, name))
    }
    async fn create_bridge(&self, name: &str) -> Result<(), NetlinkError> {
        self.record(NlCall::CreateBridge(name.to_owned()))?;
        self.set_link(NetnsRef::Host, name, true);
        Ok(())
    }
    async fn create_veth(
        &self,
        host: &str,
        peer: &str,
        peer_netns: Option<&Path>,
    ) -> Result<(), NetlinkError> {
        self.record(NlCall::CreateVeth {
            host: host.to_owned(),
            peer: peer.to_owned(),
            peer_netns: peer_netns.map(Path::to_owned),
        })?;
        self.set_link(NetnsRef::Host, host, true);
        let peer_ns = peer_netns.map_or(NetnsRef::Host, |p| NetnsRef::Path(p.to_owned()));
        self.set_link(peer_ns, peer, true);
        Ok(())
    }
    async fn move_to_netns(&self, link: &str, netns: &Path) -> Result<(), NetlinkError> {
        self.record(NlCall::MoveToNetns(link.to_owned(), netns.to_owned()))?;
        self.set_link(NetnsRef::Host, link, false);
        self.set_link(NetnsRef::Path(netns.to_owned()), link, true);
        Ok(())
    }
    async fn set_master(&self, link: &str, bridge: &str) -> Result<(), NetlinkError> {
        self.record(NlCall::SetMaster(link.to_owned(), bridge.to_owned()))
    }
    async fn add_address(&self, ns: &NetnsRef, link: &str, addr: IpNet) -> Result<(), NetlinkError> {
        self.record(NlCall::AddAddress(ns.clone(), link.to_owned(), addr))?;
        if let Ok(mut a) = self.addrs.lock() {
            a.push((ns.clone(), link.to_owned(), addr));
        }
        Ok(())
    }
    async fn addresses(&self, ns: &NetnsRef, link: &str) -> Result<Vec<IpNet>, NetlinkError> {
        self.record(NlCall::Addresses(ns.clone(), link.to_owned()))?;
        let addrs = self.addrs.lock().map(|a| a.clone()).unwrap_or_default();
        Ok(addrs.into_iter().filter(|(n, l, _)| n == ns && l == link).map(|(_, _, a)| a).collect())
    }
    async fn delete_address(&self, ns: &NetnsRef, link: &str, addr: IpNet) -> Result<bool, NetlinkError> {
        self.record(NlCall::DeleteAddress(ns.clone(), link.to_owned(), addr))?;
        let Ok(mut a) = self.addrs.lock() else { return Ok(false) };
        let before = a.len();
        a.retain(|(n, l, x)| !(n == ns && l == link && *x == addr));
        Ok(a.len() != before)
    }
    async fn set_up(&self, ns: &NetnsRef, link: &str) -> Result<(), NetlinkError> {
        self.record(NlCall::SetUp(ns.clone(), link.to_owned()))
    }
    async fn add_default_route(&self, ns: &NetnsRef, gateway: IpAddr) -> Result<(), NetlinkError> {
        self.record(NlCall::AddDefaultRoute(ns.clone(), gateway))
    }
    async fn delete_link(&self, ns: &NetnsRef, name: &str) -> Result<bool, NetlinkError> {
        self.record(NlCall::DeleteLink(ns.clone(), name.to_owned()))?;
        let existed = self.has(ns, name);
        self.set_link(ns.clone(), name, false);
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_runtime_is_an_error_not_a_panic() {
        let err = RtNetlink::new().unwrap_err();
        assert_eq!(
            err.to_string(),
            "open netlink socket: no tokio runtime: RtNetlink must be used from within a tokio runtime"
        );
    }

    #[test]
    fn fake_tracks_links() {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let nl = RecordingNetlink::default();
        let ns = NetnsRef::Path("/state/pods/u/ns/net".into());
        rt.block_on(async {
            nl.create_veth("sv1", "eth0", Some(Path::new("/state/pods/u/ns/net"))).await.expect("veth");
            assert!(nl.link_exists(&ns, "eth0").await.expect("exists"));
            assert!(!nl.link_exists(&NetnsRef::Host, "eth0").await.expect("exists"));
            nl.move_to_netns("sv1", Path::new("/other")).await.expect("move");
            assert!(!nl.delete_link(&NetnsRef::Host, "sv1").await.expect("del"));
            assert!(nl.delete_link(&NetnsRef::Path("/other".into()), "sv1").await.expect("del"));
        });
        assert_eq!(NetnsRef::Host.to_string(), "host netns");
        assert_eq!(ns.to_string(), "netns /state/pods/u/ns/net");
    }
}
