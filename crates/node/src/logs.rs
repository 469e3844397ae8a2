//! Container logs: files in the CRI format, rotated by size, kept across restarts, readable and
//! followable while written.
//!
//! Layout: `<logs>/<namespace>_<pod>_<uid>/<container>/<restartCount>.log`, rotated files
//! `<restartCount>.log.<YYYYMMDD-HHMMSS.nnnnnnnnn>` (the kubelet's scheme). The previous instance of a
//! container (`kubectl logs --previous`) is `restartCount - 1`. Logs live outside the pod's sandbox
//! directory, so they survive container restarts and sandbox re-creation; the caller removes them
//! with the pod ([`remove_pod_logs`]).
//!
//! Each line is `<RFC 3339 time with 9 fraction digits> <stdout|stderr> <F|P> <text>\n`: `P` marks a
//! piece of a longer line (lines are split at [`MAX_LINE`] bytes), `F` its end. Every record is one
//! `write(2)` on an `O_APPEND` file, so a reader never sees half a record except at the very end,
//! which the follower keeps until its newline arrives.

use k8s_openapi::jiff::Timestamp;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Longest piece written as one record; longer lines are split into `P` records.
pub const MAX_LINE: usize = 16 * 1024;

/// Which output stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Rotation limits (the kubelet's `containerLogMaxSize` and `containerLogMaxFiles`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogConfig {
    pub max_size: u64,
    /// Files kept per container instance, the live one included.
    pub max_files: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { max_size: 10 * 1024 * 1024, max_files: 5 }
    }
}

/// Log failures, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: line {line}: not a log record: {text:?}")]
    Parse { path: PathBuf, line: usize, text: String },
    #[error("container {container:?} has no previous instance (restart count {restart_count})")]
    NoPrevious { container: String, restart_count: u32 },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |source| LogError::Io { path: path.to_owned(), source }
}

/// `<logs>/<namespace>_<pod>_<uid>`.
pub fn pod_log_dir(logs_root: &Path, namespace: &str, pod: &str, uid: &str) -> PathBuf {
    logs_root.join(format!("{namespace}_{pod}_{uid}"))
}

/// Removes a pod's logs (the caller decides when: the kubelet does it when the pod is deleted).
pub fn remove_pod_logs(pod_log_dir: &Path) -> Result<(), LogError> {
    match fs::remove_dir_all(pod_log_dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(LogError::Io { path: pod_log_dir.to_owned(), source: e })
        }
        _ => Ok(()),
    }
}

/// The wall clock as a `Timestamp` (jiff's own `now` needs its `std` feature, which we do not enable).
pub fn wall_now() -> Timestamp {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    Timestamp::new(secs, i32::try_from(d.subsec_nanos()).unwrap_or(0)).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Formats a timestamp as RFC 3339 with exactly 9 fraction digits (so text order is time order).
pub fn format_time(ts: Timestamp) -> String {
    format!("{}.{:09}Z", ts.strftime("%Y-%m-%dT%H:%M:%S"), ts.subsec_nanosecond())
}

fn rotation_suffix(ts: Timestamp) -> String {
    format!("{}.{:09}", ts.strftime("%Y%m%d-%H%M%S"), ts.subsec_nanosecond())
}

/// The live log file of one container instance.
pub fn log_path(container_dir: &Path, restart_count: u32) -> PathBuf {
    container_dir.join(format!("{restart_count}.log"))
}

/// All files of one instance, oldest first (rotated ones, then the live one).
pub fn instance_files(container_dir: &Path, restart_count: u32) -> Result<Vec<PathBuf>, LogError> {
    let prefix = format!("{restart_count}.log.");
    let mut rotated: Vec<PathBuf> = match fs::read_dir(container_dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&prefix))
            .map(|n| container_dir.join(n))
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(LogError::Io { path: container_dir.to_owned(), source: e }),
    };
    rotated.sort();
    let live = log_path(container_dir, restart_count);
    if live.exists() {
        rotated.push(live);
    }
    Ok(rotated)
}

/// Writes one container instance's output.
#[derive(Debug)]
pub struct LogWriter {
    dir: PathBuf,
    restart_count: u32,
    config: LogConfig,
    file: File,
    size: u64,
    pending: [Vec<u8>; 2],
}

