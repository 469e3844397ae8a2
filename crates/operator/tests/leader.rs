//! Leader election rounds against the strict fake API server.

mod support;

use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use stead_operator::leader::{LeaderElector, LeaseConfig};
use support::{Exchange, Expect, get, not_found};

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/stead-system/leases/stead-operator-leader";

fn now() -> Timestamp {
    "2026-11-22T01:00:00Z".parse().unwrap_or(Timestamp::UNIX_EPOCH)
}

fn elector(client: kube::Client, me: &str) -> LeaderElector {
    LeaderElector::new(client, LeaseConfig::new("stead-system", me)).with_clock(now)
}

fn lease(holder: &str, renewed: &str) -> serde_json::Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "stead-operator-leader", "namespace": "stead-system", "resourceVersion": "5"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed,
                 "acquireTime": renewed, "leaseTransitions": 2}})
}

#[tokio::test]
async fn the_first_replica_creates_the_lease_and_a_racing_one_stays_follower() {
    let create = |status: u16| Exchange {
        method: "POST",
        uri: "/apis/coordination.k8s.io/v1/namespaces/stead-system/leases?".into(),
        body: Expect::Check(Box::new(|b| {
            assert_eq!(b["spec"]["holderIdentity"], "op-a");
            assert_eq!(b["spec"]["leaseDurationSeconds"], 15);
            assert_eq!(b["spec"]["leaseTransitions"], 0);
        })),
        status,
        reply: if status == 201 {
            lease("op-a", "2026-11-22T01:00:00.000000Z")
        } else {
            support::status(409, "AlreadyExists", "exists")
        },
    };
    let script = vec![
        get(LEASE, 404, not_found("lease")),
        create(201),
        get(LEASE, 404, not_found("lease")),
        create(409),
    ];
    let (client, handle) = support::client();
    let e = elector(client, "op-a");
    let work =
        async { (e.try_acquire_or_renew().await.expect("a"), e.try_acquire_or_renew().await.expect("b")) };
    let (won, _) = support::scenario(handle, script, work).await;
    assert_eq!(won, (true, false));
}

#[tokio::test]
async fn a_live_holder_is_respected_and_an_expired_one_taken_over() {
    let take_over = Exchange {
        method: "PUT",
        uri: format!("{LEASE}?"),
        body: Expect::Check(Box::new(|b| {
            assert_eq!(b["metadata"]["resourceVersion"], "5", "optimistic concurrency");
            assert_eq!(b["spec"]["holderIdentity"], "op-b");
            assert_eq!(b["spec"]["leaseTransitions"], 3);
        })),
        status: 200,
        reply: lease("op-b", "2026-11-22T01:00:00.000000Z"),
    };
    let script = vec![
        get(LEASE, 200, lease("op-a", "2026-11-22T00:59:55.000000Z")),
        get(LEASE, 200, lease("op-a", "2026-11-22T00:59:00.000000Z")),
        take_over,
    ];
    let (client, handle) = support::client();
    let e = elector(client, "op-b");
    let work =
        async { (e.try_acquire_or_renew().await.expect("a"), e.try_acquire_or_renew().await.expect("b")) };
    let (won, _) = support::scenario(handle, script, work).await;
    assert_eq!(won, (false, true));
}
