//! Reading `-f` arguments: files, directories, and `-` for standard input.

use std::path::PathBuf;
use stead_api::Loaded;

pub fn load(paths: &[PathBuf]) -> Loaded {
    let mut loaded = Loaded::default();
    let (stdin, files): (Vec<&PathBuf>, Vec<&PathBuf>) = paths.iter().partition(|p| p.as_os_str() == "-");
    if !stdin.is_empty() {
        loaded.extend(stead_api::load::load_reader("<stdin>", std::io::stdin().lock()));
    }
    let files: Vec<PathBuf> = files.into_iter().cloned().collect();
    if !files.is_empty() {
        loaded.extend(stead_api::load_paths(&files));
    }
    loaded
}

/// Loads and validates; returns the loaded set with every problem.
pub fn load_and_validate(paths: &[PathBuf]) -> Loaded {
    let mut loaded = load(paths);
    let problems = stead_api::validate(&loaded.documents);
    loaded.problems.extend(problems);
    loaded
}
