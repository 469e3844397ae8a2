//! `stead up` end to end as a user runs it: real pods in namespaces, DNS, logs, ordered start and
//! stop. Needs root (network namespaces, a bridge); `.ci/run` runs it as root.

use assert_cmd::Command;
use std::path::Path;
use std::time::Duration;

mod common;

use common::Daemon;

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name).display().to_string()
}

#[test]
fn up_runs_a_stateful_set_in_order_with_dns_and_logs_then_stops() {
    if !stead_testkit::require_root("stead up makes network namespaces and a bridge") {
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
    // example-2's announcer reached example-0 and example-1 by their DNS names. (The prefixes are
    // padded to the longest one shown so far, so the spaces before `|` vary.)
    let logged = |prefix: &str, message: &str| {
        stdout
            .lines()
            .filter_map(|line| line.split_once('|'))
            .any(|(p, m)| p.trim() == prefix && m.trim() == message)
    };
    assert!(logged("example-0/listener", "Hello from example-2"), "{stdout}");
    assert!(logged("example-1/listener", "Hello from example-2"), "{stdout}");
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
    if !stead_testkit::require_root("stead up makes network namespaces and a bridge") {
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

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()))
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(marker))
        .count()
}

#[test]
fn a_killed_engine_restarts_to_the_declared_state_without_duplicate_pods() {
    if !stead_testkit::require_root("stead up makes network namespaces and a bridge") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("stead-restart-{}", std::process::id());
    let file = dir.path().join("stead.yaml");
    std::fs::write(
        &file,
        format!(
            r#"apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: keep}}
spec:
  serviceName: keep
  replicas: 2
  selector: {{matchLabels: {{app: keep}}}}
  template:
    metadata: {{labels: {{app: keep}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: busybox
        command: ["sh", "-c", "echo up; sleep 3600; : {marker}"]
"#
        ),
    )
    .unwrap();
    let stead = assert_cmd::cargo::cargo_bin("stead");
    let state = dir.path().join("state");
    let args = |cmd: &mut std::process::Command| {
        cmd.current_dir(dir.path()).arg("--state-dir").arg(&state).args([
            "--pod-cidr",
            "10.244.202.0/24",
            "--bridge",
            "stup2",
        ]);
    };
    // First engine: runs until Ready, then is killed without a chance to clean up.
    let mut first = std::process::Command::new(&stead);
    first.args(["up", "--no-logs"]).stdout(std::process::Stdio::piped());
    args(&mut first);
    // Killed and reaped however the test ends, so a failed assertion leaves no engine running.
    let mut child = Reaped(first.spawn().unwrap());
    let mut out = child.0.stdout.take().unwrap();
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !seen.contains("ready in") && std::time::Instant::now() < deadline {
        let mut buf = [0u8; 4096];
        let n = std::io::Read::read(&mut out, &mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("ready in"), "{seen}");
    assert_eq!(processes_with(&marker), 2, "two pods run");
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert_eq!(processes_with(&marker), 2, "the pods outlive a killed engine");

    // Second engine on the same state: the leftovers are stopped, the declared pods run again,
    // never more than one process per identity.
    let mut second = std::process::Command::new(&stead);
    second.args(["up", "--wait", "--timeout", "60s", "--no-logs"]);
    args(&mut second);
    let output = Command::from_std(second).timeout(Duration::from_secs(120)).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("statefulset/keep unchanged"), "the store survived: {stdout}");
    assert_eq!(processes_with(&marker), 0, "everything stopped at the end");
}

#[test]
fn up_runs_a_stateful_service_with_its_sidecar_and_sticky_volumes() {
    if !stead_testkit::require_root("stead up makes network namespaces and a bridge") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let run = || {
        Command::cargo_bin("stead")
            .unwrap()
            .args(["up", "-f", &example("notes"), "--wait", "--timeout", "90s"])
            .arg("--state-dir")
            .arg(state.path())
            .args(["--pod-cidr", "10.244.203.0/24", "--bridge", "stup3"])
            .timeout(Duration::from_secs(150))
            .output()
            .unwrap()
    };
    let first = run();
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&first.stderr));
    assert!(stdout.contains("statefulservice/notes applied"), "{stdout}");
    // The sidecar (`stead proxy`, this binary) ran in passthrough mode in every pod.
    assert!(stdout.contains("notes-2/stead-proxy") && stdout.contains("mode=Passthrough"), "{stdout}");
    assert!(stdout.contains("pod/notes-2 Running 2/2"), "{stdout}");
    // Second run on the same state: each ordinal gets its own claim back.
    let second = run();
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "{stdout}");
    let visits = stdout.lines().filter(|l| l.starts_with("notes-1/user-container | notes-1 started")).count();
    assert_eq!(visits, 2, "notes-1's volume kept the first run's line: {stdout}");
}

