//! The `RuntimeDefault` seccomp profile, written for stead from the documented behaviour of the
//! container runtimes' default profiles (docker's, which containerd and CRI-O ship): what they
//! refuse, not their allowlist.
//!
//! Shape: the default action allows; the syscalls below fail with `EPERM`, except where the
//! container holds the capability that unlocks them (as in docker's profile, where e.g. `mount`
//! is allowed only with `CAP_SYS_ADMIN`). `clone` with a namespace flag is refused the same way,
//! and `clone3` fails with `ENOSYS` (its flags are in memory, out of seccomp's reach), so libc
//! falls back to `clone`. Syscalls unknown on an architecture are skipped by the runtime.
//!
//! What this covers, by the documented reasons: kernel keyrings (not namespaced), module loading,
//! kexec and reboot, clock changes, raw I/O ports, accounting and swap, the mount API, namespace
//! creation and entry, BPF and perf, `open_by_handle_at` (the "shocker" escape), NUMA policy,
//! `userfaultfd`, io_uring, obsolete calls (`uselib`, `ustat`, `sysfs`, `_sysctl`, `nfsservctl`,
//! `vm86`). What it does not: argument filters on `personality` and `socket` families (an
//! allowlist profile's finer points).

use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg,
    LinuxSeccompArgBuilder, LinuxSeccompOperator, LinuxSyscall,
};

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// Syscalls refused unless the container holds the capability (`None`: always refused).
const BLOCKED: &[(Option<Capability>, &[&str])] = &[
    (None, &["add_key", "keyctl", "request_key"]),
    (None, &["nfsservctl", "sysfs", "_sysctl", "uselib", "ustat", "vm86", "vm86old"]),
    (None, &["userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register"]),
    (
        Some(Capability::SysAdmin),
        &[
            "mount",
            "umount",
            "umount2",
            "pivot_root",
            "setns",
            "unshare",
            "swapon",
            "swapoff",
            "quotactl",
            "lookup_dcookie",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "move_mount",
            "open_tree",
            "mount_setattr",
            "bpf",
            "perf_event_open",
            "fanotify_init",
        ],
    ),
    (Some(Capability::SysBoot), &["reboot", "kexec_load", "kexec_file_load"]),
    (
        Some(Capability::SysModule),
        &["init_module", "finit_module", "delete_module", "create_module", "get_kernel_syms", "query_module"],
    ),
    (Some(Capability::SysPacct), &["acct"]),
    (Some(Capability::SysPtrace), &["kcmp", "pidfd_getfd"]),
    (Some(Capability::SysRawio), &["iopl", "ioperm"]),
    (
        Some(Capability::SysTime),
        &["settimeofday", "stime", "clock_settime", "clock_settime64", "clock_adjtime", "clock_adjtime64"],
    ),
    (Some(Capability::SysNice), &["get_mempolicy", "set_mempolicy", "mbind", "move_pages"]),
    (Some(Capability::DacReadSearch), &["open_by_handle_at"]),
    (Some(Capability::Syslog), &["syslog"]),
    (Some(Capability::SysTtyConfig), &["vhangup"]),
];

/// The namespace flags of `clone(2)`: `CLONE_NEWNS`, `NEWCGROUP`, `NEWUTS`, `NEWIPC`, `NEWUSER`,
/// `NEWPID`, `NEWNET`, `NEWTIME`.
const CLONE_NAMESPACE_FLAGS: [u64; 8] =
    [0x0002_0000, 0x0200_0000, 0x0400_0000, 0x0800_0000, 0x1000_0000, 0x2000_0000, 0x4000_0000, 0x80];

fn rule(names: Vec<String>, errno: u32, args: Option<Vec<LinuxSeccompArg>>) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names);
    s.set_action(LinuxSeccompAction::ScmpActErrno);
    s.set_errno_ret(Some(errno));
    s.set_args(args);
    s
}

/// The profile for a container holding `caps` (its bounding set).
pub fn runtime_default(caps: &Capabilities) -> LinuxSeccomp {
    let mut syscalls: Vec<LinuxSyscall> = BLOCKED
        .iter()
        .filter(|(unlock, _)| unlock.is_none_or(|c| !caps.contains(&c)))
        .map(|(_, names)| rule(names.iter().map(|n| (*n).to_owned()).collect(), EPERM, None))
        .collect();
    if !caps.contains(&Capability::SysAdmin) {
        // One rule per flag: rules for the same syscall are alternatives.
        for flag in CLONE_NAMESPACE_FLAGS {
            let arg = LinuxSeccompArgBuilder::default()
                .index(0_usize)
                .value(flag)
                .value_two(flag)
                .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
                .build();
            // The builder cannot fail (every field has a default); were it to, no rule is better
            // than one without its condition, which would refuse every clone.
            if let Ok(arg) = arg {
                syscalls.push(rule(vec!["clone".into()], EPERM, Some(vec![arg])));
            }
        }
    }
    syscalls.push(rule(vec!["clone3".into()], ENOSYS, None));
    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActAllow);
    profile.set_architectures(Some(vec![
        Arch::ScmpArchX86_64,
        Arch::ScmpArchX86,
        Arch::ScmpArchX32,
        Arch::ScmpArchAarch64,
        Arch::ScmpArchArm,
    ]));
    profile.set_syscalls(Some(syscalls));
    profile
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(p: &LinuxSeccomp, name: &str) -> Vec<u32> {
        p.syscalls()
            .iter()
            .flatten()
            .filter(|s| s.names().iter().any(|n| n == name))
            .filter_map(|s| s.errno_ret())
            .collect()
    }

    #[test]
    fn capabilities_unlock_their_syscalls() {
        let none = runtime_default(&Capabilities::new());
        assert_eq!(none.default_action(), LinuxSeccompAction::ScmpActAllow);
        for name in ["mount", "keyctl", "reboot", "ptrace_unknown_is_not_listed"] {
            let expect = if name.ends_with("listed") { vec![] } else { vec![EPERM] };
            assert_eq!(blocked(&none, name), expect, "{name}");
        }
        assert_eq!(blocked(&none, "clone").len(), CLONE_NAMESPACE_FLAGS.len());
        assert_eq!(blocked(&none, "clone3"), [ENOSYS]);
        let admin = runtime_default(&[Capability::SysAdmin].into_iter().collect());
        assert!(blocked(&admin, "mount").is_empty() && blocked(&admin, "clone").is_empty());
        assert_eq!(blocked(&admin, "keyctl"), [EPERM], "keyrings stay refused");
    }

    #[test]
    fn serializes_as_runc_reads_it() {
        let p = runtime_default(&Capabilities::new());
        let v = serde_json::to_value(&p).expect("json");
        assert_eq!(v["defaultAction"], "SCMP_ACT_ALLOW");
        let clone = v["syscalls"]
            .as_array()
            .expect("syscalls")
            .iter()
            .find(|s| s["names"][0] == "clone")
            .expect("clone rule");
        assert_eq!(clone["action"], "SCMP_ACT_ERRNO");
        assert_eq!(clone["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(clone["args"][0]["valueTwo"], clone["args"][0]["value"]);
    }
}