impl LogWriter {
    /// Opens (appending) the log of instance `restart_count` in `container_dir`.
    pub fn open(container_dir: &Path, restart_count: u32, config: LogConfig) -> Result<LogWriter, LogError> {
        fs::create_dir_all(container_dir).map_err(io_err(container_dir))?;
        let path = log_path(container_dir, restart_count);
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(io_err(&path))?;
        let size = file.metadata().map_err(io_err(&path))?.len();
        Ok(LogWriter {
            dir: container_dir.to_owned(),
            restart_count,
            config,
            file,
            size,
            pending: [vec![], vec![]],
        })
    }

    /// The live file.
    pub fn path(&self) -> PathBuf {
        log_path(&self.dir, self.restart_count)
    }

    /// Appends output read from `stream` at `now`; an unfinished last line is kept until its end.
    pub fn write(&mut self, stream: Stream, data: &[u8], now: Timestamp) -> Result<(), LogError> {
        let idx = stream as usize;
        let mut buf = std::mem::take(&mut self.pending[idx]);
        buf.extend_from_slice(data);
        let mut rest: &[u8] = &buf;
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            let mut line = &rest[..nl];
            while line.len() > MAX_LINE {
                self.record(stream, &line[..MAX_LINE], false, now)?;
                line = &line[MAX_LINE..];
            }
            self.record(stream, line, true, now)?;
            rest = &rest[nl + 1..];
        }
        while rest.len() >= MAX_LINE {
            self.record(stream, &rest[..MAX_LINE], false, now)?;
            rest = &rest[MAX_LINE..];
        }
        self.pending[idx] = rest.to_vec();
        Ok(())
    }

    /// Writes any unfinished lines (at process exit) as complete records.
    pub fn finish(&mut self, now: Timestamp) -> Result<(), LogError> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.pending[stream as usize]);
            if !rest.is_empty() {
                self.record(stream, &rest, true, now)?;
            }
        }
        Ok(())
    }

    fn record(&mut self, stream: Stream, text: &[u8], full: bool, now: Timestamp) -> Result<(), LogError> {
        let mut line = Vec::with_capacity(text.len() + 48);
        line.extend_from_slice(format_time(now).as_bytes());
        line.push(b' ');
        line.extend_from_slice(stream.as_str().as_bytes());
        line.extend_from_slice(if full { b" F " } else { b" P " });
        line.extend_from_slice(text);
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.config.max_size {
            self.rotate(now)?;
        }
        let path = self.path();
        self.file.write_all(&line).map_err(io_err(&path))?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self, now: Timestamp) -> Result<(), LogError> {
        let live = self.path();
        let mut rotated = PathBuf::from(format!("{}.{}", live.display(), rotation_suffix(now)));
        let mut n = 0;
        while rotated.exists() {
            n += 1;
            rotated = PathBuf::from(format!("{}.{}-{n}", live.display(), rotation_suffix(now)));
        }
        fs::rename(&live, &rotated).map_err(io_err(&live))?;
        self.file = OpenOptions::new().create(true).append(true).open(&live).map_err(io_err(&live))?;
        self.size = 0;
        let files = instance_files(&self.dir, self.restart_count)?;
        let excess = files.len().saturating_sub(self.config.max_files.max(1));
        for old in files.iter().take(excess) {
            fs::remove_file(old).map_err(io_err(old))?;
        }
        Ok(())
    }
}

/// One parsed log line (pieces of a split line joined).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// The time of its first piece, as stored.
    pub time: String,
    pub stream: Stream,
    pub text: Vec<u8>,
}

impl LogLine {
    /// The line as `kubectl logs` prints it, with `--timestamps` if asked.
    pub fn render(&self, timestamps: bool) -> Vec<u8> {
        let mut out = vec![];
        if timestamps {
            out.extend_from_slice(self.time.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&self.text);
        out.push(b'\n');
        out
    }
}

/// Joins records into lines.
#[derive(Debug, Default)]
struct Assembler {
    partial: [Option<LogLine>; 2],
}

impl Assembler {
    fn push(&mut self, path: &Path, n: usize, record: &[u8], out: &mut Vec<LogLine>) -> Result<(), LogError> {
        let bad = || LogError::Parse {
            path: path.to_owned(),
            line: n,
            text: String::from_utf8_lossy(record).into_owned(),
        };
        let mut parts = record.splitn(4, |b| *b == b' ');
        let time = parts.next().ok_or_else(bad)?;
        let stream = match parts.next() {
            Some(b"stdout") => Stream::Stdout,
            Some(b"stderr") => Stream::Stderr,
            _ => return Err(bad()),
        };
        let full = match parts.next() {
            Some(b"F") => true,
            Some(b"P") => false,
            _ => return Err(bad()),
        };
        let text = parts.next().unwrap_or_default();
        let slot = &mut self.partial[stream as usize];
        let line = match slot.take() {
            Some(mut l) => {
                l.text.extend_from_slice(text);
                l
            }
            None => LogLine { time: String::from_utf8_lossy(time).into_owned(), stream, text: text.to_vec() },
        };
        if full {
            out.push(line)
        } else {
            *slot = Some(line)
        }
        Ok(())
    }
}

/// What to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// The previous instance instead of the current one.
    pub previous: bool,
    /// Only the last N lines.
    pub tail: Option<usize>,
}

