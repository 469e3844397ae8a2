use super::*;
use proptest::prelude::*;

fn ts(n: i64) -> Timestamp {
    Timestamp::new(1_800_000_000 + n, 1_000).expect("ts")
}

fn texts(lines: &[LogLine]) -> Vec<String> {
    lines.iter().map(|l| String::from_utf8_lossy(&l.text).into_owned()).collect()
}

#[test]
fn record_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = LogWriter::open(dir.path(), 0, LogConfig::default()).expect("open");
    w.write(Stream::Stdout, b"hello\nwor", ts(0)).expect("write");
    w.write(Stream::Stderr, b"oops\n", ts(1)).expect("write");
    w.write(Stream::Stdout, b"ld\n", ts(2)).expect("write");
    w.write(Stream::Stdout, b"no newline", ts(3)).expect("write");
    w.finish(ts(4)).expect("finish");
    let raw = fs::read_to_string(w.path()).expect("read");
    assert_eq!(
        raw,
        "2027-01-15T08:00:00.000001000Z stdout F hello\n\
         2027-01-15T08:00:01.000001000Z stderr F oops\n\
         2027-01-15T08:00:02.000001000Z stdout F world\n\
         2027-01-15T08:00:04.000001000Z stdout F no newline\n"
    );
    let lines = read_logs(dir.path(), "app", 0, ReadOptions::default()).expect("read");
    assert_eq!(texts(&lines), ["hello", "oops", "world", "no newline"]);
    assert_eq!(lines[1].stream, Stream::Stderr);
    assert_eq!(lines[0].render(true), b"2027-01-15T08:00:00.000001000Z hello\n");
    assert_eq!(lines[0].render(false), b"hello\n");
}

#[test]
fn long_lines_are_split_and_joined() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = LogWriter::open(dir.path(), 0, LogConfig::default()).expect("open");
    let long = "x".repeat(MAX_LINE * 2 + 10);
    w.write(Stream::Stdout, format!("{long}\n").as_bytes(), ts(0)).expect("write");
    let raw = fs::read_to_string(w.path()).expect("read");
    assert_eq!(raw.lines().map(|l| &l[31..39]).collect::<Vec<_>>(), ["stdout P", "stdout P", "stdout F"]);
    let lines = read_logs(dir.path(), "app", 0, ReadOptions::default()).expect("read");
    assert_eq!(texts(&lines), [long]);
}

#[test]
fn rotation_keeps_max_files_and_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig { max_size: 200, max_files: 3 };
    let mut w = LogWriter::open(dir.path(), 0, cfg).expect("open");
    for i in 0..40 {
        w.write(Stream::Stdout, format!("line {i:02}\n").as_bytes(), ts(i)).expect("write");
    }
    let files = instance_files(dir.path(), 0).expect("files");
    assert_eq!(files.len(), 3);
    for f in &files {
        assert!(fs::metadata(f).expect("meta").len() <= 200);
    }
    let lines = read_logs(dir.path(), "app", 0, ReadOptions::default()).expect("read");
    let got = texts(&lines);
    // The newest lines are kept, in order, ending with the last one written.
    assert_eq!(got.last().map(String::as_str), Some("line 39"));
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(got, sorted);
    assert!(got.len() < 40);
    let tail =
        read_logs(dir.path(), "app", 0, ReadOptions { tail: Some(2), ..Default::default() }).expect("tail");
    assert_eq!(texts(&tail), ["line 38", "line 39"]);
}

#[test]
fn previous_instance_survives_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first = LogWriter::open(dir.path(), 0, LogConfig::default()).expect("open");
    first.write(Stream::Stdout, b"before crash\n", ts(0)).expect("write");
    drop(first);
    let mut second = LogWriter::open(dir.path(), 1, LogConfig::default()).expect("open");
    second.write(Stream::Stdout, b"after restart\n", ts(5)).expect("write");
    let prev = read_logs(dir.path(), "app", 1, ReadOptions { previous: true, tail: None }).expect("previous");
    assert_eq!(texts(&prev), ["before crash"]);
    let cur = read_logs(dir.path(), "app", 1, ReadOptions::default()).expect("current");
    assert_eq!(texts(&cur), ["after restart"]);
    let err = read_logs(dir.path(), "app", 0, ReadOptions { previous: true, tail: None }).unwrap_err();
    assert_eq!(err.to_string(), "container \"app\" has no previous instance (restart count 0)");
    // Reopening appends.
    let mut again = LogWriter::open(dir.path(), 1, LogConfig::default()).expect("reopen");
    again.write(Stream::Stdout, b"more\n", ts(6)).expect("write");
    assert_eq!(
        texts(&read_logs(dir.path(), "app", 1, ReadOptions::default()).expect("read")),
        ["after restart", "more"]
    );
}

#[test]
fn follow_while_written_and_across_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut f = LogFollower::new(dir.path(), 0);
    assert!(f.poll().expect("nothing yet").is_empty());
    let mut w = LogWriter::open(dir.path(), 0, LogConfig { max_size: 120, max_files: 5 }).expect("open");
    w.write(Stream::Stdout, b"a\n", ts(0)).expect("write");
    assert_eq!(texts(&f.poll().expect("poll")), ["a"]);
    // A half-written record at the end is held back until complete.
    let live = w.path();
    let mut raw = OpenOptions::new().append(true).open(&live).expect("raw");
    raw.write_all(b"2027-01-15T08:00:01.000001000Z stdout F hal").expect("raw write");
    assert!(f.poll().expect("poll").is_empty());
    raw.write_all(b"f\n").expect("raw write");
    assert_eq!(texts(&f.poll().expect("poll")), ["half"]);
    drop(raw);
    w = LogWriter::open(dir.path(), 0, LogConfig { max_size: 120, max_files: 5 }).expect("reopen");
    w.write(Stream::Stdout, b"b\n", ts(2)).expect("write");
    w.write(Stream::Stdout, b"c\n", ts(3)).expect("write"); // rotates
    w.write(Stream::Stdout, b"d\n", ts(4)).expect("write");
    assert!(instance_files(dir.path(), 0).expect("files").len() >= 2, "rotation happened");
    assert_eq!(texts(&f.poll().expect("poll")), ["b", "c", "d"]);
}

#[test]
fn corrupt_records_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(log_path(dir.path(), 0), b"garbage here\n").expect("write");
    let err = read_logs(dir.path(), "app", 0, ReadOptions::default()).unwrap_err().to_string();
    assert!(err.ends_with("0.log: line 1: not a log record: \"garbage here\""), "{err}");
}

#[test]
fn remove_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pod = pod_log_dir(dir.path(), "shop", "web-0", "u1");
    assert!(pod.ends_with("shop_web-0_u1"));
    LogWriter::open(&pod.join("app"), 0, LogConfig::default()).expect("open");
    remove_pod_logs(&pod).expect("remove");
    assert!(!pod.exists());
    remove_pod_logs(&pod).expect("idempotent");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever chunks the output arrives in, the lines read back are the lines written.
    #[test]
    fn chunking_does_not_matter(lines in proptest::collection::vec("[a-z ]{0,40}", 0..20), cut in 1usize..17) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = LogWriter::open(dir.path(), 0, LogConfig { max_size: 300, max_files: 1000 }).expect("open");
        let all: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\n").into_bytes()).collect();
        for (i, chunk) in all.chunks(cut).enumerate() {
            w.write(Stream::Stdout, chunk, ts(i as i64)).expect("write");
        }
        let got = read_logs(dir.path(), "app", 0, ReadOptions::default()).expect("read");
        prop_assert_eq!(texts(&got), lines);
    }
}
