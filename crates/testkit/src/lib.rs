//! What stead's tests need from their machine, checked one way everywhere, so that no test can
//! pass by returning early.
//!
//! Some tests need root (namespaces, bridges, mounts), a server (PostgreSQL named by
//! `STEAD_TEST_POSTGRES_URL`), the CloudState Python peer (`STEAD_CLOUDSTATE_PYTHON`,
//! `STEAD_CLOUDSTATE_PY_DESCRIPTORS`) or a program (`docker-registry`, `htpasswd`, `busybox`).
//! They ask through [`require_root`], [`require_env`] and [`require_program`]:
//!
//! - **On a developer machine** a missing need makes the call print `skipped: <test>: <why>` on
//!   stderr and answer "skip" (`false` or `None`); the test then returns.
//! - **Under CI** the same call panics, so the test fails and names what CI lacks. CI is on when
//!   the environment variable `CI` is set to anything but the empty string, `false` or `0`
//!   (`.ci/run` exports `CI=true`; GitHub Actions and most other CI services set `CI=true` too).
//!
//! A few conditions are not something CI should provide: a test of the refusal to start without
//! root cannot run as root, a cgroup v1 test cannot run on a cgroup v2 machine. Those tests call
//! [`not_applicable`], which prints the same line and never fails; keep that list short, and
//! prefer a test that can run everywhere.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Whether this process runs under CI, where a test may not skip: `CI` is set and is not empty,
/// `false` or `0`.
pub fn under_ci() -> bool {
    ci_value(std::env::var_os("CI").as_deref())
}

fn ci_value(value: Option<&OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The running test's name: libtest names the thread it runs each test on after the test.
fn test_name() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        _ => "this test".to_string(),
    }
}

/// Skips the running test on a developer machine (prints `skipped: <test>: <why>`), fails it
/// under CI. The caller returns after it.
#[track_caller]
pub fn skip(why: &str) {
    match verdict(under_ci(), &test_name(), why) {
        Ok(line) => eprintln!("{line}"),
        Err(failure) => panic!("{failure}"),
    }
}

/// What a skip does: the line to print, or under CI the failure.
fn verdict(ci: bool, test: &str, why: &str) -> Result<String, String> {
    if ci {
        Err(format!(
            "{test} would skip under CI, which must provide what it needs: {why} \
             (a test may not skip when CI is set; see crates/testkit)"
        ))
    } else {
        Ok(format!("skipped: {test}: {why}"))
    }
}

/// Says why the running test does not apply to this machine, and never fails, even under CI:
/// only for conditions CI is not meant to meet (see the crate's documentation).
pub fn not_applicable(why: &str) {
    eprintln!("skipped: {}: not applicable here: {why}", test_name());
}

/// Whether the test runs as root; if not, skips with `why` (what root is needed for), or fails
/// under CI.
#[track_caller]
pub fn require_root(why: &str) -> bool {
    if is_root() {
        return true;
    }
    skip(&format!("needs root ({why}); run as root, as .ci/run does"));
    false
}

/// Whether this process runs as root (its effective user owns `/proc/self`).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// The value of the environment variable `var` when it is set and not empty; otherwise skips
/// with `why` (what the variable names), or fails under CI.
#[track_caller]
pub fn require_env(var: &str, why: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => {
            skip(&format!("{var} is not set: {why}"));
            None
        }
    }
}

/// The program `name` (looked up on `PATH`, or a path when it holds a `/`); when missing, skips
/// saying how to get it (`install`, e.g. a Debian package), or fails under CI.
#[track_caller]
pub fn require_program(name: &str, install: &str) -> Option<PathBuf> {
    let found = find_program(name);
    if found.is_none() {
        skip(&format!("the program {name} is missing ({install})"));
    }
    found
}

/// The program `name`: a path when it holds a `/`, else the first executable file of that name
/// on `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return executable(Path::new(name)).then(|| PathBuf::from(name));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| executable(candidate))
}

fn executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|m| m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_is_on_for_any_value_but_empty_false_and_zero() {
        assert!(!ci_value(None));
        for off in ["", "false", "0"] {
            assert!(!ci_value(Some(OsStr::new(off))), "{off:?}");
        }
        for on in ["true", "1", "yes", "TRUE"] {
            assert!(ci_value(Some(OsStr::new(on))), "{on:?}");
        }
    }

    #[test]
    fn the_test_name_is_the_thread_name() {
        assert_eq!(test_name(), "tests::the_test_name_is_the_thread_name");
    }

    #[test]
    fn programs_are_found_on_the_path_or_by_path() {
        let sh = find_program("sh").expect("sh is on PATH");
        assert!(sh.is_absolute(), "{}", sh.display());
        assert_eq!(find_program(sh.to_str().expect("utf-8")), Some(sh));
        assert_eq!(find_program("stead-no-such-program"), None);
        assert_eq!(find_program("/nonexistent/stead-no-such-program"), None);
    }

    #[test]
    fn a_missing_need_skips_outside_ci_and_fails_under_it() {
        assert_eq!(verdict(false, "t", "no server"), Ok("skipped: t: no server".to_string()));
        let failure = verdict(true, "t", "no server").expect_err("fails under CI");
        assert!(failure.starts_with("t would skip under CI") && failure.contains("no server"), "{failure}");
    }
}
