//! `stead up` end to end as a user runs it: real pods in namespaces, DNS, logs, ordered start and
//! stop. Needs root (network namespaces, a bridge); `.ci/run` runs it as root.

use assert_cmd::Command;
use std::path::Path;
use std::time::Duration;

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name).display().to_string()
}

#[test]
fn up_runs_a_stateful_set_in_order_with_dns_and_logs_then_stops() {
    if !is_root() {
        eprintln!("skipped: stead up needs root for network namespaces and a bridge (run .ci/run)");
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let output = Command::cargo_bin("stead")
        .unwrap()
        .args(["up", "-f", &example("statefulset"), "--wait", "--timeout", "60s"])
        .arg("--state-dir")
        .arg(state.path())
        .args(["--pod-cidr", "10.244.200.0/24", "--bridge", "stup0"])
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("statefulset/example applied"), "{stdout}");
    // example-2's announcer reached example-0 and example-1 by their DNS names.
    assert!(stdout.contains("example-0/listener | Hello from example-2"), "{stdout}");
    assert!(stdout.contains("example-1/listener | Hello from example-2"), "{stdout}");
    // OrderedReady: example-1 appears only after example-0 is running.
    let first = stdout.find("pod/example-0 Running").expect("example-0 running");
    let second = stdout.find("pod/example-1").expect("example-1 shown");
    assert!(first < second, "{stdout}");
    assert!(stdout.contains("==> ready in"), "{stdout}");
    assert!(stdout.contains("==> stopped in"), "{stdout}");
    // Nothing is left of the pod network.
    assert!(!Path::new("/sys/class/net/stup0").exists(), "the bridge is removed");
}

#[test]
fn up_reports_a_pod_that_cannot_start_and_exits_non_zero() {
    if !is_root() {
        eprintln!("skipped: stead up needs root for network namespaces and a bridge (run .ci/run)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stead.yaml");
    std::fs::write(
        &file,
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata: {name: broken}
spec:
  serviceName: broken
  replicas: 2
  minReadySeconds: 5
  selector: {matchLabels: {app: broken}}
  template:
    metadata: {labels: {app: broken}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: busybox
        command: ["sh", "-c", "echo starting; exit 3"]
"#,
    )
    .unwrap();
    let output = Command::cargo_bin("stead")
        .unwrap()
        .current_dir(dir.path())
        .args(["up", "--wait", "--timeout", "60s", "--state-dir"])
        .arg(dir.path().join("state"))
        .args(["--pod-cidr", "10.244.201.0/24", "--bridge", "stup1"])
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("broken-0/app | starting"), "{stdout}");
    assert!(stdout.contains("not ready: pod/broken-0"), "{stdout}");
    // OrderedReady (with minReadySeconds: a crashing pod is Ready only for moments) never
    // started the second replica.
    assert!(!stdout.contains("pod/broken-1"), "{stdout}");
}
