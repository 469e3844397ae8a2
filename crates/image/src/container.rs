//! What a container runs, from its image config and its pod spec, by Kubernetes' rules.
//!
//! Pure functions: the runtime (next step) calls them with the image's [`ImageConfiguration`]
//! and the container's fields.
//!
//! - [`effective_command`]: `command`/`args` against the image's `Entrypoint`/`Cmd` (the four
//!   cases of the Kubernetes docs, "Define a command and arguments for a container").
//! - [`merge_env`]: the image's `Env`, then the container's variables replacing by name.
//! - [`working_dir`]: the container's `workingDir`, else the image's, else `/`.
//! - [`ImageUser::parse`]: the image's `User` (`uid`, `uid:gid`, `name`, `name:group`); names are
//!   resolved later against the container's root file system.
//! - [`PullPolicy::default_for`]: `imagePullPolicy`'s default.

use std::fmt;

use oci_spec::image::ImageConfiguration;
use thiserror::Error;

use crate::reference::ImageRef;

/// A container's process could not be determined.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ContainerError {
    /// Neither the container nor the image names a program.
    #[error("image {image} has no entrypoint or cmd and the container gives no command")]
    NoCommand {
        /// The image, as written in the pod.
        image: String,
    },
    /// The image's `User` is not `user[:group]`.
    #[error("image user {user:?} is not user[:group]")]
    BadUser {
        /// The text as in the image config.
        user: String,
    },
}

/// The argv a container runs. `command` and `args` are the container's (empty = not set);
/// `entrypoint` and `cmd` the image's.
///
/// | command | args | runs |
/// |---|---|---|
/// | – | – | entrypoint + cmd |
/// | set | – | command (the image's entrypoint and cmd are ignored) |
/// | – | set | entrypoint + args |
/// | set | set | command + args |
pub fn effective_command(
    image: &str,
    command: &[String],
    args: &[String],
    entrypoint: &[String],
    cmd: &[String],
) -> Result<Vec<String>, ContainerError> {
    let argv: Vec<String> = match (command.is_empty(), args.is_empty()) {
        (true, true) => entrypoint.iter().chain(cmd).cloned().collect(),
        (false, true) => command.to_vec(),
        (true, false) => entrypoint.iter().chain(args).cloned().collect(),
        (false, false) => command.iter().chain(args).cloned().collect(),
    };
    if argv.is_empty() {
        return Err(ContainerError::NoCommand { image: image.to_string() });
    }
    Ok(argv)
}

/// [`effective_command`] with the image's values read from its config.
pub fn effective_command_for(
    image: &str,
    config: &ImageConfiguration,
    command: &[String],
    args: &[String],
) -> Result<Vec<String>, ContainerError> {
    let cfg = config.config().as_ref();
    let entrypoint = cfg.and_then(|c| c.entrypoint().clone()).unwrap_or_default();
    let cmd = cfg.and_then(|c| c.cmd().clone()).unwrap_or_default();
    effective_command(image, command, args, &entrypoint, &cmd)
}

/// The environment: the image's `Env` (`NAME=value` entries; one without `=` is an empty value),
/// then each of the container's `(name, value)` replacing the image's of the same name in place,
/// or appended. Later duplicates in the image replace earlier ones, as in docker.
pub fn merge_env(image_env: &[String], container_env: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: &str| match out.iter_mut().find(|(n, _)| n == name) {
        Some(slot) => slot.1 = value.to_string(),
        None => out.push((name.to_string(), value.to_string())),
    };
    for entry in image_env {
        let (name, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
        if !name.is_empty() {
            set(name, value);
        }
    }
    for (name, value) in container_env {
        set(name, value);
    }
    out
}

/// The process's working directory: the container's `workingDir`, else the image's, else `/`.
pub fn working_dir(container: Option<&str>, config: &ImageConfiguration) -> String {
    let image = config.config().as_ref().and_then(|c| c.working_dir().clone());
    container
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .or(image.filter(|d| !d.is_empty()))
        .unwrap_or_else(|| "/".to_string())
}

/// A user or group as an image names it: a number, or a name to look up in the image's
/// `/etc/passwd` or `/etc/group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Id {
    /// A numeric id.
    Number(u32),
    /// A name, resolved against the container's root file system.
    Name(String),
}

