//! The embedded store keeps every acknowledged write across a process killed without warning.
//!
//! The test runs itself again as a child process (the same test, told by an environment variable
//! to be the writer): the child appends to several journals at once and prints each append as it
//! is acknowledged; the parent kills it with SIGKILL mid-stream, opens the store, and checks that
//! every acknowledged event is there, in a journal without gaps. Three rounds, each continuing
//! the journals the last one left. This crosses the write-ahead log's replay for real: the
//! child's last batches were in the log and in redb's unsynced commits only.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost_types::Any;
use stead_proxy::store::{Append, EmbeddedStore, Store};

const CHILD_DIR: &str = "STEAD_CRASH_CHILD_DIR";
const TEST_NAME: &str = "acknowledged_appends_survive_sigkill";
const JOURNALS: usize = 8;
const ROUNDS: usize = 3;

fn payload(pid: &str, seq: u64) -> Any {
    Any { type_url: "type.googleapis.com/test.Event".into(), value: format!("{pid}#{seq}").into_bytes() }
}

fn pid(j: usize) -> String {
    format!("crash|{j}")
}

/// The child: appends to every journal until killed, one line per acknowledged append.
fn child(dir: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let store = Arc::new(EmbeddedStore::open(dir.join("store.redb")).expect("child opens the store"));
        println!("replayed {}", store.replayed());
        let mut tasks = Vec::new();
        for j in 0..JOURNALS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let pid = pid(j);
                let mut next = store.highest_sequence(&pid).await.expect("child reads") + 1;
                // Bounded: the parent kills the child long before this ends.
                let deadline = Instant::now() + Duration::from_secs(30);
                while Instant::now() < deadline {
                    let append = Append {
                        persistence_id: pid.clone(),
                        first_sequence: next,
                        events: vec![payload(&pid, next)],
                        snapshot: None,
                    };
                    store.append(append).await.expect("child appends");
                    println!("ack {pid} {next}");
                    next += 1;
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("test binary path");
    let mut acked = vec![0u64; JOURNALS];
    let mut replays = Vec::new();
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("child starts");
        let stdout = child.stdout.take().expect("child stdout");
        let mut lines = BufReader::new(stdout).lines();
        // Let the child write for a while (at least some acknowledgements), then kill it.
        let started = Instant::now();
        let mut seen = 0usize;
        let wanted = 200 + 150 * round;
        while seen < wanted && started.elapsed() < Duration::from_secs(20) {
            let Some(Ok(line)) = lines.next() else { break };
            record(&line, &mut acked, &mut replays, &mut seen);
        }
        child.kill().expect("SIGKILL the child");
        // Lines already printed before the kill are acknowledged appends too.
        for line in lines.map_while(Result::ok) {
            record(&line, &mut acked, &mut replays, &mut seen);
        }
        let status = child.wait().expect("child reaped");
        assert!(!status.success(), "round {round}: the child must have been killed, it exited {status}");
        assert!(seen >= wanted, "round {round}: the child acknowledged only {seen} appends in 20 s");
    }

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let store =
            EmbeddedStore::open(dir.path().join("store.redb")).expect("store opens after the crashes");
        replays.push(store.replayed());
        for (j, &last_acked) in acked.iter().enumerate() {
            let pid = pid(j);
            let events = store.read_events(&pid, 0).await.expect("reads");
            let numbers: Vec<u64> = events.iter().map(|e| e.sequence_number).collect();
            let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
            assert_eq!(numbers, expected, "{pid}: the journal has gaps or duplicates");
            assert!(
                numbers.len() as u64 >= last_acked,
                "{pid}: {last_acked} appends were acknowledged but only {} events survived",
                numbers.len()
            );
            for event in &events {
                assert_eq!(event.payload, payload(&pid, event.sequence_number), "{pid}: wrong payload");
            }
        }
        store.close().await.expect("close");
    });
    // Each open after a kill found the child's last batches in the log (the kill lands while
    // appends are in flight, and redb is synced only at checkpoints).
    assert!(
        replays.iter().skip(1).all(|&n| n > 0),
        "opens after a SIGKILL replayed {replays:?} log records; expected some each time"
    );
}

fn record(line: &str, acked: &mut [u64], replays: &mut Vec<usize>, seen: &mut usize) {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("ack"), Some(pid), Some(seq)) => {
            let j: usize = pid.trim_start_matches("crash|").parse().expect("journal index");
            let seq: u64 = seq.parse().expect("sequence number");
            acked[j] = acked[j].max(seq);
            *seen += 1;
        }
        (Some("replayed"), Some(n), None) => replays.push(n.parse().expect("count")),
        _ => {}
    }
}
