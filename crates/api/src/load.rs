//! Loading manifests: YAML or JSON streams, from text, files and directories.
//!
//! Every document is checked against its kind's schema before it is parsed, so one pass reports
//! every structural problem with its file, line, column and field path. Reading the files named by
//! the caller is the only IO in this crate.

use crate::manifest::{KindInfo, Manifest};
use crate::path::{FieldPath, Seg};
use crate::problem::{self, Problem};
use crate::schema;
use crate::source::SourceFile;
use crate::suggest::did_you_mean;
use crate::yaml::{self, Node, Value};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One loaded object and where it came from.
#[derive(Clone, Debug)]
pub struct Document {
    pub manifest: Manifest,
    pub source: Arc<SourceFile>,
    /// The document's located tree, to place problems found later.
    pub node: Node,
    /// Fields that failed the schema check (already reported, and dropped before parsing).
    pub rejected: Vec<FieldPath>,
}

impl Document {
    /// A problem about a field of this document, placed at that field.
    pub fn problem(&self, problem: Problem, path: FieldPath) -> Problem {
        let loc = self.node.locate(&path);
        problem.at(&self.source, Some(loc)).field(path)
    }

    /// A problem about a field name of this document (such as an unknown field), placed at the key.
    pub fn key_problem(&self, problem: Problem, path: FieldPath) -> Problem {
        let loc = self.node.locate_key(&path);
        problem.at(&self.source, Some(loc)).field(path)
    }
}

/// Loaded documents and every problem met on the way.
#[derive(Debug, Default)]
pub struct Loaded {
    pub documents: Vec<Document>,
    pub problems: Vec<Problem>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(Problem::is_error)
    }

    pub fn extend(&mut self, other: Loaded) {
        self.documents.extend(other.documents);
        self.problems.extend(other.problems);
    }
}

/// Loads every document of one source text.
pub fn load_source(source: Arc<SourceFile>) -> Loaded {
    let mut loaded = Loaded::default();
    let nodes = match yaml::parse_indexed(source.text(), source.lines()) {
        Ok(nodes) => nodes,
        Err(e) => {
            let problem = Problem::error(format!("invalid YAML: {}", e.message)).at(&source, e.loc);
            loaded.problems.push(problem.help(syntax_help(&e.message)));
            return loaded;
        }
    };
    for node in nodes {
        load_document(&source, node, &mut loaded);
    }
    problem::sort(&mut loaded.problems);
    loaded
}

/// Loads text under a name (`<stdin>`, a test's name).
pub fn load_str(name: &str, text: &str) -> Loaded {
    load_source(SourceFile::new(name, text))
}

/// The most stead reads from one input: far more than any set of manifests, and a bound on what
/// a device, a pipe or a runaway generator can make it hold in memory.
pub const MAX_INPUT_BYTES: u64 = 64 * 1024 * 1024;

/// Why an input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {name}: {source}")]
    Io { name: String, source: std::io::Error },
    #[error("{name} is larger than {} MiB, the most stead reads from one input", MAX_INPUT_BYTES >> 20)]
    TooLarge { name: String },
    #[error("{name}: not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 { name: String, offset: usize },
    #[error("{name} is not a regular file (it is {what})")]
    NotRegular { name: String, what: &'static str },
    #[error("cannot read {name}: a symlink loop")]
    SymlinkLoop { name: String },
}

impl From<ReadError> for Problem {
    fn from(e: ReadError) -> Self {
        let help = match &e {
            ReadError::NotRegular { what: "a FIFO", .. } => {
                Some("give a pipe on standard input: -f -".to_owned())
            }
            _ => None,
        };
        Problem::error(e.to_string()).help(help)
    }
}

/// Reads one input of at most [`MAX_INPUT_BYTES`] as UTF-8 text.
pub fn read_text(name: &str, reader: impl Read) -> Result<String, ReadError> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ReadError::Io { name: name.to_owned(), source })?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(ReadError::TooLarge { name: name.to_owned() });
    }
    String::from_utf8(bytes)
        .map_err(|e| ReadError::NotUtf8 { name: name.to_owned(), offset: e.utf8_error().valid_up_to() })
}

/// Loads every document read from `reader` (standard input), under `name` (`<stdin>`).
pub fn load_reader(name: &str, reader: impl Read) -> Loaded {
    match read_text(name, reader) {
        Ok(text) => load_source(SourceFile::new(name, text)),
        Err(e) => Loaded { problems: vec![e.into()], ..Loaded::default() },
    }
}

