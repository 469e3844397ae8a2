//! The verbs against a daemon over its socket, with a fake runtime behind it (no root).

use super::*;
use std::path::Path;
use std::sync::Arc;
use stead_engine::daemon::{ApiState, bind_private, serve_on, socket_path};
use stead_engine::runtime::{FakeRuntime, Runtime};
use stead_engine::{Engine, EngineConfig, Store};

const WEB: &str = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  \
serviceName: web\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        \
app: web\n    spec:\n      containers:\n        - name: app\n          image: busybox\n          env: [{name: REV, value: \"1\"}]\n";

fn addr(dir: &Path) -> DaemonAddr {
    DaemonAddr { state_dir: Some(dir.to_path_buf()) }
}

fn targets(dir: &Path, words: &[&str]) -> Targets {
    Targets {
        targets: words.iter().map(|w| w.to_string()).collect(),
        namespace: "default".into(),
        addr: addr(dir),
    }
}

fn text(out: Vec<u8>) -> String {
    String::from_utf8(out).unwrap()
}

#[test]
fn targets_parse_as_kubectls() {
    let w = |words: &[&str]| parse_targets(&words.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(w(&["sts/web"]).unwrap(), [(Kind::StatefulSet, "web".to_string())]);
    assert_eq!(w(&["statefulset", "web"]).unwrap(), [(Kind::StatefulSet, "web".to_string())]);
    assert_eq!(
        w(&["deploy/x", "ssvc/n"]).unwrap(),
        [(Kind::Deployment, "x".to_string()), (Kind::StatefulService, "n".to_string())]
    );
    assert_eq!(w(&["po", "a", "b"]).unwrap().len(), 2);
    assert_eq!(w(&["podz/x"]).unwrap_err(), "the server doesn't have a resource type \"podz\"");
    assert!(w(&["sts"]).unwrap_err().starts_with("you must specify the name"));
    assert!(w(&["sts/web", "other"]).is_err());
    assert!(w(&[]).is_err());
}

#[test]
fn history_prints_kubectls_table() {
    let revisions = vec![
        serde_json::json!({"revision": 1, "changeCause": null}),
        serde_json::json!({"revision": 12, "changeCause": "kubectl apply --record"}),
    ];
    assert_eq!(
        history_table("statefulset.apps/web", &revisions),
        "statefulset.apps/web\nREVISION  CHANGE-CAUSE\n1         <none>\n12        kubectl apply --record\n"
    );
    let template = serde_json::json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "busybox", "command": ["sh", "-c"], "env": [{"name": "REV", "value": "2"}]}]}
    });
    let shown = describe_template(&template);
    assert!(
        shown.starts_with("Pod Template:\n  Labels:\tapp=web\n  Containers:\n   app:\n    Image:\tbusybox\n"),
        "{shown}"
    );
    assert!(shown.contains("    Environment:\n      REV:\t2\n"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbs_scale_roll_back_restart_and_wait_through_the_daemon() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeRuntime::new(true);
        let runtime: Arc<dyn Runtime> = Arc::new(fake.clone());
        let engine = Engine::new(Store::in_memory(), runtime, EngineConfig::default());
        let (_stop_engine, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(engine.clone().run(rx));
        let listener = bind_private(&socket_path(dir.path())).unwrap();
        let state = ApiState { store: engine.store().clone(), log_paths: None };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_on(listener, state, async {
            let _ = stopped.await;
        }));
        let client = addr(dir.path()).client();
        let store = engine.store().clone();
        let apply = |text: String| {
            let store = store.clone();
            move || {
                let docs = stead_api::load_str("web.yaml", &text).documents.into_iter().map(|d| d.manifest);
                stead_engine::local::apply(&store, &docs.collect::<Vec<_>>()).unwrap();
            }
        };
        apply(WEB.to_string())();

        let status_args = |timeout: Option<Duration>| StatusArgs {
            targets: targets(dir.path(), &["sts/web"]),
            watch: true,
            timeout,
        };
        let mut out = Vec::new();
        assert_eq!(
            status(&client, &status_args(Some(Duration::from_secs(20))), &mut out).await.unwrap(),
            exit::OK
        );
        let printed = text(out);
        assert!(
            printed
                .lines()
                .last()
                .unwrap()
                .starts_with("statefulset rolling update complete 2 pods at revision web-"),
            "{printed}"
        );

        let mut out = Vec::new();
        let scale_args = ScaleArgs {
            targets: targets(dir.path(), &["statefulset", "web"]),
            replicas: 3,
            current_replicas: None,
        };
        assert_eq!(scale(&client, &scale_args, &mut out).await.unwrap(), exit::OK);
        assert_eq!(text(out), "statefulset.apps/web scaled\n");
        let wrong =
            ScaleArgs { targets: targets(dir.path(), &["sts/web"]), replicas: 1, current_replicas: Some(7) };
        assert_eq!(scale(&client, &wrong, &mut Vec::new()).await.unwrap(), exit::INVALID);

        let wait_args = |words: &[&str], for_: &str, timeout: Duration| WaitArgs {
            targets: words.iter().map(|w| w.to_string()).collect(),
            for_: for_.into(),
            timeout,
            selector: None,
            all: false,
            namespace: "default".into(),
            addr: addr(dir.path()),
        };
        let mut out = Vec::new();
        let ready = wait_args(&["pod/web-2"], "condition=Ready", Duration::from_secs(20));
        for _ in 0..200 {
            if store.get(&stead_engine::ObjectKey::new(Kind::Pod, "default", "web-2")).is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(wait(&client, &ready, &mut out).await.unwrap(), exit::OK);
        assert_eq!(text(out), "pod/web-2 condition met\n");
        // A condition that never comes times out with kubectl's message and exit code.
        let never = wait_args(&["pods", "web-0"], "condition=Ready=False", Duration::from_millis(300));
        assert_eq!(wait(&client, &never, &mut Vec::new()).await.unwrap(), exit::INVALID);
        let missing = wait_args(&["pod/ghost"], "condition=Ready", Duration::from_secs(1));
        assert_eq!(wait(&client, &missing, &mut Vec::new()).await.unwrap(), exit::INVALID);
        let mut all = wait_args(&["pods"], "condition=Ready", Duration::from_secs(20));
        all.selector = Some("app=web".into());
        let mut out = Vec::new();
        assert_eq!(wait(&client, &all, &mut out).await.unwrap(), exit::OK);
        assert_eq!(text(out).lines().count(), 3);

        // A new revision, its history, and back.
        apply(WEB.replace("value: \"1\"", "value: \"2\""))();
        assert_eq!(
            status(&client, &status_args(Some(Duration::from_secs(20))), &mut Vec::new()).await.unwrap(),
            exit::OK
        );
        let mut out = Vec::new();
        let history_args = |revision| HistoryArgs { targets: targets(dir.path(), &["sts/web"]), revision };
        assert_eq!(history(&client, &history_args(None), &mut out).await.unwrap(), exit::OK);
        assert_eq!(
            text(out),
            "statefulset.apps/web\nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n"
        );
        let mut out = Vec::new();
        assert_eq!(history(&client, &history_args(Some(1)), &mut out).await.unwrap(), exit::OK);
        let shown = text(out);
        assert!(shown.starts_with("statefulset.apps/web with revision #1\nPod Template:\n"), "{shown}");
        assert!(shown.contains("REV:\t1"), "{shown}");
        assert_eq!(history(&client, &history_args(Some(9)), &mut Vec::new()).await.unwrap(), exit::INVALID);

        let mut out = Vec::new();
        let undo_args = |to_revision| UndoArgs { targets: targets(dir.path(), &["sts/web"]), to_revision };
        assert_eq!(undo(&client, &undo_args(0), &mut out).await.unwrap(), exit::OK);
        assert_eq!(text(out), "statefulset.apps/web rolled back\n");
        assert_eq!(
            status(&client, &status_args(Some(Duration::from_secs(20))), &mut Vec::new()).await.unwrap(),
            exit::OK
        );
        let mut out = Vec::new();
        assert_eq!(undo(&client, &undo_args(3), &mut out).await.unwrap(), exit::OK);
        assert_eq!(
            text(out),
            "statefulset.apps/web skipped rollback (current template already matches revision 3)\n"
        );

        let mut out = Vec::new();
        assert_eq!(restart(&client, &targets(dir.path(), &["sts/web"]), &mut out).await.unwrap(), exit::OK);
        assert_eq!(text(out), "statefulset.apps/web restarted\n");

        // The restart's rollout ends before web-0 is made unready (it would replace web-0).
        let done = status_args(Some(Duration::from_secs(20)));
        assert_eq!(status(&client, &done, &mut Vec::new()).await.unwrap(), exit::OK);

        // A pod that never gets Ready: status times out, non-zero, naming the pod.
        fake.set_ready("default", "web-0", false);
        let web0 = stead_engine::ObjectKey::new(stead_engine::Kind::Pod, "default", "web-0");
        while engine.store().get(&web0).is_some_and(|p| p["status"]["containerStatuses"][0]["ready"] == true)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        scale(
            &client,
            &ScaleArgs { targets: targets(dir.path(), &["sts/web"]), replicas: 4, current_replicas: None },
            &mut Vec::new(),
        )
        .await
        .unwrap();
        let mut once = status_args(Some(Duration::from_millis(500)));
        assert_eq!(status(&client, &once, &mut Vec::new()).await.unwrap(), exit::INVALID);
        once.watch = false;
        let mut out = Vec::new();
        assert_eq!(status(&client, &once, &mut out).await.unwrap(), exit::OK, "--watch=false looks once");
        assert!(text(out).starts_with("Waiting for "));

        // --for=delete.
        let del = wait_args(&["pod/ghost"], "delete", Duration::from_secs(1));
        assert_eq!(wait(&client, &del, &mut Vec::new()).await.unwrap(), exit::OK);

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    })
    .await
    .expect("test timed out");
}