#[test]
fn the_daemon_runs_what_apply_sends_and_get_and_logs_read_it() {
    if !stead_testkit::require_root("stead daemon makes network namespaces and a bridge") {
        return;
    }
    let mut daemon = Daemon::start("10.244.204.0/24", "stup4");
    let stdout = daemon.ok(&["apply", "-f", &example("statefulset")]);
    assert!(stdout.contains("statefulset/example created"), "{stdout}");

    // Three pods, Running and Ready, as kubectl would list them.
    daemon.ready(3);
    let table = daemon.ok(&["get", "pods"]);
    assert!(table.starts_with("NAME"), "{table}");
    let text = daemon.ok(&["logs", "example-0", "-c", "listener"]);
    assert!(text.contains("Replica 0 listening"), "{text}");

    // SIGTERM: every pod stops, the daemon exits, the socket goes.
    let socket = daemon.state().join("stead.sock");
    let exited = daemon.terminate();
    assert!(exited.is_some_and(|s| s.success()), "the daemon stops on SIGTERM: {exited:?}");
    assert!(!socket.exists());
    assert!(!Path::new("/sys/class/net/stup4").exists(), "the pods and the bridge are gone");
}

#[test]
fn the_clustered_store_example_finds_its_members_by_name_and_keeps_data_across_a_crash() {
    if !stead_testkit::require_root("stead up makes network namespaces and a bridge") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let stead = assert_cmd::cargo::cargo_bin("stead");
    // `up` in the foreground serves the daemon's API, so the client verbs reach it.
    let mut up = Interrupted(
        std::process::Command::new(&stead)
            .args(["up", "--no-logs", "-f", &example("clustered-store")])
            .args(["--pod-cidr", "10.244.205.0/24", "--bridge", "stup5", "--state-dir"])
            .arg(state.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let socket = state.path().join("stead.sock");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !socket.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let client = |args: &[&str]| {
        let out = Command::new(&stead)
            .args(args)
            .arg("--state-dir")
            .arg(state.path())
            .timeout(Duration::from_secs(30))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Every member Ready: the followers have reached the leader by its DNS name.
    let pods = || -> serde_json::Value {
        serde_json::from_str(&client(&["get", "pods", "-o", "json"])).unwrap_or_default()
    };
    let ready = |pods: &serde_json::Value| {
        pods["items"].as_array().map_or(0, |items| {
            items.iter().filter(|p| p["status"]["containerStatuses"][0]["ready"] == true).count()
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut listed = pods();
    while ready(&listed) < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        listed = pods();
    }
    assert_eq!(ready(&listed), 3, "{listed:#}");
    let ip = |name: &str| -> String {
        let pod = listed["items"].as_array().unwrap().iter().find(|p| p["metadata"]["name"] == name).unwrap();
        pod["status"]["podIP"].as_str().unwrap().to_string()
    };
    let (kv0, kv1, kv2) = (ip("kv-0"), ip("kv-1"), ip("kv-2"));

    // A write to a follower is forwarded to the leader, and replicated to the other follower.
    assert_eq!(http(&kv2, "PUT", "/kv/color", "blue"), (200, "1".to_string()));
    assert!(eventually(|| http(&kv1, "GET", "/kv/color", "") == (200, "blue".into())), "kv-1 replicates");
    let (_, members) = http(&kv0, "GET", "/members", "");
    assert!(members.contains("\"kv-1\"") && members.contains("\"kv-2\""), "{members}");

    // kv-1 crashes; a write lands while it is down; once back it holds both: the first from its
    // volume, the second pulled from the leader.
    let victim = member_pid("kv-1").expect("kv-1's process");
    let _ = std::process::Command::new("kill").args(["-KILL", &victim.to_string()]).status();
    assert_eq!(http(&kv0, "PUT", "/kv/shape", "round"), (200, "2".to_string()));
    let back = || {
        member_pid("kv-1").is_some_and(|p| p != victim)
            && http(&kv1, "GET", "/kv/shape", "") == (200, "round".into())
    };
    assert!(eventually_for(Duration::from_secs(60), back), "kv-1 restarts and catches up");
    assert_eq!(http(&kv1, "GET", "/kv/color", ""), (200, "blue".into()));
    let logs = client(&["logs", "kv-1"]);
    assert!(
        logs.contains("kv-1: loaded 1 entries from /mnt/log.jsonl"),
        "the log came from the volume: {logs}"
    );
    let restarts = pods()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["metadata"]["name"] == "kv-1")
        .unwrap()["status"]["containerStatuses"][0]["restartCount"]
        .as_u64();
    assert_eq!(restarts, Some(1));

    // Scaled down and up again, kv-2 comes back on its own claim: both entries from its volume.
    assert!(eventually(|| http(&kv2, "GET", "/kv/shape", "") == (200, "round".into())), "kv-2 replicates");
    assert!(client(&["scale", "sts/kv", "--replicas=2"]).contains("scaled"));
    assert!(eventually_for(Duration::from_secs(60), || member_pid("kv-2").is_none()), "kv-2 stops");
    assert!(client(&["scale", "sts/kv", "--replicas=3"]).contains("scaled"));
    // As kubectl's, `wait` on a pod that does not exist yet fails at once: wait for its creation.
    assert!(
        eventually(|| client(&["get", "pod", "kv-2", "-o", "name"]).contains("pod/kv-2")),
        "kv-2 is created"
    );
    let waited = client(&["wait", "--for=condition=Ready", "pod/kv-2", "--timeout=60s"]);
    assert!(waited.contains("condition met"), "{waited}");
    let logs = client(&["logs", "kv-2"]);
    assert!(logs.contains("kv-2: loaded 2 entries from /mnt/log.jsonl"), "kv-2 kept its claim: {logs}");

    // Ctrl-C stops every member and the engine, and takes the socket away.
    let code = up.stop();
    assert_eq!(code, Some(0));
    assert!(!socket.exists());
    assert!(member_pid("kv-0").is_none() && member_pid("kv-2").is_none());
}

/// A foreground `stead up` that is interrupted (as Ctrl-C does) however the test ends, so that it
/// stops its pods; killed if it has not stopped after 60 s.
struct Interrupted(std::process::Child);

impl Interrupted {
    fn stop(&mut self) -> Option<i32> {
        let _ = std::process::Command::new("kill").args(["-INT", &self.0.id().to_string()]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        None
    }
}

impl Drop for Interrupted {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.stop();
        }
    }
}

#[test]
fn up_detached_hands_the_manifests_to_a_daemon_it_starts_and_down_goes_through_it() {
    if !stead_testkit::require_root("stead daemon makes network namespaces and a bridge") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let stead = assert_cmd::cargo::cargo_bin("stead");
    let run = |args: &[&str]| {
        let out = Command::new(&stead)
            .args(args)
            .args(["--pod-cidr", "10.244.206.0/24", "--bridge", "stup6", "--state-dir"])
            .arg(state.path())
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    };
    let (code, text) = run(&["up", "-d", "--wait", "--timeout", "90s", "-f", &example("statefulset")]);
    // Whatever happens next, the daemon started here is stopped at the end.
    let pid = text
        .lines()
        .find_map(|l| l.strip_prefix("stead daemon started (pid ")?.split(',').next()?.parse::<u32>().ok());
    let _daemon = pid.map(Terminated);
    assert_eq!(code, Some(0), "{text}");
    assert!(pid.is_some(), "{text}");
    assert!(text.contains("statefulset/example created"), "{text}");
    assert!(text.contains("rolling update complete 3 pods"), "--wait followed the rollout: {text}");

    // The engine runs on after `up -d` returned; a second `up -d` finds it and changes nothing.
    let pods = Command::new(&stead).args(["get", "pods", "--state-dir"]).arg(state.path()).output().unwrap();
    let table = String::from_utf8_lossy(&pods.stdout);
    assert_eq!(table.lines().filter(|l| l.contains("Running")).count(), 3, "{table}");
    let (code, text) = run(&["up", "-d", "-f", &example("statefulset")]);
    assert_eq!(code, Some(0), "{text}");
    assert!(!text.contains("daemon started") && text.contains("statefulset/example unchanged"), "{text}");

    // `down` goes through the daemon, which holds the state directory.
    let (code, text) = run(&["down", "-f", &example("statefulset")]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("statefulset/example deleted"), "{text}");
    let gone = eventually_for(Duration::from_secs(60), || {
        let pods =
            Command::new(&stead).args(["get", "pods", "--state-dir"]).arg(state.path()).output().unwrap();
        !String::from_utf8_lossy(&pods.stdout).contains("example-")
    });
    assert!(gone, "the pods are deleted");
}

/// A detached daemon that gets SIGTERM (it stops its pods) however the test ends.
struct Terminated(u32);

impl Drop for Terminated {
    fn drop(&mut self) {
        nix_kill_term(self.0);
        let proc = format!("/proc/{}", self.0);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while Path::new(&proc).exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The pid of the clustered store member of pod `name` (its `POD_NAME` variable).
fn member_pid(name: &str) -> Option<u32> {
    let wanted = format!("POD_NAME={name}");
    std::fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let environ = std::fs::read(e.path().join("environ")).ok()?;
        let is_member = String::from_utf8_lossy(&cmdline).contains("/srv/kv-member.py");
        let is_named = environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes());
        (is_member && is_named).then_some(pid)
    })
}

fn eventually(f: impl FnMut() -> bool) -> bool {
    eventually_for(Duration::from_secs(10), f)
}

fn eventually_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One HTTP/1.0 request to a member (port 7000); `(0, error)` when it cannot be made.
fn http(ip: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let addr: std::net::SocketAddr = match format!("{ip}:7000").parse() {
        Ok(a) => a,
        Err(e) => return (0, e.to_string()),
    };
    let exchange = || -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "{method} {path} HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}", body.len())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    };
    match exchange() {
        Ok(out) => {
            let code = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
            let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
            (code, body)
        }
        Err(e) => (0, e.to_string()),
    }
}

