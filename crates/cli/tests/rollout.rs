//! Rollouts end to end as a user drives them: `stead daemon` with real pods, `stead apply` of a
//! changed template, `stead rollout status|history|undo|restart`, `scale` and `wait`. Every pod
//! appends `start <pod> <revision>` to a file on the host (a hostPath volume at its own path), so the order in
//! which ordinals were replaced can be read back, and `<revision>` to its own claim, so volume
//! data can be checked. Needs root (network namespaces, a bridge); `.ci/run` runs it as root.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::Daemon;

/// A StatefulSet whose pods log each start to `<shared>/starts` and to their claim. With `slow`,
/// a pod turns Ready a second after it starts (a readiness probe), so a rollout takes a while.
fn manifest(
    name: &str,
    replicas: u32,
    rev: u32,
    partition: Option<u32>,
    shared: &Path,
    slow: bool,
) -> String {
    let partition = partition.map(|p| format!("\n    rollingUpdate: {{partition: {p}}}")).unwrap_or_default();
    let (ready, probe) = if slow {
        (
            "rm -f /mnt/ready; sleep 1; touch /mnt/ready; ",
            "\n        readinessProbe:\n          exec: {command: [test, -f, /mnt/ready]}\n          periodSeconds: 1",
        )
    } else {
        ("", "")
    };
    format!(
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: {name}}}
spec:
  serviceName: {name}
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  updateStrategy:
    type: RollingUpdate{partition}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: busybox
        env:
        - {{name: REV, value: "{rev}"}}
        - name: POD
          valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
        command:
        - sh
        - -c
        - '[ -f /mnt/born ] || echo "$POD $REV" > /mnt/born; echo "$REV" >> /mnt/revs; echo "start $POD $REV" >> {shared}/starts; {ready}sleep 3600; : stead-rollout-{name}'{probe}
        volumeMounts:
        - {{name: data, mountPath: /mnt}}
        - {{name: shared, mountPath: {shared}}}
      volumes:
      - name: shared
        hostPath: {{path: {shared}, type: DirectoryOrCreate}}
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 16Mi}}}}
"#,
        shared = shared.display()
    )
}

/// The `start <pod> <rev>` lines so far.
fn starts(shared: &Path) -> Vec<String> {
    std::fs::read_to_string(shared.join("starts")).unwrap_or_default().lines().map(str::to_string).collect()
}

/// The start lines once there are at least `n` (or after 10 s): a pod can be Ready (it has no
/// probe) a moment before its shell has appended its line.
fn starts_at_least(shared: &Path, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let lines = starts(shared);
        if lines.len() >= n || std::time::Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn claim_file(state: &Path, set: &str, ordinal: u32, file: &str) -> String {
    let dir = stead_node::volumes::claim_dir(state, "default", &format!("data-{set}-{ordinal}"));
    std::fs::read_to_string(dir.join(file)).unwrap_or_default()
}

/// The `REV` of a pod as the daemon has it.
fn pod_rev(daemon: &Daemon, pod: &str) -> String {
    let json: serde_json::Value =
        serde_json::from_str(&daemon.ok(&["get", "pod", pod, "-o", "json"])).unwrap();
    json["spec"]["containers"][0]["env"][0]["value"].as_str().unwrap_or_default().to_string()
}

struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        Scene { dir: tempfile::tempdir().unwrap() }
    }
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    fn shared(&self) -> PathBuf {
        self.dir.path().join("shared")
    }
    fn write(&self, text: &str) -> String {
        let file = self.dir.path().join("sts.yaml");
        std::fs::write(&file, text).unwrap();
        file.display().to_string()
    }
}