#[test]
fn command_lines_parse_as_kubectls() {
    use clap::Parser as _;
    let parse = |args: &[&str]| crate::Cli::try_parse_from([&["stead"], args].concat());
    let watch = |args: &[&str]| match parse(args).map(|c| c.command) {
        Ok(crate::Command::Rollout(RolloutArgs { command: RolloutCommand::Status(s) })) => {
            (s.watch, s.targets.targets)
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(watch(&["rollout", "status", "-w", "sts/x"]), (true, vec!["sts/x".to_string()]));
    assert!(watch(&["rollout", "status", "sts/x"]).0);
    assert!(!watch(&["rollout", "status", "--watch=false", "sts/x"]).0);
    match parse(&["wait", "--for=condition=Ready", "pod/x", "--timeout=5s"]).map(|c| c.command) {
        Ok(crate::Command::Wait(w)) => {
            assert_eq!((w.for_.as_str(), w.timeout), ("condition=Ready", Duration::from_secs(5)))
        }
        other => panic!("{other:?}"),
    }
    match parse(&["scale", "ssvc/notes", "--replicas=2"]).map(|c| c.command) {
        Ok(crate::Command::Scale(s)) => assert_eq!((s.replicas, s.current_replicas), (2, None)),
        other => panic!("{other:?}"),
    }
    assert!(parse(&["scale", "sts/web"]).is_err(), "--replicas is required");
    match parse(&["rollout", "undo", "sts/web", "--to-revision=2"]).map(|c| c.command) {
        Ok(crate::Command::Rollout(RolloutArgs { command: RolloutCommand::Undo(u) })) => {
            assert_eq!(u.to_revision, 2)
        }
        other => panic!("{other:?}"),
    }
}
