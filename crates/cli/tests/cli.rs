//! The `stead` binary: exit codes, output and stdin, as a user meets them.

use assert_cmd::Command;
use predicates::prelude::*;

fn stead() -> Command {
    let mut cmd = Command::cargo_bin("stead").expect("the stead binary is built");
    cmd.env("NO_COLOR", "1").current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    cmd
}

#[test]
fn validate_accepts_the_examples() {
    stead()
        .args(["validate", "-f", "examples/"])
        .assert()
        .success()
        .stdout(predicate::str::contains("objects valid"));
}

#[test]
fn validate_rejects_with_a_located_message_and_exit_1() {
    let bad = "apiVersion: cloudstate.io/v1alpha1\nkind: StatefulService\nmetadata: {name: cart}\nspec:\n  containers:\n  - image: cart:1\n    ports:\n    - containerPort: 70000\n";
    stead()
        .args(["validate", "-f", "-"])
        .write_stdin(bad)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "error: <stdin>:8:22: spec.containers[0].ports[0].containerPort: invalid port 70000: must be between 1 and 65535",
        ))
        .stderr(predicate::str::contains("[<stdin>:8:22]"))
        .stderr(predicate::str::contains("1 error, 0 warnings"));
}

#[test]
fn usage_errors_exit_64() {
    stead().args(["validate"]).assert().code(64);
    stead().args(["render", "-f", "x", "-o", "toml"]).assert().code(64);
    stead().args(["frobnicate"]).assert().code(64);
}

#[test]
fn help_and_version_exit_0() {
    stead().arg("--help").assert().success().stdout(predicate::str::contains("render"));
    stead().arg("version").assert().success().stdout(predicate::str::starts_with("stead "));
}

#[test]
fn render_prints_the_children() {
    stead()
        .args(["render", "-f", "examples/shopping-cart/shopping-cart.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("kind: Deployment"))
        .stdout(predicate::str::contains("name: user-container"))
        .stdout(predicate::str::contains("name: stead-proxy"));
}

#[test]
fn render_json_is_a_list_and_honours_the_proxy_image() {
    let out = stead()
        .args([
            "render",
            "-f",
            "examples/stateful-counter/",
            "-o",
            "json",
            "--proxy-image",
            "registry.local/stead:dev",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    let kinds: Vec<&str> =
        list["items"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["StatefulSet", "Service", "Service"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("registry.local/stead:dev"));
}

#[test]
fn render_refuses_invalid_input() {
    stead()
        .args(["render", "-f", "-"])
        .write_stdin("kind: Nope\napiVersion: v9\n")
        .assert()
        .code(1)
        .stdout("");
}

#[test]
fn a_missing_file_is_named() {
    stead()
        .args(["validate", "-f", "no/such/dir"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot read no/such/dir"));
}

#[test]
fn crd_prints_both_definitions() {
    stead()
        .arg("crd")
        .assert()
        .success()
        .stdout(predicate::str::contains("name: statefulservices.cloudstate.io"))
        .stdout(predicate::str::contains("name: statefulstores.cloudstate.io"))
        .stdout(predicate::str::contains("specReplicasPath: .spec.replicas"));
    stead()
        .args(["crd", "--install"])
        .assert()
        .success()
        .stdout(predicate::str::contains("kind: ClusterRole"));
}

#[test]
fn completions_are_printed() {
    stead().args(["completions", "bash"]).assert().success().stdout(predicate::str::contains("stead"));
}

#[test]
fn proxy_refuses_a_store_behind_a_symbolic_link_with_or_without_the_discard_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    std::os::unix::fs::symlink(dir.path().join("elsewhere.redb"), &path).expect("links");
    for flags in [&[][..], &["--discard-damaged-log"][..]] {
        stead()
            .arg("proxy")
            .args(flags)
            .env("STEAD_STORE", "embedded")
            .env("STEAD_STORE_PATH", &path)
            .env("HTTP_PORT", "0")
            .env("MANAGEMENT_PORT", "0")
            .env("METRICS_PORT", "0")
            .timeout(std::time::Duration::from_secs(30))
            .assert()
            .code(1)
            .stderr(predicate::str::contains(format!(
                "opening embedded store {}: it is a symbolic link, which the store does not follow",
                path.display()
            )));
    }
    assert!(!dir.path().join("elsewhere.redb").exists(), "nothing was created through the link");
}
