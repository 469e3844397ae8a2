//! The API over a fake runtime's engine (no root): requests in, JSON and streams out.

use super::*;
use crate::runtime::{FakeRuntime, Runtime};
use crate::{Engine, EngineConfig};
use axum::http::{Method, Request};
use http_body_util::BodyExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch as signal;
use tower::ServiceExt as _;

const WEB: &str = "\
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 2
  serviceName: web
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
        - name: app
          image: busybox
          command: [sleep, \"1000\"]
";

struct Running {
    state: ApiState,
    _stop: signal::Sender<bool>,
}

fn start(log_paths: Option<LogPaths>) -> Running {
    let runtime: Arc<dyn Runtime> = Arc::new(FakeRuntime::new(true));
    let engine = Engine::new(Store::in_memory(), runtime, EngineConfig::default());
    let (tx, rx) = signal::channel(false);
    tokio::spawn(engine.clone().run(rx));
    Running { state: ApiState { store: engine.store().clone(), log_paths }, _stop: tx }
}

async fn call(state: &ApiState, method: Method, uri: &str, body: &str) -> (StatusCode, Value) {
    let request = Request::builder().method(method).uri(uri).body(Body::from(body.to_string())).unwrap();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(bytes_text(&bytes)));
    (status, value)
}

fn bytes_text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..500 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn with_timeout(f: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(20), f).await.expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_then_get_and_list_with_selectors() {
    with_timeout(async {
        let r = start(None);
        let (code, applied) = call(&r.state, Method::POST, "/apply?filename=web.yaml", WEB).await;
        assert_eq!(code, StatusCode::OK, "{applied}");
        assert_eq!(
            applied,
            json!([{ "object": "statefulset/web", "namespace": "default", "result": "created" }])
        );
        let (_, again) = call(&r.state, Method::POST, "/apply?filename=web.yaml", WEB).await;
        assert_eq!(
            again,
            json!([{ "object": "statefulset/web", "namespace": "default", "result": "unchanged" }])
        );
        let changed = WEB.replace("replicas: 2", "replicas: 3");
        let (_, configured) = call(&r.state, Method::POST, "/apply", &changed).await;
        assert_eq!(configured[0]["result"], "configured");

        let (code, sts) = call(&r.state, Method::GET, "/api/sts/default/web", "").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(sts["spec"]["replicas"], 3);
        until("three pods", async || {
            call(&r.state, Method::GET, "/api/pods", "").await.1["items"].as_array().map_or(0, Vec::len) == 3
        })
        .await;
        let (_, pods) =
            call(&r.state, Method::GET, "/api/po?namespace=default&labelSelector=app%3Dweb", "").await;
        assert_eq!(pods["kind"], "List");
        let names: Vec<&str> = pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["web-0", "web-1", "web-2"]);
        let (_, none) = call(&r.state, Method::GET, "/api/pods?labelSelector=app%3Ddb", "").await;
        assert_eq!(none["items"], json!([]));
        let (_, other_ns) = call(&r.state, Method::GET, "/api/pods?namespace=other", "").await;
        assert_eq!(other_ns["items"], json!([]));
        let (_, not_one) = call(&r.state, Method::GET, "/api/pods?labelSelector=!app", "").await;
        assert_eq!(not_one["items"], json!([]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_stops_in_order_and_with_volumes_deletes_the_claims() {
    with_timeout(async {
        let fake = FakeRuntime::new(true);
        let runtime: Arc<dyn Runtime> = Arc::new(fake.clone());
        let engine = Engine::new(Store::in_memory(), runtime, EngineConfig::default());
        let (_stop, rx) = signal::channel(false);
        tokio::spawn(engine.clone().run(rx));
        let state = ApiState { store: engine.store().clone(), log_paths: None };
        let app = router(state.clone()).layer(axum::Extension(Stopper(engine.clone())));
        let send = async |method: Method, uri: &str, body: &str| {
            let request = Request::builder().method(method).uri(uri).body(Body::from(body.to_string())).unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null))
        };
        let shop = WEB.replace("  name: web\n", "  name: web\n  namespace: shop\n")
            + "  volumeClaimTemplates:\n    - metadata: {name: data}\n      spec:\n        accessModes: [ReadWriteOnce]\n        resources: {requests: {storage: 1Mi}}\n";
        let (code, applied) = send(Method::POST, "/apply", &shop).await;
        assert_eq!(code, StatusCode::OK, "{applied}");
        assert_eq!(applied[0]["namespace"], "shop");
        let claims = || state.store.list(Kind::PersistentVolumeClaim, Some("shop")).len();
        let ready = || state.store.list(Kind::Pod, Some("shop")).iter().filter(|p| p["status"]["phase"] == "Running").count();
        until("two pods and their claims", async || ready() == 2 && claims() == 2).await;

        let objects = json!([
            {"kind": "StatefulSet", "namespace": "shop", "name": "web"},
            {"kind": "Service", "namespace": "shop", "name": "absent"},
        ])
        .to_string();
        let (code, deleted) = send(Method::POST, "/down?volumes=true", &objects).await;
        assert_eq!(code, StatusCode::OK, "{deleted}");
        assert_eq!(deleted, json!([{"object": "statefulset/web", "result": "deleted"}]));
        // The ordered stop: the highest ordinal first, nothing recreated meanwhile.
        let kills: Vec<String> = fake.calls().into_iter().filter(|c| c.starts_with("kill")).collect();
        assert_eq!(kills, ["kill shop/web-1", "kill shop/web-0"]);
        assert!(state.store.list(Kind::StatefulSet, Some("shop")).is_empty());
        assert!(state.store.list(Kind::Pod, Some("shop")).is_empty());
        assert_eq!(claims(), 0, "with volumes, the claims go too (their data with them)");

        // An API without an engine cannot stop anything.
        let (code, status) = call(&state, Method::POST, "/down", "[]").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{status}");
        let (code, _) = send(Method::POST, "/down", "not json").await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
    })
    .await;
}

#[tokio::test]
async fn not_found_and_unknown_resources_are_kubernetes_statuses() {
    let r = start(None);
    let (code, status) = call(&r.state, Method::GET, "/api/pods/default/nope", "").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(status["reason"], "NotFound");
    assert_eq!(status["message"], "pods \"nope\" not found");
    let (code, status) = call(&r.state, Method::GET, "/api/podz", "").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(status["message"], "the server doesn't have a resource type \"podz\"");
    let (code, _) = call(&r.state, Method::DELETE, "/api/pods/default/nope", "").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = call(&r.state, Method::GET, "/api/pods?labelSelector=a%20b%3Dc", "").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn apply_reports_located_problems_with_422() {
    let r = start(None);
    let broken = WEB.replace("replicas: 2", "replicas: two");
    let (code, problems) = call(&r.state, Method::POST, "/apply?filename=web.yaml", &broken).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{problems}");
    let first = &problems[0];
    assert_eq!(first["severity"], "error");
    assert_eq!(first["location"], "web.yaml:8:13", "{problems}");
    assert!(r.state.store.list(Kind::StatefulSet, None).is_empty(), "nothing applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_honours_force_and_grace_period() {
    with_timeout(async {
        let r = start(None);
        call(&r.state, Method::POST, "/apply", WEB).await;
        until("web-0", async || {
            call(&r.state, Method::GET, "/api/pods/default/web-0", "").await.0 == StatusCode::OK
        })
        .await;
        // A forced delete removes the pod now (the StatefulSet makes a new one, with a new uid).
        let uid =
            r.state.store.get(&ObjectKey::new(Kind::Pod, "default", "web-0")).unwrap()["metadata"]["uid"]
                .clone();
        let (code, gone) =
            call(&r.state, Method::DELETE, "/api/pods/default/web-0?gracePeriodSeconds=0&force=true", "")
                .await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(gone["status"], "Success");
        let after = r.state.store.get(&ObjectKey::new(Kind::Pod, "default", "web-0"));
        assert!(after.is_none_or(|p| p["metadata"]["uid"] != uid));
        // Deleting the set itself.
        let (code, _) = call(&r.state, Method::DELETE, "/api/statefulsets/default/web", "").await;
        assert_eq!(code, StatusCode::OK);
        let (code, _) = call(&r.state, Method::GET, "/api/statefulsets/default/web", "").await;
        assert_eq!(code, StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_starts_with_added_for_current_objects_then_streams_changes() {
    with_timeout(async {
        let r = start(None);
        call(&r.state, Method::POST, "/apply", WEB).await;
        let request =
            Request::builder().uri("/watch/statefulsets?namespace=default").body(Body::empty()).unwrap();
        let response = router(r.state.clone()).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        let mut text = String::new();
        let mut next_line = async || loop {
            if let Some(i) = text.find('\n') {
                let line: String = text.drain(..=i).collect();
                return serde_json::from_str::<Value>(&line).unwrap();
            }
            let frame = body.frame().await.expect("stream ended").unwrap();
            if let Ok(data) = frame.into_data() {
                text.push_str(&bytes_text(&data));
            }
        };
        let first = next_line().await;
        assert_eq!(first["type"], "ADDED");
        assert_eq!(first["object"]["metadata"]["name"], "web");
        // The controller writes the set's status: a MODIFIED event follows.
        r.state
            .store
            .delete(&ObjectKey::new(Kind::StatefulSet, "default", "web"), DeleteOptions::default())
            .unwrap();
        loop {
            let event = next_line().await;
            assert_eq!(event["object"]["metadata"]["name"], "web");
            assert_ne!(event["type"], "ADDED", "{event}");
            if event["type"] == "DELETED" {
                break;
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_read_the_runtime_files_with_tail_and_say_what_is_missing() {
    with_timeout(async {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let lookup: LogPaths = Arc::new(move |_ns: &str, pod: &str, c: &str, previous: bool| {
            (pod == "web-0" && c == "app" && !previous).then(|| stead_node::logs::log_path(&root.join(c), 0))
        });
        std::fs::create_dir_all(dir.path().join("app")).unwrap();
        std::fs::write(
            dir.path().join("app/0.log"),
            "2026-01-01T00:00:00.000000000Z stdout F one\n\
             2026-01-01T00:00:01.000000000Z stdout P tw\n\
             2026-01-01T00:00:01.100000000Z stdout F o\n\
             2026-01-01T00:00:02.000000000Z stderr F three\n",
        )
        .unwrap();
        let r = start(Some(lookup));
        let (code, missing) = call(&r.state, Method::GET, "/logs/default/web-0/app", "").await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert_eq!(missing["message"], "pods \"web-0\" not found");
        call(&r.state, Method::POST, "/apply", WEB).await;
        until("web-1", async || {
            call(&r.state, Method::GET, "/api/pods/default/web-1", "").await.0 == StatusCode::OK
        })
        .await;
        let (code, all) = call(&r.state, Method::GET, "/logs/default/web-0/app", "").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(all, Value::String("one\ntwo\nthree\n".into()));
        let (_, tail) = call(&r.state, Method::GET, "/logs/default/web-0/app?tail=1", "").await;
        assert_eq!(tail, Value::String("three\n".into()));
        let (code, bad) = call(&r.state, Method::GET, "/logs/default/web-0/db", "").await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert_eq!(bad["message"], "container db is not valid for pod web-0");
        let (code, prev) = call(&r.state, Method::GET, "/logs/default/web-0/app?previous=true", "").await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(prev["message"].as_str().unwrap().starts_with("previous terminated container"), "{prev}");
        let (code, _) = call(&r.state, Method::GET, "/logs/default/web-1/app", "").await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "web-1 has no log file yet");

        // Following: the lines so far, then what is appended.
        let request =
            Request::builder().uri("/logs/default/web-0/app?follow=true&tail=1").body(Body::empty()).unwrap();
        let mut body = router(r.state.clone()).oneshot(request).await.unwrap().into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(bytes_text(&first), "three\n");
        let mut file = std::fs::OpenOptions::new().append(true).open(dir.path().join("app/0.log")).unwrap();
        std::io::Write::write_all(&mut file, b"2026-01-01T00:00:03.000000000Z stdout F four\n").unwrap();
        let mut more = String::new();
        while !more.contains("four\n") {
            let frame = body.frame().await.unwrap().unwrap();
            if let Ok(data) = frame.into_data() {
                more.push_str(&bytes_text(&data));
            }
        }
        assert_eq!(more, "four\n");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_on_a_private_unix_socket_and_stops_on_shutdown() {
    use std::os::unix::fs::PermissionsExt as _;
    with_timeout(async {
        let dir = tempfile::tempdir().unwrap();
        let socket = socket_path(dir.path());
        std::fs::write(&socket, b"stale").unwrap();
        let listener = bind_private(&socket).unwrap();
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, [std::ffi::OsString::from(SOCKET)]);
        let r = start(None);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_on(listener, r.state.clone(), async {
            let _ = stopped.await;
        }));
        let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
        stream
            .write_all(b"GET /api/pods/default/x HTTP/1.1\r\nHost: stead\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
        assert!(reply.contains(r#""message":"pods \"x\" not found""#), "{reply}");
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    })
    .await;
}

#[test]
fn selectors_parse_as_kubectl_writes_them() {
    assert_eq!(
        parse_selector("app=web, tier==db,env!=prod,ready,!gone").unwrap(),
        [
            Requirement::Equals("app".into(), "web".into()),
            Requirement::Equals("tier".into(), "db".into()),
            Requirement::NotEquals("env".into(), "prod".into()),
            Requirement::Exists("ready".into()),
            Requirement::NotExists("gone".into()),
        ]
    );
    assert!(parse_selector("a b").is_err());
    assert!(parse_selector("=x").is_err());
    let object = json!({ "metadata": { "labels": { "app": "web" } } });
    assert!(selects(&parse_selector("app=web,!gone").unwrap(), &object));
    assert!(!selects(&parse_selector("app!=web").unwrap(), &object));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_since_a_time_with_timestamps() {
    with_timeout(async {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let lookup: LogPaths = Arc::new(move |_ns: &str, pod: &str, c: &str, _previous: bool| {
            (pod == "web-0").then(|| stead_node::logs::log_path(&root.join(c), 0))
        });
        std::fs::create_dir_all(dir.path().join("app")).unwrap();
        std::fs::write(
            dir.path().join("app/0.log"),
            "2026-01-01T00:00:00.000000000Z stdout F one\n\
             2026-01-01T00:00:05.000000000Z stdout F two\n\
             2026-01-01T00:00:09.000000000Z stdout F three\n",
        )
        .unwrap();
        let r = start(Some(lookup));
        call(&r.state, Method::POST, "/apply", WEB).await;
        until("web-0", async || {
            call(&r.state, Method::GET, "/api/pods/default/web-0", "").await.0 == StatusCode::OK
        })
        .await;
        let uri = "/logs/default/web-0/app?sinceTime=2026-01-01T00:00:05Z";
        assert_eq!(call(&r.state, Method::GET, uri, "").await.1, Value::String("two\nthree\n".into()));
        // --since applies before --tail, as kubectl does.
        let uri = "/logs/default/web-0/app?sinceTime=2026-01-01T00:00:01Z&tail=5&timestamps=true";
        assert_eq!(
            call(&r.state, Method::GET, uri, "").await.1,
            Value::String(
                "2026-01-01T00:00:05.000000000Z two\n2026-01-01T00:00:09.000000000Z three\n".into()
            )
        );
        let (code, bad) =
            call(&r.state, Method::GET, "/logs/default/web-0/app?sinceTime=yesterday", "").await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(bad["message"].as_str().unwrap().starts_with("invalid sinceTime \"yesterday\""), "{bad}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_list_what_the_controllers_recorded() {
    with_timeout(async {
        let r = start(None);
        call(&r.state, Method::POST, "/apply", WEB).await;
        until("events of both pods", async || {
            let (_, list) = call(&r.state, Method::GET, "/events?namespace=default&for=pod/web-1", "").await;
            list["items"].as_array().is_some_and(|i| i.iter().any(|e| e["reason"] == "Scheduled"))
        })
        .await;
        let (code, list) = call(&r.state, Method::GET, "/events?namespace=default&for=sts/web", "").await;
        assert_eq!(code, StatusCode::OK);
        let messages: Vec<&str> =
            list["items"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
        assert_eq!(
            messages,
            [
                "create Pod web-0 in StatefulSet web successful",
                "create Pod web-1 in StatefulSet web successful"
            ]
        );
        let (_, all) = call(&r.state, Method::GET, "/events", "").await;
        let objects: std::collections::BTreeSet<String> = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{}/{}",
                    e["involvedObject"]["kind"].as_str().unwrap(),
                    e["involvedObject"]["name"].as_str().unwrap()
                )
            })
            .collect();
        assert!(objects.contains("Pod/web-0") && objects.contains("StatefulSet/web"), "{objects:?}");
        let (code, _) = call(&r.state, Method::GET, "/events?for=web", "").await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        let (code, _) = call(&r.state, Method::GET, "/events?for=podz/x", "").await;
        assert_eq!(code, StatusCode::NOT_FOUND);
    })
    .await;
}

/// Reads an exec reply's frames: (stdout, stderr, exit code).
async fn exec_reply(response: Response) -> (String, String, Option<i32>) {
    let bytes = response.into_body().collect().await.unwrap().to_bytes().to_vec();
    let (mut out, mut err, mut code) = (Vec::new(), Vec::new(), None);
    let mut rest = &bytes[..];
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let payload = &rest[5..5 + len];
        match rest[0] {
            inspect::STDOUT => out.extend_from_slice(payload),
            inspect::STDERR => err.extend_from_slice(payload),
            inspect::EXIT => code = Some(bytes_text(payload).parse().unwrap()),
            other => panic!("frame {other}: {}", bytes_text(payload)),
        }
        rest = &rest[5 + len..];
    }
    assert!(rest.is_empty());
    (bytes_text(&out), bytes_text(&err), code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_streams_output_and_the_exit_code() {
    with_timeout(async {
        let r = start(None);
        call(&r.state, Method::POST, "/apply", WEB).await;
        until("web-0", async || {
            call(&r.state, Method::GET, "/api/pods/default/web-0", "").await.0 == StatusCode::OK
        })
        .await;
        let command = |argv: &[&str]| encode_query(&serde_json::to_string(argv).unwrap());
        // Without a pod runtime there is nothing to exec in.
        let uri = format!("/exec/default/web-0/app?command={}", command(&["true"]));
        let (code, none) = call(&r.state, Method::POST, &uri, "").await;
        assert_eq!(code, StatusCode::NOT_IMPLEMENTED, "{none}");

        // A runtime that runs the command on the host (the kubelet enters the pod's namespaces).
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let exec = inspect::Exec(Arc::new(move |ns: &str, pod: &str, c: &str, argv: &[String]| {
            log.lock().unwrap().push(format!("{ns}/{pod}/{c}"));
            if pod == "web-1" {
                return Err(inspect::ExecError::NoPod { pod: pod.into() });
            }
            let mut cmd = tokio::process::Command::new(&argv[0]);
            cmd.args(&argv[1..]);
            Ok(cmd)
        }));
        let app = router(r.state.clone()).layer(axum::Extension(exec));
        let send = |uri: String, body: &'static str| {
            let request = Request::builder().method(Method::POST).uri(uri).body(Body::from(body)).unwrap();
            app.clone().oneshot(request)
        };
        let script = "echo out; echo err >&2; cat; exit 3";
        let uri = format!("/exec/default/web-0/app?command={}", command(&["sh", "-c", script]));
        let response = send(uri, "from stdin\n").await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let (out, err, code) = exec_reply(response).await;
        assert_eq!((out.as_str(), err.as_str(), code), ("out\nfrom stdin\n", "err\n", Some(3)));
        assert_eq!(seen.lock().unwrap().as_slice(), ["default/web-0/app"]);

        let uri = format!("/exec/default/web-0/db?command={}", command(&["true"]));
        assert_eq!(send(uri, "").await.unwrap().status(), StatusCode::BAD_REQUEST);
        let uri = format!("/exec/default/web-0/app?command={}", command(&[]));
        assert_eq!(send(uri, "").await.unwrap().status(), StatusCode::BAD_REQUEST);
        let uri = format!("/exec/default/nope/app?command={}", command(&["true"]));
        assert_eq!(send(uri, "").await.unwrap().status(), StatusCode::NOT_FOUND);
        until("web-1", async || {
            call(&r.state, Method::GET, "/api/pods/default/web-1", "").await.0 == StatusCode::OK
        })
        .await;
        let uri = format!("/exec/default/web-1/app?command={}", command(&["true"]));
        assert_eq!(send(uri, "").await.unwrap().status(), StatusCode::BAD_REQUEST, "web-1 is not running");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_app_serves_logs_and_exec_through_the_runtime() {
    with_timeout(async {
        let fake = FakeRuntime::new(true);
        let runtime: Arc<dyn Runtime> = Arc::new(fake.clone());
        let engine = Engine::new(Store::in_memory(), runtime, EngineConfig::default());
        let (_stop, rx) = signal::channel(false);
        tokio::spawn(engine.clone().run(rx));
        let app = engine_app(&engine);
        let send = |method: Method, uri: String| {
            let request = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
            let app = app.clone();
            async move {
                let response = app.oneshot(request).await.unwrap();
                let status = response.status();
                let bytes = response.into_body().collect().await.unwrap().to_bytes();
                (status, bytes_text(&bytes))
            }
        };
        let request = Request::builder().method(Method::POST).uri("/apply").body(Body::from(WEB)).unwrap();
        assert_eq!(app.clone().oneshot(request).await.unwrap().status(), StatusCode::OK);
        until("web-0 running", async || fake.running().contains(&"default/web-0".to_string())).await;

        let dir = tempfile::tempdir().unwrap();
        let log = stead_node::logs::log_path(&dir.path().join("app"), 0);
        std::fs::create_dir_all(dir.path().join("app")).unwrap();
        std::fs::write(&log, "2026-01-01T00:00:00.000000000Z stdout F from the fake\n").unwrap();
        fake.set_log_path("default", "web-0", "app", false, log);
        let (code, text) = send(Method::GET, "/logs/default/web-0/app".into()).await;
        assert_eq!((code, text.as_str()), (StatusCode::OK, "from the fake\n"));

        let uri = format!("/exec/default/web-0/app?command={}", encode_query("[\"true\"]"));
        let (code, text) = send(Method::POST, uri).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.contains("exec is not supported by the fake runtime"), "{text}");
        assert!(
            fake.calls().contains(&"exec default/web-0/app [\"true\"]".to_string()),
            "{:?}",
            fake.calls()
        );
    })
    .await;
}

fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}
