//! The scale and rollout routes over a fake runtime's engine (no root).

use super::super::router;
use super::*;
use crate::kinds::Kind;
use crate::runtime::{FakeRuntime, Runtime};
use crate::{Engine, EngineConfig, Store};
use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tower::ServiceExt as _;

const WEB: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  replicas: 2
  serviceName: web
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: app, image: busybox, command: ["sleep", "1000"], env: [{name: REV, value: "1"}]}
"#;

async fn call(state: &ApiState, method: Method, uri: &str, body: &str) -> (StatusCode, Value) {
    let request = Request::builder().method(method).uri(uri).body(Body::from(body.to_string())).unwrap();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

async fn rolled_out(state: &ApiState) {
    for _ in 0..1000 {
        let (code, st) = call(state, Method::GET, "/rollout/sts/default/web/status", "").await;
        if code == StatusCode::OK && st["done"] == true {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for the rollout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_and_rollout_routes_answer_as_kubectl_prints() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let runtime: Arc<dyn Runtime> = Arc::new(FakeRuntime::new(true));
        let engine = Engine::new(Store::in_memory(), runtime, EngineConfig::default());
        let (_stop, rx) = watch::channel(false);
        tokio::spawn(engine.clone().run(rx));
        let state = ApiState { store: engine.store().clone(), log_paths: None };

        let (code, _) = call(&state, Method::POST, "/apply", WEB).await;
        assert_eq!(code, StatusCode::OK);
        rolled_out(&state).await;
        let (code, st) = call(&state, Method::GET, "/rollout/statefulsets/default/web/status", "").await;
        assert_eq!(code, StatusCode::OK);
        assert!(
            st["message"].as_str().unwrap().starts_with("statefulset rolling update complete 2 pods"),
            "{st}"
        );

        let (code, scaled) = call(&state, Method::POST, "/scale/sts/default/web?replicas=3", "").await;
        assert_eq!(
            (code, scaled),
            (StatusCode::OK, json!({"object": "statefulset.apps/web", "result": "scaled"}))
        );
        let (code, e) =
            call(&state, Method::POST, "/scale/sts/default/web?replicas=1&currentReplicas=2", "").await;
        assert_eq!(code, StatusCode::CONFLICT);
        assert_eq!(e["message"], "expected replicas to be 2, was 3");
        let (code, e) = call(&state, Method::POST, "/scale/pods/default/web-0?replicas=1", "").await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{e}");
        let (code, e) = call(&state, Method::POST, "/scale/sts/default/nope?replicas=1", "").await;
        assert_eq!((code, e["reason"].as_str()), (StatusCode::NOT_FOUND, Some("NotFound")));
        rolled_out(&state).await;
        assert_eq!(state.store.list(Kind::Pod, Some("default")).len(), 3);

        // Nothing to go back to yet.
        let (code, e) = call(&state, Method::POST, "/rollout/sts/default/web/undo", "").await;
        assert_eq!(
            (code, e["message"].as_str()),
            (StatusCode::BAD_REQUEST, Some("no last revision to roll back to"))
        );

        let (code, _) =
            call(&state, Method::POST, "/apply", &WEB.replace(r#"value: "1""#, r#"value: "2""#)).await;
        assert_eq!(code, StatusCode::OK);
        rolled_out(&state).await;
        let (code, h) = call(&state, Method::GET, "/rollout/sts/default/web/history", "").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(h["object"], "statefulset.apps/web");
        let numbers: Vec<i64> =
            h["revisions"].as_array().unwrap().iter().map(|r| r["revision"].as_i64().unwrap()).collect();
        assert_eq!(numbers, [1, 2]);
        assert_eq!(h["revisions"][0]["template"]["spec"]["containers"][0]["env"][0]["value"], "1");

        let (code, u) = call(&state, Method::POST, "/rollout/sts/default/web/undo?toRevision=2", "").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(u["result"], "skipped rollback (current template already matches revision 2)");
        let (code, e) = call(&state, Method::POST, "/rollout/sts/default/web/undo?toRevision=9", "").await;
        assert_eq!(
            (code, e["message"].as_str()),
            (StatusCode::BAD_REQUEST, Some("unable to find specified revision 9 in history"))
        );
        let (code, u) = call(&state, Method::POST, "/rollout/sts/default/web/undo", "").await;
        assert_eq!(
            (code, u),
            (StatusCode::OK, json!({"object": "statefulset.apps/web", "result": "rolled back"}))
        );
        rolled_out(&state).await;
        let set = state.store.get(&ObjectKey::new(Kind::StatefulSet, "default", "web")).unwrap();
        assert_eq!(set["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"], "1");

        let (code, r) = call(&state, Method::POST, "/rollout/sts/default/web/restart", "").await;
        assert_eq!((code, r["result"].as_str()), (StatusCode::OK, Some("restarted")));
        let set = state.store.get(&ObjectKey::new(Kind::StatefulSet, "default", "web")).unwrap();
        assert!(
            set["spec"]["template"]["metadata"]["annotations"][rollout::RESTARTED_AT].is_string(),
            "{set}"
        );

        let (code, e) = call(&state, Method::GET, "/rollout/pods/default/web-0/status", "").await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{e}");
        let (code, e) = call(&state, Method::GET, "/rollout/podz/default/x/history", "").await;
        assert_eq!((code, e["reason"].as_str()), (StatusCode::NOT_FOUND, Some("UnknownResource")));
    })
    .await
    .expect("test timed out");
}