/// Loads files and directories like `kubectl apply -f`: a directory is read recursively, taking
/// `.yaml`, `.yml` and `.json` files in name order.
///
/// A file named here must be a regular file (or a link to one). In a directory, other kinds of
/// file and symlink loops are skipped with a warning, and the rest is still read.
pub fn load_paths(paths: &[PathBuf]) -> Loaded {
    let mut loaded = Loaded::default();
    for path in paths {
        let mut files = Vec::new();
        let found = match regular_or_dir(path) {
            Ok(Kind::Dir(meta)) => {
                collect_files(path, &mut vec![dir_id(&meta)], &mut files, &mut loaded.problems);
                true
            }
            Ok(Kind::File) => {
                files.push(path.clone());
                true
            }
            Err(e) => {
                loaded.problems.push(e.into());
                false
            }
        };
        if found && files.is_empty() {
            let problem = Problem::error(format!("no manifests (.yaml, .yml, .json) in {}", path.display()));
            loaded.problems.push(problem);
        }
        for file in files {
            match read_file(&file) {
                Ok(text) => loaded.extend(load_source(SourceFile::new(file.display().to_string(), text))),
                Err(e) => loaded.problems.push(e.into()),
            }
        }
    }
    loaded
}

enum Kind {
    File,
    Dir(std::fs::Metadata),
}

/// What `path` is, following symlinks: a regular file, a directory, or an error saying why it
/// cannot be read.
fn regular_or_dir(path: &Path) -> Result<Kind, ReadError> {
    let name = || path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| {
        if is_link_loop(path) {
            ReadError::SymlinkLoop { name: name() }
        } else {
            ReadError::Io { name: name(), source }
        }
    })?;
    let kind = meta.file_type();
    if kind.is_dir() {
        Ok(Kind::Dir(meta))
    } else if kind.is_file() {
        Ok(Kind::File)
    } else {
        Err(ReadError::NotRegular { name: name(), what: file_kind(&kind) })
    }
}

/// Reads a regular file, checking again on the open file that it is one and not too large.
fn read_file(path: &Path) -> Result<String, ReadError> {
    let name = path.display().to_string();
    let io = |source| ReadError::Io { name: name.clone(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(ReadError::NotRegular { name, what: file_kind(&meta.file_type()) });
    }
    if meta.len() > MAX_INPUT_BYTES {
        return Err(ReadError::TooLarge { name });
    }
    read_text(&name, file)
}

/// The manifest files under directory `dir`, recursively; `ancestors` are the directories being
/// walked (device and inode), to notice a symlink that leads back into one of them.
fn collect_files(
    dir: &Path,
    ancestors: &mut Vec<(u64, u64)>,
    out: &mut Vec<PathBuf>,
    problems: &mut Vec<Problem>,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(Problem::error(format!("cannot list {}: {e}", dir.display())));
            return;
        }
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for entry in entries {
        let hidden = entry.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        match regular_or_dir(&entry) {
            Ok(Kind::Dir(meta)) => {
                let id = dir_id(&meta);
                if ancestors.contains(&id) {
                    let skipped = format!(
                        "skipped {}: a symlink loop (it leads back to a directory above it)",
                        entry.display()
                    );
                    problems.push(Problem::warning(skipped));
                    continue;
                }
                ancestors.push(id);
                collect_files(&entry, ancestors, out, problems);
                ancestors.pop();
            }
            Ok(Kind::File) if is_manifest_file(&entry) => out.push(entry),
            Ok(Kind::File) => {}
            Err(ReadError::SymlinkLoop { name }) => {
                problems.push(Problem::warning(format!("skipped {name}: a symlink loop")));
            }
            Err(ReadError::NotRegular { name, what }) if is_manifest_file(&entry) => {
                problems.push(Problem::warning(format!("skipped {name}: not a regular file ({what})")));
            }
            Err(_) if !is_manifest_file(&entry) => {}
            Err(e) => problems.push(e.into()),
        }
    }
}

fn dir_id(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

fn file_kind(kind: &std::fs::FileType) -> &'static str {
    if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "an unusual kind of file"
    }
}

/// Whether `path` is a symlink whose chain of links comes back to one already followed (or is
/// longer than the kernel follows).
fn is_link_loop(path: &Path) -> bool {
    let mut seen = std::collections::HashSet::new();
    let mut current = path.to_path_buf();
    for _ in 0..64 {
        let Ok(target) = std::fs::read_link(&current) else { return false };
        if !seen.insert(current.clone()) {
            return true;
        }
        current = current.parent().unwrap_or(Path::new("")).join(target);
    }
    true
}

