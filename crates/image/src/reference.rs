//! Image references as Kubernetes reads them.
//!
//! The kubelet normalizes `image:` with docker's `ParseNormalizedNamed`: a first path component
//! that has no `.` or `:`, is not `localhost` and is lower case is not a registry, so the image is
//! on `docker.io`; a single-component name on `docker.io` lives under `library/`; no tag and no
//! digest means `:latest`; `index.docker.io` is `docker.io`.
//!
//! oci-spec's [`oci_spec::distribution::Reference`] (which oci-client takes) does all of that
//! except two things, which [`ImageRef::parse`] adds before handing the name to it:
//! - a first component with an upper-case letter is a registry host for docker (`Foo/bar` is the
//!   repository `bar` on the host `Foo`); oci-spec puts it on `docker.io` and then rejects the
//!   upper-case repository, so such names are built here;
//! - a bare 64-hex-digit name is refused, as docker refuses it (it is an image id, not a name).
//!
//! Both tag and digest may be given (`alpine:3.20@sha256:…`); the digest is what is pulled, the tag
//! is kept for display and for the pull-policy default.

use std::fmt;

use oci_spec::distribution::Reference;
use thiserror::Error;

/// A reference that failed to parse.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    /// The text as given.
    pub reference: String,
    /// Why it was refused.
    pub reason: String,
}

/// A normalized image reference: registry, repository, and a tag, a digest, or both.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl ImageRef {
    /// Parses and normalizes `text` as the kubelet does (`alpine` is `docker.io/library/alpine:latest`).
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let fail = |reason: &str| ReferenceError { reference: text.to_string(), reason: reason.to_string() };
        if text.is_empty() {
            return Err(fail("the name is empty"));
        }
        if text.trim() != text {
            return Err(fail("leading or trailing white space"));
        }
        if text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(fail("a 64-digit hexadecimal name is an image id, not a name"));
        }
        // docker: an upper-case first component is a registry host, not a docker.io namespace
        if let Some((first, rest)) = text.split_once('/')
            && !first.contains(['.', ':'])
            && first != "localhost"
            && first.bytes().any(|b| b.is_ascii_uppercase())
        {
            // parse the rest on a placeholder host, then put the host back
            let parsed = Reference::try_from(format!("placeholder.invalid/{rest}").as_str())
                .map_err(|e| fail(&e.to_string()))?;
            if !first.split('.').all(|label| {
                !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }) {
                return Err(fail("invalid registry host"));
            }
            return Ok(Self::from_parts(first, &parsed));
        }
        let parsed = Reference::try_from(text).map_err(|e| fail(&e.to_string()))?;
        Ok(Self::from_parts(parsed.registry(), &parsed))
    }

    fn from_parts(registry: &str, parsed: &Reference) -> Self {
        Self {
            registry: registry.to_string(),
            repository: parsed.repository().to_string(),
            tag: parsed.tag().map(str::to_string),
            digest: parsed.digest().map(str::to_string),
        }
    }

    /// Builds a reference from parts already known to be valid (a rewritten endpoint, a stored index
    /// entry). Neither normalized nor checked.
    pub fn from_raw(
        registry: impl Into<String>,
        repository: impl Into<String>,
        tag: Option<String>,
        digest: Option<String>,
    ) -> Self {
        Self { registry: registry.into(), repository: repository.into(), tag, digest }
    }

    /// The registry host, with its port if any (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry (`library/alpine`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if one was given or defaulted (`latest` when neither tag nor digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one (`sha256:…`).
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same image pinned to `digest` (tag dropped), as used once a manifest is resolved.
    pub fn with_digest(&self, digest: &str) -> Self {
        Self {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest.to_string()),
        }
    }

    /// The oci-client form of this reference.
    pub fn to_oci(&self) -> Reference {
        match (&self.tag, &self.digest) {
            (_, Some(digest)) => {
                Reference::with_digest(self.registry.clone(), self.repository.clone(), digest.clone())
            }
            (Some(tag), None) => {
                Reference::with_tag(self.registry.clone(), self.repository.clone(), tag.clone())
            }
            (None, None) => {
                Reference::with_tag(self.registry.clone(), self.repository.clone(), "latest".into())
            }
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageRef({self})")
    }
}

