//! The node's image service against a registry on loopback (Debian's `docker-registry`, through
//! `stead_image::test_util`): pods that need one image at once share one pull. No root needed.

use std::collections::BTreeMap;
use stead_image::auth::Keyring;
use stead_image::container::PullPolicy;
use stead_image::pull::Progress;
use stead_image::reference::ImageRef;
use stead_image::test_util::{Registry, build_image, layer_tar};
use stead_node::images::{ImageService, RegistryEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_of_one_image_share_one_pull() {
    let Some(registry) = Registry::start() else { return };
    let image = build_image(vec![layer_tar(&[("bin/", b""), ("bin/x", b"x")])], &["/bin/x"], &[]);
    registry.push_image("shared", "1", &image).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("registries.conf");
    std::fs::write(&conf, format!("[[registry]]\nlocation = \"{}\"\ninsecure = true\n", registry.host()))
        .expect("registries.conf");
    let env = RegistryEnv::Fixed(BTreeMap::from([
        ("CONTAINERS_REGISTRIES_CONF".to_string(), conf.display().to_string()),
        ("HOME".to_string(), dir.path().display().to_string()),
    ]));
    let svc = ImageService::new(dir.path().join("images"), env);
    let mut progress = svc.subscribe();
    let reference = ImageRef::parse(&format!("{}/shared:1", registry.host())).expect("ref");
    let keyring = Keyring::new();
    let pulls = (0..4).map(|_| svc.ensure(&reference, PullPolicy::Always, &keyring, "", || {}));
    let results = futures::future::join_all(pulls).await;
    for r in &results {
        let e = r.as_ref().expect("pulled");
        assert!(e.pulled);
        assert_eq!(e.image.manifest_digest, results[0].as_ref().expect("pulled").image.manifest_digest);
    }
    let mut resolved = 0;
    while let Ok(p) = progress.try_recv() {
        if matches!(p.progress, Progress::Resolved { .. }) {
            resolved += 1;
        }
    }
    assert_eq!(resolved, 1, "one pull for four starts");
    // Present now: IfNotPresent and Never use the store, without a pull.
    for policy in [PullPolicy::IfNotPresent, PullPolicy::Never] {
        let e = svc.ensure(&reference, policy, &keyring, "", || panic!("no pull")).await.expect("present");
        assert!(!e.pulled);
    }
}