#[test]
fn a_rolling_update_visits_ordinals_in_descending_order_and_honours_the_partition() {
    if !stead_testkit::require_root("stead daemon makes network namespaces and a bridge") {
        return;
    }
    let scene = Scene::new();
    let (state, shared) = (scene.state(), scene.shared());
    std::fs::create_dir_all(&state).unwrap();
    let daemon = Daemon::start_in(&state, "10.244.210.0/24", "stup10");
    let apply = |rev, partition| {
        let file = scene.write(&manifest("part", 3, rev, Some(partition), &shared, false));
        daemon.ok(&["apply", "-f", &file])
    };
    assert!(apply(1, 1).contains("statefulset/part created"));
    let out = daemon.ok(&["rollout", "status", "sts/part", "--timeout", "90s"]);
    assert!(out.ends_with("partitioned roll out complete: 3 new pods have been updated...\n"), "{out}");
    assert_eq!(
        starts_at_least(&shared, 3),
        ["start part-0 1", "start part-1 1", "start part-2 1"],
        "OrderedReady"
    );

    // A new template under partition 1: ordinals 2 then 1 are replaced; 0 keeps revision 1.
    apply(2, 1);
    let out = daemon.ok(&["rollout", "status", "statefulset", "part", "--timeout", "90s"]);
    assert!(out.ends_with("partitioned roll out complete: 2 new pods have been updated...\n"), "{out}");
    assert_eq!(starts_at_least(&shared, 5)[3..], ["start part-2 2", "start part-1 2"]);
    assert_eq!(pod_rev(&daemon, "part-0"), "1");
    assert_eq!(pod_rev(&daemon, "part-1"), "2");
    assert_eq!(claim_file(&state, "part", 0, "revs"), "1\n", "part-0 never restarted");
    assert_eq!(claim_file(&state, "part", 2, "revs"), "1\n2\n", "part-2 kept its claim");
    let history = daemon.ok(&["rollout", "history", "sts/part"]);
    assert_eq!(
        history,
        "statefulset.apps/part\nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n"
    );

    // Partition 0: the last ordinal follows.
    apply(2, 0);
    let out = daemon.ok(&["rollout", "status", "sts/part", "--timeout", "90s"]);
    assert!(out.ends_with("partitioned roll out complete: 3 new pods have been updated...\n"), "{out}");
    assert_eq!(starts_at_least(&shared, 6)[5..], ["start part-0 2"]);
    assert_eq!(claim_file(&state, "part", 0, "born"), "part-0 1\n");
}

#[test]
fn rollout_undo_rolls_back_and_scale_restart_and_wait_act_as_kubectls() {
    if !stead_testkit::require_root("stead daemon makes network namespaces and a bridge") {
        return;
    }
    let scene = Scene::new();
    let (state, shared) = (scene.state(), scene.shared());
    std::fs::create_dir_all(&state).unwrap();
    let daemon = Daemon::start_in(&state, "10.244.211.0/24", "stup11");
    let apply = |rev| {
        let file = scene.write(&manifest("undo", 2, rev, None, &shared, false));
        daemon.ok(&["apply", "-f", &file])
    };
    apply(1);
    let out = daemon.ok(&["rollout", "status", "sts/undo", "--timeout", "90s"]);
    assert!(
        out.lines()
            .last()
            .unwrap()
            .starts_with("statefulset rolling update complete 2 pods at revision undo-")
    );
    apply(2);
    daemon.ok(&["rollout", "status", "sts/undo", "--timeout", "90s"]);
    assert_eq!(
        starts_at_least(&shared, 4),
        ["start undo-0 1", "start undo-1 1", "start undo-1 2", "start undo-0 2"]
    );

    let undo = daemon.ok(&["rollout", "undo", "sts/undo"]);
    assert_eq!(undo, "statefulset.apps/undo rolled back\n");
    daemon.ok(&["rollout", "status", "sts/undo", "--timeout", "90s"]);
    assert_eq!(
        starts_at_least(&shared, 6)[4..],
        ["start undo-1 1", "start undo-0 1"],
        "back to revision 1, descending"
    );
    assert_eq!(pod_rev(&daemon, "undo-0"), "1");
    // Revision 1's ControllerRevision was reused and renumbered 3.
    let history = daemon.ok(&["rollout", "history", "sts/undo"]);
    assert_eq!(
        history,
        "statefulset.apps/undo\nREVISION  CHANGE-CAUSE\n2         <none>\n3         <none>\n"
    );
    let shown = daemon.ok(&["rollout", "history", "sts/undo", "--revision=3"]);
    assert!(shown.starts_with("statefulset.apps/undo with revision #3\nPod Template:\n"), "{shown}");
    assert!(shown.contains("REV:\t1"), "{shown}");
    let skipped = daemon.ok(&["rollout", "undo", "sts/undo", "--to-revision=3"]);
    assert_eq!(
        skipped,
        "statefulset.apps/undo skipped rollback (current template already matches revision 3)\n"
    );
    let missing = daemon.run(&["rollout", "undo", "sts/undo", "--to-revision=9"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("unable to find specified revision 9 in history")
    );

    // Scale up, wait for the new pod, restart everything, scale down and wait for deletion.
    assert_eq!(daemon.ok(&["scale", "sts/undo", "--replicas=3"]), "statefulset.apps/undo scaled\n");
    daemon.ok(&["rollout", "status", "sts/undo", "--timeout", "90s"]);
    let met = daemon.ok(&["wait", "--for=condition=Ready", "pod/undo-2", "--timeout=60s"]);
    assert_eq!(met, "pod/undo-2 condition met\n");
    let before = starts(&shared).len();
    assert_eq!(daemon.ok(&["rollout", "restart", "sts/undo"]), "statefulset.apps/undo restarted\n");
    daemon.ok(&["rollout", "status", "sts/undo", "--timeout", "90s"]);
    assert_eq!(
        starts_at_least(&shared, before + 3)[before..],
        ["start undo-2 1", "start undo-1 1", "start undo-0 1"],
        "a restart rolls every pod, highest first"
    );
    assert_eq!(
        daemon.ok(&["scale", "sts/undo", "--replicas=1", "--current-replicas=3"]),
        "statefulset.apps/undo scaled\n"
    );
    let gone = daemon.ok(&["wait", "--for=delete", "pod/undo-2", "pod/undo-1", "--timeout=60s"]);
    assert_eq!(gone, "pod/undo-2 condition met\npod/undo-1 condition met\n");
    let timed_out = daemon.run(&["wait", "--for=condition=Ready=False", "pod/undo-0", "--timeout=1s"]);
    assert_eq!(timed_out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&timed_out.stderr),
        "error: timed out waiting for the condition on pods/undo-0\n"
    );
    assert_eq!(claim_file(&state, "undo", 0, "revs"), "1\n2\n1\n1\n", "undo-0's volume saw every start");
}