fn is_manifest_file(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

fn syntax_help(message: &str) -> Option<String> {
    if message.contains("mapping values are not allowed") {
        Some("check the indentation of this line against the lines above it".to_owned())
    } else if message.contains("tab") {
        Some("YAML indents with spaces, not tabs".to_owned())
    } else if message.contains("duplicate mapping key") {
        Some("remove one of the two entries".to_owned())
    } else if message.contains("budget breached") || message.contains("recursion limit") {
        Some(format!(
            "stead reads at most {} documents, {} nodes and {} levels of nesting from one input",
            yaml::MAX_DOCUMENTS,
            yaml::MAX_NODES,
            yaml::MAX_DEPTH
        ))
    } else {
        None
    }
}

fn load_document(source: &Arc<SourceFile>, node: Node, loaded: &mut Loaded) {
    let root = FieldPath::root();
    if !matches!(node.value, Value::Map(_)) {
        let found = node.value.type_name();
        let problem =
            Problem::error(format!("a manifest must be a mapping with apiVersion and kind, found {found}"));
        loaded.problems.push(problem.at(source, Some(node.loc)));
        return;
    }
    let field_problem = |problem: Problem, field: &str| {
        let path = root.key(field);
        let loc = node.locate(&path);
        problem.at(source, Some(loc)).field(path)
    };
    let (Some(kind), Some(api_version)) = (node.get_str("kind"), node.get_str("apiVersion")) else {
        for field in ["apiVersion", "kind"].into_iter().filter(|f| node.get_str(f).is_none()) {
            let problem = Problem::error(format!("missing required field {field:?}"));
            loaded.problems.push(field_problem(problem, field));
        }
        return;
    };
    let Some(info) = KindInfo::by_kind(kind) else {
        let help = did_you_mean(kind, crate::manifest::KINDS.iter().map(|k| k.kind))
            .unwrap_or_else(|| format!("supported kinds: {}", KindInfo::supported()));
        let problem = Problem::error(format!("unsupported kind {kind:?}"));
        loaded.problems.push(field_problem(problem, "kind").help(Some(help)));
        return;
    };
    if info.api_version != api_version {
        let problem = Problem::error(format!(
            "unsupported apiVersion {api_version:?} for kind {kind}: stead reads {} {kind}",
            info.api_version
        ));
        let help = format!("supported kinds: {}", KindInfo::supported());
        loaded.problems.push(field_problem(problem, "apiVersion").help(Some(help)));
        return;
    }

    let issues = schema::check(&node, (info.schema)());
    let mut json = node.to_json();
    // Drop the fields the schema walk rejected, so the rest can still be parsed and validated:
    // one run reports every problem. Such a document is never valid (its problems are errors).
    for issue in issues.iter().filter(|i| !i.message.starts_with("missing required field")) {
        prune(&mut json, &issue.path);
    }
    let structural_errors = !issues.is_empty();
    let rejected: Vec<FieldPath> = issues.iter().map(|i| i.path.clone()).collect();
    for issue in issues {
        let problem = Problem::error(issue.message).at(source, Some(issue.loc)).field(issue.path);
        loaded.problems.push(problem.help(issue.help));
    }
    let mut attempts = 0;
    loop {
        match (info.parse)(json.clone()) {
            Ok(manifest) => {
                loaded.documents.push(Document { manifest, source: source.clone(), node, rejected });
                break;
            }
            Err((path, message)) => {
                let path = FieldPath::parse(if path == "." { "" } else { &path });
                let path = FieldPath::from_segments(
                    path.segments().iter().filter(|s| !matches!(s, Seg::Key(k) if k == "?")).cloned(),
                );
                // The schema walk already reported this one, at the right field.
                if !structural_errors {
                    let loc = node.locate(&path);
                    loaded.problems.push(Problem::error(message).at(source, Some(loc)).field(path.clone()));
                }
                attempts += 1;
                if attempts > 16 || path.is_root() || !prune(&mut json, &path) {
                    break;
                }
            }
        }
    }
}

/// Removes the field at `path` (for an element of a list, the whole list, so that the indices of
/// what remains still match the source). Returns whether anything was removed.
fn prune(json: &mut serde_json::Value, path: &FieldPath) -> bool {
    let segs = path.segments();
    let Some(last_key) = segs.iter().rposition(|s| matches!(s, Seg::Key(_))) else { return false };
    let mut target = &mut *json;
    for seg in &segs[..last_key] {
        let next = match seg {
            Seg::Key(k) => target.get_mut(k.as_str()),
            Seg::Index(i) => target.get_mut(*i),
        };
        match next {
            Some(n) => target = n,
            None => return false,
        }
    }
    match (&segs[last_key], target.as_object_mut()) {
        // (`swap_remove`: constant time, where keeping the order costs a shift per field removed,
        // quadratic in a mapping of thousands of rejected fields; order does not matter to parsing)
        (Seg::Key(k), Some(obj)) => obj.swap_remove(k.as_str()).is_some(),
        _ => false,
    }
}