/// A child that is killed and reaped however the test ends.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nix_kill_term(pid: u32) {
    let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
}

/// A StatefulSet with a claim in its own namespace: each pod writes its name into its volume.
const ORDERS: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: orders, namespace: shop}
spec:
  serviceName: orders
  replicas: 2
  selector: {matchLabels: {app: orders}}
  template:
    metadata: {labels: {app: orders}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: busybox
        env:
        - name: POD
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        command: ["sh", "-c", "echo $POD > /mnt/owner; sleep 3600"]
        volumeMounts:
        - {name: data, mountPath: /mnt}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 16Mi}}
"#;

#[test]
fn up_detached_waits_in_each_workloads_namespace_and_down_volumes_goes_through_the_daemon() {
    if !stead_testkit::require_root("stead daemon makes network namespaces and a bridge") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stead.yaml");
    std::fs::write(&file, ORDERS).unwrap();
    let state = dir.path().join("state");
    let stead = assert_cmd::cargo::cargo_bin("stead");
    let run = |args: &[&str]| {
        let out = Command::new(&stead)
            .args(args)
            .args(["--pod-cidr", "10.244.207.0/24", "--bridge", "stup7", "--state-dir"])
            .arg(&state)
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    };
    let (code, text) = run(&["up", "-d", "--wait", "--timeout", "90s", "-f", file.to_str().unwrap()]);
    let pid = text
        .lines()
        .find_map(|l| l.strip_prefix("stead daemon started (pid ")?.split(',').next()?.parse::<u32>().ok());
    let _daemon = pid.map(Terminated);
    // The wait followed shop's StatefulSet, not one of that name in `default`.
    assert_eq!(code, Some(0), "{text}");
    assert!(!text.contains("NotFound"), "{text}");
    assert!(text.contains("statefulset/orders created"), "{text}");
    assert!(text.contains("rolling update complete 2 pods"), "{text}");

    // The engine's files are its owner's only.
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o7777
    };
    assert_eq!(mode(&state), 0o700, "the state directory");
    assert_eq!(mode(&state.join("objects.redb")), 0o600, "the store");
    assert_eq!(mode(&state.join("daemon.log")), 0o600, "the daemon's log");

    let claims: Vec<std::path::PathBuf> =
        (0..2).map(|i| stead_node::volumes::claim_dir(&state, "shop", &format!("data-orders-{i}"))).collect();
    let written = eventually(|| claims.iter().all(|c| c.join("owner").is_file()));
    assert!(written, "both pods wrote into their claims");

    // `down --volumes` while the daemon runs: the ordered stop, the objects, then the claims and
    // their data, as without a daemon.
    let (code, text) = run(&["down", "--volumes", "-f", file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("statefulset/orders deleted"), "{text}");
    let (_, pods) = run(&["get", "pods", "-n", "shop"]);
    assert!(!pods.contains("orders-"), "{pods}");
    let (_, pvcs) = run(&["get", "pvc", "-n", "shop"]);
    assert!(!pvcs.contains("data-orders-"), "the claims are deleted: {pvcs}");
    let removed = eventually(|| claims.iter().all(|c| !c.exists()));
    assert!(removed, "the claims' data is removed: {claims:?}");
}