impl Id {
    fn parse(text: &str) -> Option<Self> {
        if text.is_empty() {
            return None;
        }
        Some(match text.parse::<u32>() {
            Ok(n) => Id::Number(n),
            Err(_) => Id::Name(text.to_string()),
        })
    }
}

/// The image config's `User`: `uid`, `uid:gid`, `name`, `name:group` (any mix). Empty means root
/// (uid 0, and the group from `/etc/passwd`, else 0). `runAsUser`/`runAsGroup` override it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageUser {
    /// The user.
    pub user: Id,
    /// The group, when the image names one; else the user's primary group.
    pub group: Option<Id>,
}

impl ImageUser {
    /// Parses `User`; `Ok(None)` when empty.
    pub fn parse(text: &str) -> Result<Option<Self>, ContainerError> {
        if text.is_empty() {
            return Ok(None);
        }
        let bad = || ContainerError::BadUser { user: text.to_string() };
        let (user, group) = match text.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (text, None),
        };
        if text.matches(':').count() > 1 || text.contains(char::is_whitespace) {
            return Err(bad());
        }
        let user = Id::parse(user).ok_or_else(bad)?;
        let group = match group {
            Some(g) => Some(Id::parse(g).ok_or_else(bad)?),
            None => None,
        };
        Ok(Some(Self { user, group }))
    }
}

/// `imagePullPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    /// Resolve the reference against the registry on every container start.
    Always,
    /// Pull only when the image is not in the store.
    IfNotPresent,
    /// Never pull; the image must be in the store (`ErrImageNeverPull` otherwise).
    Never,
}

impl PullPolicy {
    /// Parses the field's value (`Always`, `IfNotPresent`, `Never`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "Always" => Some(Self::Always),
            "IfNotPresent" => Some(Self::IfNotPresent),
            "Never" => Some(Self::Never),
            _ => None,
        }
    }

    /// Kubernetes' default when the field is unset: `Always` when the tag is `latest` (given, or
    /// implied by a reference with neither tag nor digest), else `IfNotPresent`. As in Kubernetes,
    /// `image:latest@sha256:…` is `Always` (the tag decides) and `image@sha256:…` is
    /// `IfNotPresent`.
    pub fn default_for(image: &ImageRef) -> Self {
        if image.tag() == Some("latest") { Self::Always } else { Self::IfNotPresent }
    }
}