impl std::str::FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalizes_as_the_kubelet() {
        let cases = [
            ("alpine", "docker.io/library/alpine:latest"),
            ("alpine:3.20", "docker.io/library/alpine:3.20"),
            ("library/alpine:3.20", "docker.io/library/alpine:3.20"),
            ("user/repo", "docker.io/user/repo:latest"),
            ("user/repo/sub:v1", "docker.io/user/repo/sub:v1"),
            ("docker.io/alpine", "docker.io/library/alpine:latest"),
            ("index.docker.io/alpine", "docker.io/library/alpine:latest"),
            ("index.docker.io/user/repo", "docker.io/user/repo:latest"),
            ("quay.io/coreos/etcd:v3.5", "quay.io/coreos/etcd:v3.5"),
            ("localhost/x", "localhost/x:latest"),
            ("localhost:5000/x:1", "localhost:5000/x:1"),
            ("127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b:latest"),
            ("registry.example.com:443/team/app:2.0-rc_1", "registry.example.com:443/team/app:2.0-rc_1"),
            ("Registry/app", "Registry/app:latest"),
            ("test.com:5000", "docker.io/library/test.com:5000"),
            (
                "my-docker-hub-username/shopping-cart:latest",
                "docker.io/my-docker-hub-username/shopping-cart:latest",
            ),
        ];
        for (input, want) in cases {
            let got = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got.to_string(), want, "{input}");
        }
    }

    #[test]
    fn digests_with_and_without_tag() {
        let r = ImageRef::parse(&format!("alpine@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/alpine@{D}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(D));

        let r = ImageRef::parse(&format!("localhost:5000/app:1.0@{D}")).unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "app");
        assert_eq!(r.tag(), Some("1.0"));
        assert_eq!(r.digest(), Some(D));
        // the digest is what is pulled
        assert_eq!(r.to_oci().digest(), Some(D));
        assert_eq!(r.with_digest(D).to_string(), format!("localhost:5000/app@{D}"));
    }

    #[test]
    fn refuses_bad_names_and_says_why() {
        let cases = [
            ("", "empty"),
            (" alpine", "white space"),
            ("Alpine", "invalid reference format"),
            ("alpine:", "invalid reference format"),
            ("alpine@sha256:abc", "invalid"),
            ("alpine@md5:0123456789abcdef0123456789abcdef", "unsupported digest algorithm"),
            ("a//b", "invalid reference format"),
            ("alpine:tag with space", "invalid reference format"),
            ("-leading/x", "invalid reference format"),
            ("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "image id"),
        ];
        for (input, want) in cases {
            let err = ImageRef::parse(input).expect_err(input);
            assert_eq!(err.reference, input);
            assert!(err.to_string().contains(want), "{input}: {err}");
            assert!(err.to_string().starts_with("invalid image reference"), "{err}");
        }
    }

    #[test]
    fn oci_form_keeps_the_docker_io_name() {
        let r = ImageRef::parse("alpine:3.20").unwrap().to_oci();
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.resolve_registry(), "index.docker.io");
        assert_eq!(r.repository(), "library/alpine");
        assert_eq!(r.tag(), Some("3.20"));
    }

    proptest::proptest! {
        /// Normalizing is idempotent: the printed form parses back to itself.
        #[test]
        fn printed_form_round_trips(
            host in proptest::option::of("[a-z]{1,8}\\.(com|io)(:[0-9]{2,5})?"),
            path in proptest::collection::vec("[a-z0-9]{1,6}([._-][a-z0-9]{1,4})?", 1..4),
            tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        ) {
            let mut text = path.join("/");
            if let Some(host) = host {
                text = format!("{host}/{text}");
            }
            if let Some(tag) = tag {
                text = format!("{text}:{tag}");
            }
            let once = ImageRef::parse(&text).unwrap();
            let twice = ImageRef::parse(&once.to_string()).unwrap();
            proptest::prop_assert_eq!(once, twice);
        }
    }
}