/// An image without a command cannot run here (host processes): its pod waits, Pending, with
/// the kubelet's `CreateContainerError`, and stays the one pod: its ReplicaSet does not replace
/// a Pending pod (a Failed one it would, in a loop).
#[test]
fn a_container_that_cannot_be_created_leaves_one_pending_pod_not_a_loop_of_new_ones() {
    if !stead_testkit::require_root("stead daemon makes network namespaces and a bridge") {
        return;
    }
    let d = Daemon::start("10.244.208.0/24", "stup8");
    d.apply(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: imageonly}
spec:
  replicas: 1
  selector: {matchLabels: {app: imageonly}}
  template:
    metadata: {labels: {app: imageonly}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: app, image: nginx}
"#,
    );
    let table = d.until(&["get", "pods"], |t| t.contains("CreateContainerError"));
    assert!(table.contains("CreateContainerError"), "{table}");
    // Long enough for a loop to show (it made dozens of pods a second), short of the retry.
    std::thread::sleep(Duration::from_secs(3));
    let table = d.stdout(&["get", "pods"]);
    let pods: Vec<&str> = table.lines().filter(|l| l.starts_with("imageonly-")).collect();
    assert_eq!(pods.len(), 1, "{table}");
    assert!(pods[0].contains("CreateContainerError"), "{table}");
    let name = pods[0].split_whitespace().next().unwrap();
    let shown = d.ok(&["describe", "pod", name]);
    assert!(shown.contains("Status:           Pending"), "{shown}");
    assert!(shown.contains("Reason:       CreateContainerError"), "{shown}");
    assert!(shown.contains("has no command"), "{shown}");
    assert!(!shown.contains("StartError"), "{shown}");
}