impl fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_merge_follows_the_four_cases() {
        let ep = v(&["/ep", "-x"]);
        let cmd = v(&["serve", "--port=80"]);
        let cases: [(&[&str], &[&str], &[&str]); 4] = [
            (&[], &[], &["/ep", "-x", "serve", "--port=80"]),
            (&["/bin/sh", "-c"], &[], &["/bin/sh", "-c"]),
            (&[], &["run"], &["/ep", "-x", "run"]),
            (&["/bin/echo"], &["hi"], &["/bin/echo", "hi"]),
        ];
        for (command, args, want) in cases {
            let got = effective_command("img", &v(command), &v(args), &ep, &cmd).unwrap();
            assert_eq!(got, v(want), "command {command:?} args {args:?}");
        }
        // an image with only a Cmd and a container with only args: the args alone
        assert_eq!(effective_command("img", &[], &v(&["/bin/true"]), &[], &cmd).unwrap(), v(&["/bin/true"]));
    }

    #[test]
    fn no_command_anywhere_is_an_error_naming_the_image() {
        let err = effective_command("docker.io/library/scratchy:1", &[], &[], &[], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "image docker.io/library/scratchy:1 has no entrypoint or cmd and the container gives no command"
        );
    }

    #[test]
    fn command_from_an_image_config() {
        let config: ImageConfiguration = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/docker-entrypoint.sh"],"Cmd":["postgres"],"Env":["PATH=/usr/bin","PGDATA=/var/lib/postgresql/data"],"WorkingDir":"/srv","User":"999:999"},"rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        assert_eq!(
            effective_command_for("pg", &config, &[], &[]).unwrap(),
            v(&["/docker-entrypoint.sh", "postgres"])
        );
        assert_eq!(
            effective_command_for("pg", &config, &[], &v(&["-c", "fsync=off"])).unwrap(),
            v(&["/docker-entrypoint.sh", "-c", "fsync=off"])
        );
        assert_eq!(working_dir(None, &config), "/srv");
        assert_eq!(working_dir(Some(""), &config), "/srv");
        assert_eq!(working_dir(Some("/work"), &config), "/work");
        let user = config.config().as_ref().unwrap().user().clone().unwrap();
        assert_eq!(
            ImageUser::parse(&user).unwrap(),
            Some(ImageUser { user: Id::Number(999), group: Some(Id::Number(999)) })
        );
        let bare: ImageConfiguration = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        assert_eq!(working_dir(None, &bare), "/");
        assert!(effective_command_for("bare", &bare, &[], &[]).is_err());
    }

    #[test]
    fn env_merge_keeps_image_order_and_lets_the_container_win() {
        let image = v(&["PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8", "EMPTY", "A=1=2", "LANG=en"]);
        let container =
            vec![("PATH".to_string(), "/opt/bin".to_string()), ("NEW".to_string(), "x".to_string())];
        let got = merge_env(&image, &container);
        let want = [("PATH", "/opt/bin"), ("LANG", "en"), ("EMPTY", ""), ("A", "1=2"), ("NEW", "x")];
        let want: Vec<(String, String)> = want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn image_users() {
        let n = |s: &str| Id::Name(s.to_string());
        let cases: [(&str, Option<ImageUser>); 6] = [
            ("", None),
            ("0", Some(ImageUser { user: Id::Number(0), group: None })),
            ("1000:1000", Some(ImageUser { user: Id::Number(1000), group: Some(Id::Number(1000)) })),
            ("postgres", Some(ImageUser { user: n("postgres"), group: None })),
            ("nginx:www-data", Some(ImageUser { user: n("nginx"), group: Some(n("www-data")) })),
            ("app:10", Some(ImageUser { user: n("app"), group: Some(Id::Number(10)) })),
        ];
        for (text, want) in cases {
            assert_eq!(ImageUser::parse(text).unwrap(), want, "{text:?}");
        }
        for bad in [":", "a:", ":b", "a:b:c", "a b"] {
            assert_eq!(
                ImageUser::parse(bad).unwrap_err().to_string(),
                format!("image user {bad:?} is not user[:group]")
            );
        }
        // too large for a uid: a name, found or not later
        assert_eq!(ImageUser::parse("4294967296").unwrap().unwrap().user, n("4294967296"));
    }

    #[test]
    fn pull_policy_defaults() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let cases = [
            ("alpine", PullPolicy::Always),
            ("alpine:latest", PullPolicy::Always),
            ("alpine:3.20", PullPolicy::IfNotPresent),
            ("localhost:5000/x", PullPolicy::Always),
            ("localhost:5000/x:v1", PullPolicy::IfNotPresent),
        ];
        for (image, want) in cases {
            assert_eq!(PullPolicy::default_for(&ImageRef::parse(image).unwrap()), want, "{image}");
        }
        let pinned = ImageRef::parse(&format!("alpine@{d}")).unwrap();
        assert_eq!(PullPolicy::default_for(&pinned), PullPolicy::IfNotPresent);
        let both = ImageRef::parse(&format!("alpine:latest@{d}")).unwrap();
        assert_eq!(PullPolicy::default_for(&both), PullPolicy::Always);
        for p in [PullPolicy::Always, PullPolicy::IfNotPresent, PullPolicy::Never] {
            assert_eq!(PullPolicy::parse(&p.to_string()), Some(p));
        }
        assert_eq!(PullPolicy::parse("always"), None);
    }
}
