//! Real processes through the container init (no namespaces, so no root needed): output into logs,
//! exit codes, graceful stop, escalation to SIGKILL for the whole process group.

use std::path::Path;
use std::time::{Duration, Instant};
use stead_node::init::InitSpec;
use stead_node::logs::{LogConfig, LogWriter, ReadOptions, read_logs};
use stead_node::process::{self, ContainerProcess};
use stead_node::status::Exit;
use stead_node::syscall::LinuxSyscall;

const INIT: &str = env!("CARGO_BIN_EXE_stead-container-init");

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn spec(script: &str, cwd: Option<&Path>) -> InitSpec {
    InitSpec {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: vec!["PATH=/usr/bin:/bin".into(), "GREETING=hello from env".into()],
        working_dir: cwd.map(Path::to_owned),
        ..Default::default()
    }
}

fn start(logs: &Path, s: &InitSpec) -> ContainerProcess {
    let log = LogWriter::open(logs, 0, LogConfig::default()).expect("log");
    process::spawn("app", Path::new(INIT), s, log).expect("spawn")
}

fn lines(logs: &Path) -> Vec<(String, String)> {
    read_logs(logs, "app", 0, ReadOptions::default())
        .expect("read")
        .into_iter()
        .map(|l| (format!("{:?}", l.stream), String::from_utf8_lossy(&l.text).into_owned()))
        .collect()
}

/// Waits (bounded) until the log holds `text`.
fn wait_for_line(logs: &Path, text: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if read_logs(logs, "app", 0, ReadOptions::default())
            .is_ok_and(|ls| ls.iter().any(|l| l.text == text.as_bytes()))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Live (non-zombie) members of a process group, from /proc. Zombies are excluded: orphans are
/// reparented to PID 1, which reaps slowly on this machine.
fn live_members(pgid: i32) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else { return vec![] };
    rd.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the command, which is in parentheses: state ppid pgrp ...
            let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
            let mut f = rest.split_whitespace();
            let state = f.next().unwrap_or("Z");
            let pgrp = f.nth(1).and_then(|p| p.parse::<i32>().ok());
            pgrp == Some(pgid) && state != "Z" && state != "X"
        })
        .collect()
}

/// Whether the group still has live members after a bounded wait for SIGKILL to take effect.
fn group_alive(pgid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if live_members(pgid).is_empty() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

#[test]
fn output_env_cwd_and_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = tempfile::tempdir().expect("cwd");
    let s = spec("echo \"$GREETING\"; pwd; echo oops >&2; exit 3", Some(cwd.path()));
    let exit = rt().block_on(async { start(dir.path(), &s).wait().await }).expect("wait");
    assert_eq!(exit, Exit::Code(3));
    let got = lines(dir.path());
    assert!(got.contains(&("Stdout".into(), "hello from env".into())), "{got:?}");
    assert!(got.contains(&("Stdout".into(), cwd.path().display().to_string())), "{got:?}");
    assert!(got.contains(&("Stderr".into(), "oops".into())), "{got:?}");
}

#[test]
fn missing_program_is_127_with_a_logged_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = InitSpec {
        argv: vec!["no-such-program-xyz".into()],
        env: vec!["PATH=/bin".into()],
        ..Default::default()
    };
    let exit = rt().block_on(async { start(dir.path(), &s).wait().await }).expect("wait");
    assert_eq!(exit, Exit::Code(127));
    assert_eq!(
        lines(dir.path()),
        [(
            "Stderr".to_string(),
            "stead-container-init: \"no-such-program-xyz\": not found in PATH \"/bin\"".to_string()
        )]
    );
}

#[test]
fn graceful_stop_delivers_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = spec("trap 'echo got TERM; exit 0' TERM; echo ready; while :; do sleep 0.05; done", None);
    let rt = rt();
    let exit = rt.block_on(async {
        let mut p = start(dir.path(), &s);
        let pgid = p.pid();
        assert!(
            tokio::task::spawn_blocking({
                let d = dir.path().to_owned();
                move || wait_for_line(&d, "ready")
            })
            .await
            .expect("join")
        );
        assert!(!live_members(pgid).is_empty(), "the check sees the running group");
        let exit = p.stop(&LinuxSyscall, Duration::from_secs(10)).await.expect("stop");
        assert!(!group_alive(pgid), "process group {pgid} still has members");
        exit
    });
    assert_eq!(exit, Exit::Code(0));
    assert!(lines(dir.path()).contains(&("Stdout".into(), "got TERM".into())));
}

#[test]
fn ignored_sigterm_escalates_to_sigkill_for_the_whole_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The shell and its `sleep` children ignore SIGTERM (ignored signals are inherited).
    let s = spec(
        "trap '' TERM; (sleep 60; echo orphan survived) & echo ready; while :; do sleep 0.05; done",
        None,
    );
    let rt = rt();
    let (exit, alive_after, elapsed) = rt.block_on(async {
        let mut p = start(dir.path(), &s);
        let pgid = p.pid();
        let d = dir.path().to_owned();
        assert!(tokio::task::spawn_blocking(move || wait_for_line(&d, "ready")).await.expect("join"));
        let t = Instant::now();
        let exit = p.stop(&LinuxSyscall, Duration::from_millis(300)).await.expect("stop");
        (exit, group_alive(pgid), t.elapsed())
    });
    assert_eq!(exit, Exit::Signal(9));
    assert!(!alive_after, "a member of the process group survived the stop");
    assert!(elapsed >= Duration::from_millis(300), "waited the grace period first");
    assert!(!lines(dir.path()).iter().any(|(_, t)| t == "orphan survived"));
}