/// Reads the logs of a container whose current instance is `restart_count`.
pub fn read_logs(
    container_dir: &Path,
    container: &str,
    restart_count: u32,
    opts: ReadOptions,
) -> Result<Vec<LogLine>, LogError> {
    let instance = if opts.previous {
        restart_count
            .checked_sub(1)
            .ok_or_else(|| LogError::NoPrevious { container: container.to_owned(), restart_count })?
    } else {
        restart_count
    };
    let mut lines = vec![];
    let mut asm = Assembler::default();
    for path in instance_files(container_dir, instance)? {
        let data = match fs::read(&path) {
            Ok(d) => d,
            // Rotated away between listing and reading: its lines are gone by policy.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(LogError::Io { path, source: e }),
        };
        for (i, record) in data.split(|b| *b == b'\n').enumerate() {
            if !record.is_empty() {
                asm.push(&path, i + 1, record, &mut lines)?;
            }
        }
    }
    if let Some(n) = opts.tail {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    Ok(lines)
}

/// Follows one instance's log across rotations (`kubectl logs -f`), from the beginning of its live file.
#[derive(Debug)]
pub struct LogFollower {
    dir: PathBuf,
    restart_count: u32,
    file: Option<(PathBuf, File, u64)>,
    buf: Vec<u8>,
    records: usize,
    asm: Assembler,
}

impl LogFollower {
    /// Starts following `container_dir`'s instance `restart_count`.
    pub fn new(container_dir: &Path, restart_count: u32) -> LogFollower {
        LogFollower {
            dir: container_dir.to_owned(),
            restart_count,
            file: None,
            buf: vec![],
            records: 0,
            asm: Assembler::default(),
        }
    }

    /// Lines appended since the last call (never blocks). After a rotation it finishes the file it
    /// was reading, then reads every newer file, so no line is skipped unless rotation deleted it.
    pub fn poll(&mut self) -> Result<Vec<LogLine>, LogError> {
        let mut out = vec![];
        self.drain(&mut out)?;
        let live = log_path(&self.dir, self.restart_count);
        let live_ino = fs::metadata(&live).map(|m| m.ino()).ok();
        let current = self.file.as_ref().map(|(_, _, ino)| *ino);
        if live_ino.is_none() || live_ino == current {
            return Ok(out);
        }
        let files = instance_files(&self.dir, self.restart_count)?;
        let inodes: Vec<(PathBuf, Option<u64>)> = files
            .into_iter()
            .map(|p| (fs::metadata(&p).map(|m| m.ino()).ok(), p))
            .map(|(i, p)| (p, i))
            .collect();
        let start = match current {
            None => inodes.len().saturating_sub(1),
            Some(ino) => inodes.iter().position(|(_, i)| *i == Some(ino)).map_or(0, |i| i + 1),
        };
        for (path, ino) in inodes.into_iter().skip(start) {
            let Some(ino) = ino else { continue };
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(LogError::Io { path, source: e }),
            };
            self.file = Some((path, file, ino));
            self.buf.clear();
            self.drain(&mut out)?;
        }
        Ok(out)
    }

    fn drain(&mut self, out: &mut Vec<LogLine>) -> Result<(), LogError> {
        let Some((path, file, _)) = self.file.as_mut() else { return Ok(()) };
        let mut chunk = vec![];
        file.read_to_end(&mut chunk).map_err(io_err(path))?;
        self.buf.extend_from_slice(&chunk);
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let record: Vec<u8> = self.buf.drain(..=nl).collect();
            self.records += 1;
            let record = &record[..record.len() - 1];
            if !record.is_empty() {
                self.asm.push(path, self.records, record, out)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