/// A live container process of the set, sampled from /proc.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LiveProcess {
    pid: String,
    parent: String,
    pod: String,
    rev: String,
    /// Clock ticks after boot (`stat` field 22): with the pid, names one process for good.
    start: String,
}

fn stat_fields(pid: &str) -> Vec<String> {
    // `pid (comm) state ppid ...`: fields after the last `)`, starting with the state (field 3).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

impl LiveProcess {
    /// Whether this very process still runs its pod's command (not a zombie, not a reused pid).
    fn still_alive(&self, marker: &str) -> bool {
        let fields = stat_fields(&self.pid);
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.pid)).unwrap_or_default();
        fields.get(19) == Some(&self.start) && String::from_utf8_lossy(&cmdline).contains(marker)
    }
}

/// The live container processes of a set, sampled from /proc: a pod's sh carries the set's marker
/// on its command line and its pod name in its environment. A child forked by that sh carries both
/// too until it execs, so processes whose parent is a marked process do not count.
fn live_processes(marker: &str) -> Vec<LiveProcess> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut marked: Vec<LiveProcess> = Vec::new();
    for e in entries.filter_map(Result::ok) {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else { continue };
        if !String::from_utf8_lossy(&cmdline).contains(marker) {
            continue;
        }
        let Ok(environ) = std::fs::read(e.path().join("environ")) else { continue };
        let var = |name: &[u8]| {
            environ
                .split(|b| *b == 0)
                .find_map(|v| v.strip_prefix(name))
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let Some(pod) = var(b"POD=") else { continue };
        let rev = var(b"REV=").unwrap_or_default();
        let fields = stat_fields(&pid);
        let parent = fields.get(1).cloned().unwrap_or_default();
        let start = fields.get(19).cloned().unwrap_or_default();
        marked.push(LiveProcess { pid, parent, pod, rev, start });
    }
    marked.iter().filter(|p| !marked.iter().any(|q| q.pid == p.parent)).cloned().collect()
}

/// The pod of each live container process.
fn live_identities(marker: &str) -> Vec<String> {
    live_processes(marker).into_iter().map(|p| p.pod).collect()
}

