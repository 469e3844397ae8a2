//! The proxy when its embedded store cannot go on: a full disk fails the commands at once with
//! UNAVAILABLE (not after the relay timeout), `/alive` and `/ready` report it, and the store,
//! left with writes only its log holds, is refused when that log is gone unless the operator
//! says to discard them.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::cart::{self, CartFunction, api};
use stead_proxy::store::{LogDamage, OpenError};
use stead_proxy::{ProxyError, StoreConfig};

/// A tmpfs of `size` mounted on a new directory until dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    /// Mounts one as root; otherwise says why not (and fails under CI, where tests run as root).
    fn mount(size: &str) -> Option<Tmpfs> {
        if !stead_testkit::require_root("mounts a small tmpfs") {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let options = format!("size={size},mode=0700");
        let flags = nix::mount::MsFlags::empty();
        nix::mount::mount(Some("tmpfs"), dir.path(), Some("tmpfs"), flags, Some(options.as_str()))
            .expect("mounts a tmpfs");
        Some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.0.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

async fn ready(health: std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while common::http_get(health, "/ready").await.0 != 200 {
        assert!(Instant::now() < deadline, "the proxy is not ready after 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn proxy_config(user: std::net::SocketAddr, path: &Path) -> stead_proxy::ProxyConfig {
    let mut config = stead_proxy::ProxyConfig::local("127.0.0.1:0".parse().expect("addr"), user);
    config.store = StoreConfig::Embedded { path: path.to_path_buf() };
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_commands_at_once_and_a_store_left_without_its_log_is_refused() {
    let Some(disk) = Tmpfs::mount("12m") else { return };
    tokio::time::timeout(Duration::from_secs(120), async {
        let path = disk.0.path().join("store.redb");
        let user = cart::serve_user_function(CartFunction { snapshot_every: 0 }).await;
        let proxy = common::start_configured(proxy_config(user, &path)).await;
        ready(proxy.health).await;
        let mut client = cart::client(proxy.addr).await;
        let big = "x".repeat(256 << 10);

        // Fill the disk: the first failure and every command after it is UNAVAILABLE, at once.
        let mut added = 0;
        let failure = loop {
            let started = Instant::now();
            let result = match client.add_item(cart::line("ann", &format!("p{added}"), &big, 1)).await {
                Ok(_) => client.get_cart(api::GetShoppingCart { user_id: "ann".into() }).await.map(|_| ()),
                Err(status) => Err(status),
            };
            assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
            match result {
                Ok(()) => added += 1,
                Err(status) => break status,
            }
            assert!(added < 200, "a 12 MiB disk fills");
        };
        assert!(added > 0, "the disk took some writes first");
        assert_eq!(failure.code(), tonic::Code::Unavailable, "{failure:?}");
        assert!(failure.message().contains("No space left on device"), "{}", failure.message());
        for user_id in ["ann", "bob"] {
            let started = Instant::now();
            let status = client
                .get_cart(api::GetShoppingCart { user_id: user_id.into() })
                .await
                .expect_err("the store cannot be used");
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
            assert!(started.elapsed() < Duration::from_secs(1), "fails fast: {:?}", started.elapsed());
        }
        let (status, body) = common::http_get(proxy.health, "/alive").await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("No space left on device"), "{body}");
        assert_eq!(common::http_get(proxy.health, "/ready").await.0, 503);
        drop(client);
        // Entities that were loading from the stopped store ended: nothing holds up the stop.
        let stopping = Instant::now();
        proxy.stop().await.expect("the proxy stops");
        assert!(stopping.elapsed() < Duration::from_secs(5), "{:?}", stopping.elapsed());

        // The stopped store's acknowledged writes are only in its log: without the log it is
        // refused, unless the operator says to discard them.
        let moved = tempfile::tempdir().expect("temp dir");
        let path = moved.path().join("store.redb");
        std::fs::copy(disk.0.path().join("store.redb"), &path).expect("copies the database");
        let refused = common::start_configured(proxy_config(user, &path)).await.stop().await;
        let Err(ProxyError::Embedded(OpenError::DamagedLog { damage: LogDamage::Missing { .. }, .. })) =
            refused
        else {
            panic!("a store without its log is refused: {refused:?}");
        };
        let mut config = proxy_config(user, &path);
        config.discard_damaged_log = true;
        let proxy = common::start_configured(config).await;
        ready(proxy.health).await;
        let mut client = cart::client(proxy.addr).await;
        client.add_item(cart::line("bob", "plum", "Plum", 1)).await.expect("the store takes writes again");
        drop(client);
        proxy.stop().await.expect("the proxy stops");
    })
    .await
    .expect("the test finishes within 120 s");
}
