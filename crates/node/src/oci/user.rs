//! Users and groups of a container's root file system: `/etc/passwd` and `/etc/group` parsed
//! (pure), read from inside the root without ever leaving it ([`read_in_root`]), and the image's
//! `User` resolved against them ([`resolve_image_user`]) as containerd does.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;
use stead_image::container::{Id, ImageUser};

/// One line of `/etc/passwd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// One line of `/etc/group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Parses `/etc/passwd` (`name:password:uid:gid:gecos:home:shell`). Comments, blank and malformed
/// lines are skipped, as libc does.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 || f[0].is_empty() {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_owned(),
                uid: f[2].trim().parse().ok()?,
                gid: f[3].trim().parse().ok()?,
                home: f.get(5).copied().unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

/// Parses `/etc/group` (`name:password:gid:member,member`), skipping what is malformed.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 || f[0].is_empty() {
                return None;
            }
            let members = f
                .get(3)
                .map(|m| m.split(',').map(str::trim).filter(|m| !m.is_empty()).map(str::to_owned).collect())
                .unwrap_or_default();
            Some(GroupEntry { name: f[0].to_owned(), gid: f[2].trim().parse().ok()?, members })
        })
        .collect()
}

/// The largest `/etc/passwd` or `/etc/group` read (a bigger file is read up to this size).
const MAX_FILE: u64 = 4 << 20;

fn open_root(root: &Path) -> std::io::Result<OwnedFd> {
    use nix::fcntl::{OFlag, open};
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    open(root, flags, nix::sys::stat::Mode::empty()).map_err(std::io::Error::from)
}

/// Reads `path` (absolute inside the container) from the root file system at `root`, resolving
/// every symlink as if `root` were `/` (`openat2` with `RESOLVE_IN_ROOT`, no magic links), so a
/// hostile image cannot make the runtime read a host file. `Ok(None)` when the file does not exist.
pub fn read_in_root(root: &Path, path: &str) -> std::io::Result<Option<String>> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
    let dir = open_root(root)?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = match openat2(&dir, path.trim_start_matches('/'), how) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut text = String::new();
    std::fs::File::from(fd).take(MAX_FILE).read_to_string(&mut text)?;
    Ok(Some(text))
}

/// The users and groups of a root file system.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserDb {
    pub passwd: Vec<PasswdEntry>,
    pub groups: Vec<GroupEntry>,
}

impl UserDb {
    /// Reads `/etc/passwd` and `/etc/group` of the root at `root` ([`read_in_root`]); a missing file
    /// is empty.
    pub fn read(root: &Path) -> std::io::Result<UserDb> {
        Ok(UserDb {
            passwd: parse_passwd(&read_in_root(root, "/etc/passwd")?.unwrap_or_default()),
            groups: parse_group(&read_in_root(root, "/etc/group")?.unwrap_or_default()),
        })
    }
}

/// The user and groups a container's process runs as.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, sorted, without duplicates.
    pub additional_gids: Vec<u32>,
    /// The user's name, when the root's `/etc/passwd` knows the uid.
    pub name: Option<String>,
    /// The user's home directory from `/etc/passwd` (for `HOME`), when known.
    pub home: Option<String>,
}

/// Why a user or group name cannot be resolved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("user {0:?} is not in the image's /etc/passwd")]
    NoSuchUser(String),
    #[error("group {0:?} is not in the image's /etc/group")]
    NoSuchGroup(String),
}

