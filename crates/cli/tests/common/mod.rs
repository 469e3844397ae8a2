//! What the daemon's end-to-end tests share: a `stead daemon` child on its own state directory,
//! pod network and bridge, driven through the real CLI.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn stead() -> PathBuf {
    assert_cmd::cargo::cargo_bin("stead")
}

/// A `stead daemon` child: stopped with SIGTERM (its pods stop too) however the test ends, killed
/// if it does not exit in time. A daemon that stopped cleanly must have removed its bridge.
pub struct Daemon {
    child: Option<std::process::Child>,
    state: PathBuf,
    bridge: String,
    _dir: Option<tempfile::TempDir>,
}

impl Daemon {
    /// A daemon on a state directory of its own, removed at the end.
    pub fn start(cidr: &str, bridge: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let mut daemon = Daemon::start_in(dir.path(), cidr, bridge);
        daemon._dir = Some(dir);
        daemon
    }

    /// A daemon on `state`, which may hold what an earlier (killed) daemon left. Its log is
    /// appended to `<state>.daemon.log`.
    pub fn start_in(state: &Path, cidr: &str, bridge: &str) -> Daemon {
        std::fs::create_dir_all(state).unwrap();
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(state.with_extension("daemon.log"))
            .unwrap();
        // A socket left by a killed daemon is replaced by the new one: wait for that one.
        let socket = state.join("stead.sock");
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(stead())
            .args(["daemon", "--pod-cidr", cidr, "--bridge", bridge, "--state-dir"])
            .arg(state)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        // Stopped on drop even when it never comes up.
        let daemon =
            Daemon { child: Some(child), state: state.to_path_buf(), bridge: bridge.into(), _dir: None };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !socket.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(socket.exists(), "the daemon serves on {}", socket.display());
        daemon
    }

    pub fn state(&self) -> &Path {
        &self.state
    }

    /// SIGKILL: no chance to clean up; its pods keep running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM (the daemon stops every pod, then exits), killed after 60 s; the exit status if it
    /// stopped by itself in time.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Runs a client verb against this daemon (the state directory from the environment, so
    /// `exec`'s arguments after `--` stay the command's).
    pub fn run(&self, args: &[&str]) -> Output {
        assert_cmd::Command::new(stead())
            .args(args)
            .env("STEAD_STATE_DIR", &self.state)
            .timeout(Duration::from_secs(150))
            .output()
            .unwrap()
    }

    /// Runs a verb that must succeed; returns its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "stead {args:?}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        stdout
    }

    /// A verb's standard output, whether it succeeded or not.
    pub fn stdout(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.run(args).stdout).into_owned()
    }

    /// `stead apply -f` of `manifest`, which must succeed.
    pub fn apply(&self, manifest: &str) -> String {
        let file = self.state.join("manifest.yaml");
        std::fs::write(&file, manifest).unwrap();
        self.ok(&["apply", "-f", file.to_str().unwrap()])
    }

    /// Waits until `n` pods are Running and Ready.
    pub fn ready(&self, n: usize) {
        let mut table = String::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            table = self.stdout(&["get", "pods"]);
            if table.lines().filter(|l| l.contains("1/1") && l.contains("Running")).count() == n {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("{n} pods not ready:\n{table}");
    }

    /// Polls `args` until its stdout satisfies `f` (returning the last stdout either way).
    pub fn until(&self, args: &[&str], f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.stdout(args);
            if f(&out) || Instant::now() > deadline {
                return out;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let stopped = self.terminate().is_some();
        if stopped && !std::thread::panicking() {
            assert!(!Path::new("/sys/class/net").join(&self.bridge).exists(), "the bridge is removed");
        }
    }
}
