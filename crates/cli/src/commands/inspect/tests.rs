use super::*;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use stead_engine::daemon::{ApiState, bind_private, serve_on, socket_path};
use stead_engine::runtime::{FakeRuntime, Runtime};
use stead_engine::{Engine, EngineConfig, ObjectKey, Store};

fn now() -> Timestamp {
    "2026-11-22T04:00:00Z".parse().unwrap()
}

fn text(out: Vec<u8>) -> String {
    String::from_utf8(out).unwrap()
}

#[test]
fn a_pod_is_described_as_kubectl_does() {
    let pod = json!({
        "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "default", "labels": {"app": "web", "apps.kubernetes.io/pod-index": "0"},
            "ownerReferences": [{"kind": "StatefulSet", "name": "web", "controller": true}]},
        "spec": {"nodeName": "stead", "containers": [{"name": "app", "image": "busybox", "command": ["sleep", "1000"],
            "ports": [{"containerPort": 80}], "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "readinessProbe": {"exec": {"command": ["true"]}}}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}}]},
        "status": {"phase": "Running", "podIP": "10.244.0.5", "hostIP": "10.244.0.1", "startTime": "2026-11-22T03:59:00Z",
            "qosClass": "BestEffort",
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 1,
                "state": {"running": {"startedAt": "2026-11-22T03:59:30Z"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": "2026-11-22T03:59:01Z", "finishedAt": "2026-11-22T03:59:20Z"}}}]},
    });
    let events = vec![
        json!({"type": "Normal", "reason": "Scheduled", "message": "Successfully assigned default/web-0 to stead",
            "source": {"component": "stead"}, "firstTimestamp": "2026-11-22T03:59:00Z", "lastTimestamp": "2026-11-22T03:59:00Z", "count": 1}),
        json!({"type": "Warning", "reason": "BackOff", "message": "Back-off restarting failed container app",
            "source": {"component": "stead"}, "firstTimestamp": "2026-11-22T03:55:00Z", "lastTimestamp": "2026-11-22T03:59:50Z", "count": 3}),
    ];
    let out = describe_text(Kind::Pod, &pod, &[], &events, now());
    for expected in [
        "Name:             web-0\n",
        "Node:             stead/10.244.0.1\n",
        "Start Time:       Sun, 22 Nov 2026 03:59:00 +0000\n",
        "Labels:           app=web\n                  apps.kubernetes.io/pod-index=0\n",
        "Status:           Running\n",
        "IP:               10.244.0.5\n",
        "Controlled By:    StatefulSet/web\n",
        "Containers:\n  app:\n",
        "    State:          Running\n      Started:      Sun, 22 Nov 2026 03:59:30 +0000\n",
        "    Last State:     Terminated\n      Reason:       Error\n      Exit Code:    1\n",
        "    Ready:          True\n    Restart Count:  1\n",
        "    Readiness:      exec [true] delay=0s timeout=1s period=10s #success=1 #failure=3\n",
        "    Mounts:\n      /data from data (rw)\n",
        "Conditions:\n  Type          Status\n  PodScheduled  True\n  Ready         True\n",
        "    ClaimName:   data-web-0\n",
        "QoS Class:       BestEffort\n",
        "Events:\n  Type     Reason     Age               From   Message\n  ----     ------     ----              ----   -------\n",
        "  Normal   Scheduled  60s               stead  Successfully assigned default/web-0 to stead\n",
        "  Warning  BackOff    10s (x3 over 5m)  stead  Back-off restarting failed container app\n",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in\n{out}");
    }
    assert!(describe_text(Kind::Pod, &pod, &[], &[], now()).ends_with("Events:  <none>\n"));
}

#[test]
fn a_secret_is_described_by_its_keys_and_sizes_never_its_values() {
    // `password` is base64 of "s3cr3t-passw0rd" (15 bytes), `username` of "admin" (5 bytes).
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db-user-pass", "namespace": "default", "uid": "u1",
            "creationTimestamp": "2026-11-22T03:00:00Z"},
        "type": "Opaque",
        "data": {"username": "YWRtaW4=", "password": "czNjcjN0LXBhc3N3MHJk"},
        "stringData": {"token": "plain-token"},
    });
    let events = vec![json!({"type": "Normal", "reason": "Anything", "message": "m", "count": 1})];
    let out = describe_text(Kind::Secret, &secret, &[], &events, now());
    assert_eq!(
        out,
        "Name:         db-user-pass\n\
         Namespace:    default\n\
         Labels:       <none>\n\
         Annotations:  <none>\n\
         \n\
         Type:  Opaque\n\
         \n\
         Data\n\
         ====\n\
         password:  15 bytes\n\
         token:     11 bytes\n\
         username:  5 bytes\n"
    );
    for value in ["YWRtaW4=", "admin", "czNjcjN0LXBhc3N3MHJk", "s3cr3t", "plain-token"] {
        assert!(!out.contains(value), "{value:?} printed in\n{out}");
    }
    let typed = json!({"kind": "Secret", "metadata": {"name": "tls", "namespace": "web",
        "labels": {"app": "web"}}, "type": "kubernetes.io/tls", "data": {}});
    assert_eq!(
        describe_text(Kind::Secret, &typed, &[], &[], now()),
        "Name:         tls\nNamespace:    web\nLabels:       app=web\nAnnotations:  <none>\n\nType:  kubernetes.io/tls\n\nData\n====\n"
    );
}

#[test]
fn events_rows_read_as_kubectl_events() {
    let e = json!({"metadata": {"namespace": "default"}, "type": "Normal", "reason": "Started", "message": "Started container app",
        "involvedObject": {"kind": "Pod", "name": "web-0"}, "lastTimestamp": "2026-11-22T03:58:00Z", "count": 1});
    let table = align(&events_rows(std::slice::from_ref(&e), false, true, now()));
    assert_eq!(
        table,
        "LAST SEEN   TYPE     REASON    OBJECT      MESSAGE\n2m          Normal   Started   pod/web-0   Started container app\n"
    );
    let wide = align(&events_rows(&[e], true, true, now()));
    assert!(wide.starts_with("NAMESPACE   LAST SEEN"), "{wide}");
}

#[test]
fn ports_parse_as_kubectl_takes_them() {
    let pod = json!({"spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8080}]}]}});
    assert_eq!(parse_ports("9000:80", &pod).unwrap(), (9000, 80));
    assert_eq!(parse_ports("80", &pod).unwrap(), (80, 80));
    assert_eq!(parse_ports(":80", &pod).unwrap(), (0, 80));
    assert_eq!(parse_ports("9000:http", &pod).unwrap(), (9000, 8080));
    assert!(parse_ports("9000:nope", &pod).is_err());
    assert!(parse_ports("x:80", &pod).is_err());
}

const WEB: &str = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  \
serviceName: web\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        \
app: web\n    spec:\n      containers:\n        - name: app\n          image: busybox\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbs_read_a_daemon_and_forward_to_a_pod_address() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let runtime: Arc<dyn Runtime> = Arc::new(FakeRuntime::new(true));
        let engine = Engine::new(Store::in_memory(), runtime, EngineConfig::default());
        let (_stop_engine, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(engine.clone().run(rx));
        let listener = bind_private(&socket_path(dir.path())).unwrap();
        let state = ApiState { store: engine.store().clone(), log_paths: None };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_on(listener, state, async {
            let _ = stopped.await;
        }));
        let addr = DaemonAddr { state_dir: Some(dir.path().to_path_buf()) };
        let client = addr.client();
        let store = engine.store().clone();
        let manifests = stead_api::load_str("web.yaml", WEB)
            .documents
            .into_iter()
            .map(|d| d.manifest)
            .collect::<Vec<_>>();
        stead_engine::local::apply(&store, &manifests).unwrap();
        let scheduled = |name: &str| {
            stead_engine::events::about(&store, "default", "Pod", name, None)
                .iter()
                .any(|e| e["reason"] == "Scheduled")
        };
        for _ in 0..500 {
            if scheduled("web-1") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        let describe_args = |resource: &str, names: &[&str]| DescribeArgs {
            resource: resource.into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            namespace: "default".into(),
            selector: None,
            addr: addr.clone(),
        };
        let mut out = Vec::new();
        assert_eq!(describe(&client, &describe_args("pod/web-0", &[]), &mut out).await.unwrap(), exit::OK);
        let shown = text(out);
        assert!(shown.starts_with("Name:"), "{shown}");
        assert!(shown.contains("Controlled By:    StatefulSet/web"), "{shown}");
        assert!(shown.contains("Successfully assigned default/web-0 to stead"), "{shown}");
        let mut out = Vec::new();
        describe(&client, &describe_args("sts", &["web"]), &mut out).await.unwrap();
        let shown = text(out);
        assert!(
            shown.contains("Pods Status:            2 Running / 0 Waiting / 0 Succeeded / 0 Failed"),
            "{shown}"
        );
        assert!(shown.contains("create Pod web-1 in StatefulSet web successful"), "{shown}");
        let mut out = Vec::new();
        assert_eq!(
            describe(&client, &describe_args("pods", &["nope"]), &mut out).await.unwrap(),
            exit::INVALID
        );

        let mut out = Vec::new();
        let events_args = EventsArgs {
            for_object: Some("sts/web".into()),
            namespace: "default".into(),
            all_namespaces: false,
            types: vec![],
            watch: false,
            addr: addr.clone(),
        };
        assert_eq!(events(&client, &events_args, &mut out).await.unwrap(), exit::OK);
        let table = text(out);
        assert!(
            table.starts_with("LAST SEEN   TYPE     REASON             OBJECT            MESSAGE\n"),
            "{table}"
        );
        assert_eq!(table.lines().count(), 3, "{table}");

        // No pod runtime behind this daemon: exec says so.
        let exec_args = ExecArgs {
            pod: "pod/web-0".into(),
            container: None,
            namespace: "default".into(),
            stdin: false,
            command: vec!["hostname".into()],
            addr: addr.clone(),
        };
        let code = exec(&client, &exec_args, Vec::new(), &mut Vec::new(), &mut Vec::new()).await.unwrap();
        assert_eq!(code, exit::INVALID);

        // Port-forward to the pod's address: here a loopback echo server stands in for the pod.
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let remote = echo.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let key = ObjectKey::new(Kind::Pod, "default", "web-0");
        let mut pod: Value = (*store.get(&key).unwrap()).clone();
        pod["status"]["podIP"] = json!("127.0.0.1");
        store.update_status(pod).unwrap();
        let local = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pf_args = PortForwardArgs {
            target: "sts/web".into(),
            ports: vec![format!("{local}:{remote}")],
            namespace: "default".into(),
            address: "127.0.0.1".parse().unwrap(),
            addr: addr.clone(),
        };
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let pf = tokio::spawn({
            let client = client.clone();
            async move {
                port_forward(&client, &pf_args, async {
                    let _ = finished.await;
                })
                .await
            }
        });
        let mut conn = None;
        for _ in 0..200 {
            if let Ok(c) = tokio::net::TcpStream::connect(("127.0.0.1", local)).await {
                conn = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut conn = conn.expect("port-forward listens");
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        conn.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        done.send(()).unwrap();
        assert_eq!(pf.await.unwrap().unwrap(), exit::OK);

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    })
    .await
    .expect("test timed out");
}
