//! `describe`, `events`, `exec`, `port-forward` and `logs` (since, merged) against a real daemon
//! with real pods. Needs root (network namespaces, a bridge); `.ci/run` runs it as root. Each
//! test has its own pod network (10.244.215-217.0/24, bridges stup15-17) and state directory.

use std::time::Duration;

mod common;

use common::Daemon;

fn web(replicas: u32, command: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web}}
spec:
  serviceName: web
  replicas: {replicas}
  podManagementPolicy: Parallel
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: busybox
        command: ["sh", "-c", {command:?}]
        ports: [{{containerPort: 8080, name: echo}}]
"#
    )
}

#[test]
fn describe_shows_events_and_exec_runs_in_the_pod() {
    if !stead_testkit::require_root("stead daemon makes network namespaces and a bridge") {
        return;
    }
    let d = Daemon::start("10.244.215.0/24", "stup15");
    d.apply(&web(1, "echo started; exec sleep 1000"));
    d.ready(1);

    let described = d.until(&["describe", "pod", "web-0"], |o| o.contains("Started container app"));
    for expected in [
        "Name:",
        "Controlled By:",
        "StatefulSet/web",
        "Status:",
        "Running",
        "Restart Count:  0",
        "Events:",
        "Successfully assigned default/web-0 to",
        "Created container: app",
    ] {
        assert!(described.contains(expected), "missing {expected:?} in\n{described}");
    }
    let sts = d.stdout(&["describe", "sts/web"]);
    assert!(sts.contains("create Pod web-0 in StatefulSet web successful"), "{sts}");

    let events = d.stdout(&["events", "--for", "pod/web-0"]);
    assert!(events.starts_with("LAST SEEN"), "{events}");
    assert!(events.contains("Started") && events.contains("pod/web-0"), "{events}");

    // exec runs inside the pod: its UTS namespace says the pod's name.
    let out = d.run(&["exec", "web-0", "--", "hostname"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "web-0\n");
    let out = d.run(&["exec", "pod/web-0", "-c", "app", "--", "sh", "-c", "echo oops >&2; exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("oops") && stderr.contains("command terminated with exit code 7"), "{stderr}");
    let out = d.run(&["exec", "web-0", "-c", "nope", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));

    // A failing readiness probe: its output is the Unhealthy event's message, and the pod's
    // readiness names the probe; once it passes, the pod is Ready.
    d.apply(
        r#"apiVersion: v1
kind: Pod
metadata: {name: gated}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    command: [sh, -c, "exec sleep 1000"]
    readinessProbe:
      exec: {command: [sh, -c, "echo waiting for /mnt/go; test -f /mnt/go"]}
      periodSeconds: 1
    volumeMounts: [{name: scratch, mountPath: /mnt}]
  volumes: [{name: scratch, emptyDir: {}}]
"#,
    );
    let described = d.until(&["describe", "pod", "gated"], |o| o.contains("Readiness probe failed"));
    assert!(described.contains("Warning  Unhealthy"), "{described}");
    assert!(described.contains("Readiness probe failed: waiting for /mnt/go"), "{described}");
    let out = d.run(&["exec", "gated", "--", "touch", "/mnt/go"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = d.until(&["get", "pod", "gated"], |o| o.contains("1/1"));
    assert!(table.contains("1/1") && table.contains("Running"), "{table}");
}

#[test]
fn port_forward_reaches_a_pod() {
    if !stead_testkit::require_root("stead daemon makes network namespaces and a bridge") {
        return;
    }
    let d = Daemon::start("10.244.216.0/24", "stup16");
    d.apply(&web(1, "exec busybox nc -ll -p 8080 -e busybox sh -c 'echo hello from $(busybox hostname)'"));
    d.ready(1);
    let mut child = std::process::Command::new(common::stead())
        .args(["port-forward", "pod/web-0", ":echo", "--state-dir"])
        .arg(d.state())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(20));
    let result = (|| {
        let first = first.map_err(|e| format!("no output from port-forward: {e}"))?;
        let port: u16 = first
            .strip_prefix("Forwarding from 127.0.0.1:")
            .and_then(|rest| rest.strip_suffix(" -> 8080"))
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("unexpected first line {first:?}"))?;
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
        let mut reply = String::new();
        std::io::Read::read_to_string(&mut conn, &mut reply).map_err(|e| e.to_string())?;
        Ok::<_, String>(reply)
    })();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(result.unwrap(), "hello from web-0\n");
}

#[test]
fn logs_since_a_time_and_of_several_pods_merged() {
    if !stead_testkit::require_root("stead daemon makes network namespaces and a bridge") {
        return;
    }
    let d = Daemon::start("10.244.217.0/24", "stup17");
    d.apply(&web(
        2,
        "echo early $(busybox hostname); sleep 2; echo late $(busybox hostname); exec sleep 1000",
    ));
    d.ready(2);
    let all = d.until(&["logs", "sts/web"], |o| o.matches("late").count() == 2);
    assert_eq!(all.lines().count(), 4, "{all}");
    for pod in ["web-0", "web-1"] {
        assert!(all.contains(&format!("[pod/{pod}/app] early {pod}\n")), "{all}");
        assert!(all.contains(&format!("[pod/{pod}/app] late {pod}\n")), "{all}");
    }
    // Merged in time order: both early lines come before both late ones.
    let last_early = all.rfind("early").unwrap();
    assert!(all.find("late").unwrap() > last_early, "{all}");
    let stamped = d.stdout(&["logs", "-l", "app=web", "--timestamps"]);
    let times: Vec<&str> = stamped.lines().filter_map(|l| l.split(' ').nth(1)).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "{stamped}");

    // --since-time: a second after web-0's early line only its late line is left.
    let early = d.stdout(&["logs", "web-0", "--timestamps"]);
    let time: k8s_openapi::jiff::Timestamp =
        early.lines().next().unwrap().split(' ').next().unwrap().parse().unwrap();
    let after = (time + k8s_openapi::jiff::SignedDuration::from_secs(1)).to_string();
    let late = d.stdout(&["logs", "web-0", "--since-time", &after]);
    assert_eq!(late, "late web-0\n");
    let recent = d.stdout(&["logs", "web-0", "--since", "1h", "--prefix"]);
    assert_eq!(recent, "[pod/web-0/app] early web-0\n[pod/web-0/app] late web-0\n");
}
