//! Reading inputs: pipes, devices, huge files and symlink loops end in a clear problem naming
//! the file, never in a hang, a runaway read or an aborted directory scan.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use stead_api::load::{MAX_INPUT_BYTES, load_paths, load_reader};
use stead_api::{Loaded, Severity};

const CART: &str = "apiVersion: cloudstate.io/v1alpha1\nkind: StatefulService\nmetadata:\n  name: cart\nspec:\n  containers:\n  - image: cart:1\n";

fn messages(loaded: &Loaded, severity: Severity) -> Vec<String> {
    loaded.problems.iter().filter(|p| p.severity == severity).map(ToString::to_string).collect()
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("runs mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

fn dir_with_cart() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    std::fs::write(root.join("cart.yaml"), CART).unwrap();
    (dir, root)
}

#[test]
fn a_fifo_named_with_f_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.yaml");
    mkfifo(&fifo);
    let loaded = load_paths(std::slice::from_ref(&fifo));
    assert_eq!(
        messages(&loaded, Severity::Error),
        [format!("{} is not a regular file (it is a FIFO)", fifo.display())]
    );
    assert_eq!(loaded.problems[0].help.as_deref(), Some("give a pipe on standard input: -f -"));
}

#[test]
fn dev_zero_is_refused_before_reading() {
    let loaded = load_paths(&[PathBuf::from("/dev/zero")]);
    assert_eq!(
        messages(&loaded, Severity::Error),
        ["/dev/zero is not a regular file (it is a character device)"]
    );
}

#[test]
fn a_file_over_the_cap_is_refused_by_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    // sparse: no disk used, and never read
    std::fs::File::create(&big).unwrap().set_len(MAX_INPUT_BYTES + 1).unwrap();
    let loaded = load_paths(std::slice::from_ref(&big));
    assert_eq!(
        messages(&loaded, Severity::Error),
        [format!("{} is larger than 64 MiB, the most stead reads from one input", big.display())]
    );
}

#[test]
fn endless_standard_input_stops_at_the_cap() {
    let loaded = load_reader("<stdin>", std::io::repeat(b'#'));
    assert_eq!(
        messages(&loaded, Severity::Error),
        ["<stdin> is larger than 64 MiB, the most stead reads from one input"]
    );
    let loaded = load_reader("<stdin>", CART.as_bytes());
    assert_eq!(loaded.documents.len(), 1);
    assert!(loaded.problems.is_empty());
}

#[test]
fn a_directory_scan_skips_fifos_and_devices_with_a_warning() {
    let (_dir, root) = dir_with_cart();
    mkfifo(&root.join("pipe.yaml"));
    mkfifo(&root.join("notes")); // not a manifest by its name: not mentioned
    symlink("/dev/zero", root.join("zero.yaml")).unwrap();
    let loaded = load_paths(std::slice::from_ref(&root));
    assert_eq!(loaded.documents.len(), 1);
    assert_eq!(messages(&loaded, Severity::Error), Vec::<String>::new());
    assert_eq!(
        messages(&loaded, Severity::Warning),
        [
            format!("skipped {}: not a regular file (a FIFO)", root.join("pipe.yaml").display()),
            format!("skipped {}: not a regular file (a character device)", root.join("zero.yaml").display()),
        ]
    );
}

#[test]
fn symlink_loops_are_reported_and_the_scan_goes_on() {
    let (_dir, root) = dir_with_cart();
    // a link to itself, a chain of two, and a directory link back up the tree
    symlink("self.yaml", root.join("self.yaml")).unwrap();
    symlink("b.yaml", root.join("a.yaml")).unwrap();
    symlink("a.yaml", root.join("b.yaml")).unwrap();
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/z.yaml"), CART.replace("cart", "orders")).unwrap();
    symlink("..", root.join("sub/up")).unwrap();
    let loaded = load_paths(std::slice::from_ref(&root));
    let names: Vec<&str> = loaded.documents.iter().map(|d| d.manifest.name()).collect();
    assert_eq!(names, ["cart", "orders"], "every readable file, once");
    assert_eq!(messages(&loaded, Severity::Error), Vec::<String>::new());
    let p = |name: &str| root.join(name).display().to_string();
    assert_eq!(
        messages(&loaded, Severity::Warning),
        [
            format!("skipped {}: a symlink loop", p("a.yaml")),
            format!("skipped {}: a symlink loop", p("b.yaml")),
            format!("skipped {}: a symlink loop", p("self.yaml")),
            format!("skipped {}: a symlink loop (it leads back to a directory above it)", p("sub/up")),
        ]
    );

    // Named with -f, a loop is an error.
    let loaded = load_paths(&[root.join("self.yaml")]);
    assert_eq!(
        messages(&loaded, Severity::Error),
        [format!("cannot read {}: a symlink loop", p("self.yaml"))]
    );
}

#[test]
fn unreadable_and_non_utf8_files_are_named_with_the_offset() {
    let (_dir, root) = dir_with_cart();
    std::fs::write(root.join("latin1.yaml"), b"a: b\nc: caf\xe9\n").unwrap();
    symlink("missing.yaml", root.join("dangling.yaml")).unwrap();
    let loaded = load_paths(std::slice::from_ref(&root));
    assert_eq!(loaded.documents.len(), 1, "the rest of the directory is still read");
    assert_eq!(
        messages(&loaded, Severity::Error),
        [
            format!(
                "cannot read {}: No such file or directory (os error 2)",
                root.join("dangling.yaml").display()
            ),
            format!("{}: not UTF-8 text (invalid byte at offset 11)", root.join("latin1.yaml").display()),
        ]
    );
}