/// Resolves `user` (the image's `User`, or `None` for root) against the root's `passwd` and
/// `group` entries: a name must exist; a number need not. The group is the one named, else the
/// user's primary group from `passwd`, else 0. Supplementary groups are those of `group` that list
/// the user's name as a member (containerd's rule).
pub fn resolve_image_user(
    user: Option<&ImageUser>,
    passwd: &[PasswdEntry],
    groups: &[GroupEntry],
) -> Result<ResolvedUser, UserError> {
    let entry = match user.map(|u| &u.user) {
        None => passwd.iter().find(|p| p.uid == 0),
        Some(Id::Number(n)) => passwd.iter().find(|p| p.uid == *n),
        Some(Id::Name(name)) => {
            Some(passwd.iter().find(|p| &p.name == name).ok_or_else(|| UserError::NoSuchUser(name.clone()))?)
        }
    };
    let uid = match user.map(|u| &u.user) {
        Some(Id::Number(n)) => *n,
        _ => entry.map_or(0, |e| e.uid),
    };
    let gid = match user.and_then(|u| u.group.as_ref()) {
        Some(Id::Number(n)) => *n,
        Some(Id::Name(name)) => {
            groups.iter().find(|g| &g.name == name).ok_or_else(|| UserError::NoSuchGroup(name.clone()))?.gid
        }
        None => entry.map_or(0, |e| e.gid),
    };
    let mut additional_gids: Vec<u32> = match entry {
        Some(e) => groups.iter().filter(|g| g.members.iter().any(|m| m == &e.name)).map(|g| g.gid).collect(),
        None => vec![],
    };
    additional_gids.sort_unstable();
    additional_gids.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        name: entry.map(|e| e.name.clone()),
        home: entry.map(|e| e.home.clone()).filter(|h| !h.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\n\nbroken:x:nope:1\n\
                          nobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:root,app\nnogroup:x:65534:\napp:x:1000:\naudio:x:29: app , \n";

    fn user(text: &str) -> ImageUser {
        ImageUser::parse(text).expect("parse").expect("some")
    }

    #[test]
    fn parses_and_skips_malformed_lines() {
        let p = parse_passwd(PASSWD);
        assert_eq!(p.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["root", "nobody", "app"]);
        assert_eq!(p[2], PasswdEntry { name: "app".into(), uid: 1000, gid: 1000, home: "/home/app".into() });
        let g = parse_group(GROUP);
        assert_eq!(g[1].members, ["root", "app"]);
        assert_eq!(g[4], GroupEntry { name: "audio".into(), gid: 29, members: vec!["app".into()] });
    }

    #[test]
    fn resolves_names_numbers_and_groups() {
        let (p, g) = (parse_passwd(PASSWD), parse_group(GROUP));
        let r = resolve_image_user(Some(&user("nobody")), &p, &g).expect("nobody");
        assert_eq!((r.uid, r.gid, r.additional_gids.clone()), (65534, 65534, vec![]));
        assert_eq!(r.home.as_deref(), Some("/nonexistent"));
        let r = resolve_image_user(Some(&user("app")), &p, &g).expect("app");
        assert_eq!((r.uid, r.gid, r.additional_gids), (1000, 1000, vec![10, 29]));
        let r = resolve_image_user(Some(&user("app:nogroup")), &p, &g).expect("app:nogroup");
        assert_eq!(r.gid, 65534);
        // A number need not exist; its primary group comes from passwd when it does.
        let r = resolve_image_user(Some(&user("4242")), &p, &g).expect("4242");
        assert_eq!((r.uid, r.gid, r.name), (4242, 0, None));
        let r = resolve_image_user(Some(&user("1000:7")), &p, &g).expect("1000:7");
        assert_eq!((r.uid, r.gid, r.name.as_deref()), (1000, 7, Some("app")));
        let r = resolve_image_user(None, &p, &g).expect("root");
        assert_eq!((r.uid, r.gid, r.additional_gids), (0, 0, vec![10]));
        assert_eq!(resolve_image_user(None, &[], &[]).expect("no passwd"), ResolvedUser::default());
    }

    #[test]
    fn unknown_names_are_errors() {
        let (p, g) = (parse_passwd(PASSWD), parse_group(GROUP));
        let e = resolve_image_user(Some(&user("postgres")), &p, &g).unwrap_err();
        assert_eq!(e.to_string(), "user \"postgres\" is not in the image's /etc/passwd");
        let e = resolve_image_user(Some(&user("app:docker")), &p, &g).unwrap_err();
        assert_eq!(e.to_string(), "group \"docker\" is not in the image's /etc/group");
    }

    #[test]
    fn reading_stays_inside_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        let outside = dir.path().join("secret");
        std::fs::write(&outside, "host secret").expect("write");
        // An absolute symlink to the host file, and a relative one climbing out: both resolve
        // inside the root, where nothing exists.
        std::os::unix::fs::symlink(&outside, root.join("etc/passwd")).expect("symlink");
        std::os::unix::fs::symlink("../../../secret", root.join("etc/group")).expect("symlink");
        assert_eq!(read_in_root(&root, "/etc/passwd").expect("read"), None);
        assert_eq!(read_in_root(&root, "/etc/group").expect("read"), None);
        // A symlink inside the root is followed inside it.
        std::fs::write(root.join("etc/passwd.real"), "root:x:0:0::/:/bin/sh\n").expect("write");
        std::fs::remove_file(root.join("etc/passwd")).expect("rm");
        std::os::unix::fs::symlink("/etc/passwd.real", root.join("etc/passwd")).expect("symlink");
        assert_eq!(
            read_in_root(&root, "/etc/passwd").expect("read").as_deref(),
            Some("root:x:0:0::/:/bin/sh\n")
        );
        assert_eq!(read_in_root(&root, "/etc/shadow").expect("missing"), None);
    }
}
