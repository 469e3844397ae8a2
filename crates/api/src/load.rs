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
    let nodes = match yaml::parse_documents(source.text()) {
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
    loaded
}

/// Loads text under a name (`<stdin>`, a test's name).
pub fn load_str(name: &str, text: &str) -> Loaded {
    load_source(SourceFile::new(name, text))
}

/// Loads files and directories like `kubectl apply -f`: a directory is read recursively, taking
/// `.yaml`, `.yml` and `.json` files in name order.
pub fn load_paths(paths: &[PathBuf]) -> Loaded {
    let mut loaded = Loaded::default();
    for path in paths {
        let mut files = Vec::new();
        if let Err(problem) = collect_files(path, true, &mut files) {
            loaded.problems.push(problem);
            continue;
        }
        if files.is_empty() {
            let problem = Problem::error(format!("no manifests (.yaml, .yml, .json) in {}", path.display()));
            loaded.problems.push(problem);
        }
        for file in files {
            match std::fs::read(&file) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => loaded.extend(load_source(SourceFile::new(file.display().to_string(), text))),
                    Err(e) => loaded.problems.push(Problem::error(format!(
                        "{}: not UTF-8 text (invalid byte at offset {})",
                        file.display(),
                        e.utf8_error().valid_up_to()
                    ))),
                },
                Err(e) => {
                    loaded.problems.push(Problem::error(format!("cannot read {}: {e}", file.display())))
                }
            }
        }
    }
    loaded
}

fn collect_files(path: &Path, named: bool, out: &mut Vec<PathBuf>) -> Result<(), Problem> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Problem::error(format!("cannot read {}: {e}", path.display())))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Problem::error(format!("cannot list {}: {e}", path.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            let hidden = entry.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
            if !hidden {
                collect_files(&entry, false, out)?;
            }
        }
    } else if named || is_manifest_file(path) {
        out.push(path.to_owned());
    }
    Ok(())
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
    problem::sort(&mut loaded.problems);
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
        (Seg::Key(k), Some(obj)) => obj.remove(k.as_str()).is_some(),
        _ => false,
    }
}
