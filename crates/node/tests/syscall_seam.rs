//! The claim of the crate's docs that every syscall goes through `Syscall`: outside `syscall.rs` and
//! `netlink.rs`, `src/` may name nix's value types (`Errno`, `Signal`, `Pid`) but call nothing. A
//! new call belongs in a `Syscall` method, with its real implementation and its recording fake.

/// nix items other modules may name: values, not calls.
const ALLOWED_NIX: [&str; 3] = ["errno::Errno", "sys::signal::Signal", "unistd::Pid"];
/// The modules that make the calls.
const SEAM: [&str; 2] = ["syscall.rs", "netlink.rs"];

/// `file:line: text` for every use of nix outside the seam that is not an allowed value type.
fn bypasses(dir: &std::path::Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).expect("read src").filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            bypasses(&path, out);
            continue;
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if !name.ends_with(".rs") || (dir.ends_with("src") && SEAM.contains(&name)) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read source");
        for (n, line) in text.lines().enumerate() {
            // `nix::` as a path's start (not the end of `unix::`).
            let uses = line
                .match_indices("nix::")
                .filter(|(i, _)| !line[..*i].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
                .map(|(i, m)| &line[i + m.len()..]);
            let allowed = |rest: &str| {
                ALLOWED_NIX.iter().any(|a| {
                    rest.strip_prefix(a)
                        .is_some_and(|after| !after.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
                })
            };
            if uses.clone().any(|rest| !allowed(rest)) {
                out.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
}

#[test]
fn nix_calls_stay_behind_the_seam() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = vec![];
    bypasses(&src, &mut found);
    assert!(
        found.is_empty(),
        "nix used outside syscall.rs/netlink.rs (add a Syscall method):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_seam_check_catches_a_direct_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("kubelet")).expect("mkdir");
    std::fs::write(src.join("syscall.rs"), "nix::unistd::geteuid();").expect("write");
    std::fs::write(src.join("ok.rs"), "use nix::errno::Errno;\nuse std::os::unix::fs::PermissionsExt;\nlet s = nix::sys::signal::Signal::SIGKILL;")
        .expect("write");
    std::fs::write(src.join("kubelet/bad.rs"), "// x\nlet _ = nix::sys::signal::kill(pid, s);")
        .expect("write");
    std::fs::write(src.join("kubelet/sneaky.rs"), "use nix::unistd::{Pid, geteuid};").expect("write");
    let mut found = vec![];
    bypasses(&src, &mut found);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].ends_with("bad.rs:2: let _ = nix::sys::signal::kill(pid, s);"), "{found:?}");
    assert!(found[1].ends_with("sneaky.rs:1: use nix::unistd::{Pid, geteuid};"), "{found:?}");
}