#[test]
fn a_daemon_killed_mid_rollout_restarts_and_converges_without_two_pods_per_identity() {
    if !stead_testkit::require_root("stead daemon makes network namespaces and a bridge") {
        return;
    }
    let scene = Scene::new();
    let (state, shared) = (scene.state(), scene.shared());
    std::fs::create_dir_all(&state).unwrap();
    let (cidr, bridge) = ("10.244.212.0/24", "stup12");
    let mut daemon = Daemon::start_in(&state, cidr, bridge);
    let apply = |daemon: &Daemon, rev| {
        let file = scene.write(&manifest("kill", 3, rev, None, &shared, true));
        daemon.ok(&["apply", "-f", &file])
    };
    apply(&daemon, 1);
    daemon.ok(&["rollout", "status", "sts/kill", "--timeout", "90s"]);

    // Watch every live process from here on: never two for one identity.
    let marker = "stead-rollout-kill";
    let stop = Arc::new(AtomicBool::new(false));
    let begun = Instant::now();
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // Each doubled identity once, with the processes seen and when.
            let mut worst: Vec<(String, Duration, Vec<LiveProcess>)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                // One pass over /proc is not one instant: a pod replaced during the pass shows its
                // old process (read first) and its new one (read later). Two processes count as
                // overlapping only if both still run after the pass, when the later one was seen.
                let live = live_processes(marker);
                for p in &live {
                    let same: Vec<LiveProcess> = live.iter().filter(|q| q.pod == p.pod).cloned().collect();
                    if same.len() < 2 || worst.iter().any(|(pod, _, _)| *pod == p.pod) {
                        continue;
                    }
                    let overlapping: Vec<LiveProcess> =
                        same.iter().filter(|q| q.still_alive(marker)).cloned().collect();
                    if overlapping.len() > 1 {
                        worst.push((p.pod.clone(), begun.elapsed(), overlapping));
                    } else {
                        eprintln!(
                            "{:?}: a replacement seen mid-pass, not overlapping: {same:?}",
                            begun.elapsed()
                        );
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            worst
        })
    };

    // Roll to revision 2; SIGKILL the daemon as soon as the first ordinal has been replaced
    // (it turns Ready only a second later, so the others are still at revision 1).
    apply(&daemon, 2);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !starts(&shared).iter().any(|l| l == "start kill-2 2") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    daemon.kill();
    let killed_after = begun.elapsed();
    let at_kill = starts(&shared);
    assert!(at_kill.iter().any(|l| l == "start kill-2 2"), "{at_kill:?}");
    assert!(!at_kill.iter().any(|l| l == "start kill-0 2"), "killed mid-rollout: {at_kill:?}");
    assert_eq!(live_identities(marker).len(), 3, "the pods outlive a killed daemon");

    // A new daemon on the same state finishes the rollout.
    let daemon = Daemon::start_in(&state, cidr, bridge);
    let out = daemon.ok(&["rollout", "status", "sts/kill", "--timeout", "120s"]);
    assert!(out.lines().last().unwrap().starts_with("statefulset rolling update complete 3 pods"), "{out}");
    for ordinal in 0..3 {
        let pod = format!("kill-{ordinal}");
        assert_eq!(pod_rev(&daemon, &pod), "2");
        let last = starts(&shared).into_iter().rev().find(|l| l.starts_with(&format!("start {pod} ")));
        assert_eq!(last, Some(format!("start {pod} 2")));
        // The claim kept everything written before the kill, and saw every start.
        assert_eq!(claim_file(&state, "kill", ordinal, "born"), format!("{pod} 1\n"));
        let revs = claim_file(&state, "kill", ordinal, "revs");
        let started = starts(&shared).iter().filter(|l| l.starts_with(&format!("start {pod} "))).count();
        assert!(revs.starts_with("1\n"), "{pod}: {revs}");
        assert_eq!(revs.lines().count(), started, "{pod}: {revs}");
    }
    let mut live = live_identities(marker);
    live.sort();
    assert_eq!(live, ["kill-0", "kill-1", "kill-2"]);
    drop(daemon);
    stop.store(true, Ordering::Relaxed);
    let doubled = watcher.join().unwrap();
    assert!(
        doubled.is_empty(),
        "identities with two live pods at once (the daemon was killed at {killed_after:?}): {doubled:?}"
    );
    assert!(live_identities(marker).is_empty(), "everything stopped at the end");
}
