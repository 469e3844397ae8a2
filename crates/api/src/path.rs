//! Field paths such as `spec.containers[0].ports[1].containerPort`.

use std::fmt;

/// One step into a document.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path from a document's root to one of its fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<Seg>);

impl FieldPath {
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// This path extended by a key.
    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(key.into()));
        p
    }

    /// This path extended by an index.
    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    pub fn push(&mut self, seg: Seg) {
        self.0.push(seg);
    }

    pub fn pop(&mut self) -> Option<Seg> {
        self.0.pop()
    }

    pub fn segments(&self) -> &[Seg] {
        &self.0
    }

    /// Whether `prefix` is this path or one of its ancestors.
    pub fn starts_with(&self, prefix: &FieldPath) -> bool {
        self.0.starts_with(&prefix.0)
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses the display form back (`a.b[0]["x.y"]`); used by tests and by serde error paths.
    pub fn parse(s: &str) -> Self {
        let mut segs = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                rest = r;
            } else if let Some(r) = rest.strip_prefix("[\"") {
                let end = r.find("\"]").unwrap_or(r.len());
                segs.push(Seg::Key(r[..end].to_owned()));
                rest = r.get(end + 2..).unwrap_or("");
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').unwrap_or(r.len());
                match r[..end].parse() {
                    Ok(i) => segs.push(Seg::Index(i)),
                    Err(_) => segs.push(Seg::Key(r[..end].to_owned())),
                }
                rest = r.get(end + 1..).unwrap_or("");
            } else {
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                segs.push(Seg::Key(rest[..end].to_owned()));
                rest = &rest[end..];
            }
        }
        Self(segs)
    }
}

fn plain_key(k: &str) -> bool {
    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if plain_key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Key(k) => write!(f, "[{k:?}]")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl FieldPath {
    pub fn from_segments(segs: impl IntoIterator<Item = Seg>) -> Self {
        Self(segs.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_like_kubectl() {
        let p = FieldPath::root()
            .key("spec")
            .key("containers")
            .index(0)
            .key("ports")
            .index(1)
            .key("containerPort");
        assert_eq!(p.to_string(), "spec.containers[0].ports[1].containerPort");
        let l = FieldPath::root().key("metadata").key("labels").key("app.kubernetes.io/name");
        assert_eq!(l.to_string(), r#"metadata.labels["app.kubernetes.io/name"]"#);
    }

    #[test]
    fn parse_inverts_display() {
        for s in ["spec.containers[0].ports[1].containerPort", r#"metadata.labels["a.b/c"].x"#, "", "a"] {
            assert_eq!(FieldPath::parse(s).to_string(), s);
        }
    }
}
