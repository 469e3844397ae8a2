//! Kubernetes' name rules (apimachinery's `validation` package), as functions that say what is wrong.

/// DNS-1123 label: at most 63 characters of `[a-z0-9-]`, starting and ending alphanumeric.
pub fn dns1123_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 63 {
        return Err(format!("must be no more than 63 characters (is {})", s.len()));
    }
    label_chars(s)
}

/// DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 253 {
        return Err(format!("must be no more than 253 characters (is {})", s.len()));
    }
    if s.split('.').any(str::is_empty) {
        return Err("must not have empty parts between dots".into());
    }
    let chars_ok = s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !chars_ok {
        return Err(lowercase_help(s));
    }
    s.split('.').try_for_each(label_chars)
}

/// DNS-1035 label (Service names): a DNS-1123 label that starts with a letter.
pub fn dns1035_label(s: &str) -> Result<(), String> {
    dns1123_label(s)?;
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("must start with a lowercase letter".into());
    }
    Ok(())
}

/// IANA service name (port names): at most 15 of `[a-z0-9-]`, a letter among them, no `--`, no
/// leading or trailing `-`.
pub fn port_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 15 {
        return Err(format!("must be no more than 15 characters (is {})", s.len()));
    }
    if !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return Err(lowercase_help(s));
    }
    if !s.chars().any(|c| c.is_ascii_lowercase()) {
        return Err("must contain at least one letter".into());
    }
    if s.starts_with('-') || s.ends_with('-') || s.contains("--") {
        return Err("must not start or end with '-' or contain '--'".into());
    }
    Ok(())
}

/// A label key: an optional DNS subdomain prefix and `/`, then a name of at most 63 characters of
/// alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
pub fn label_key(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(prefix) = prefix {
        dns1123_subdomain(prefix).map_err(|e| format!("prefix {prefix:?} {e}"))?;
    }
    qualified_name_part(name)
}

/// A label value: empty, or at most 63 characters like a label key's name part.
pub fn label_value(s: &str) -> Result<(), String> {
    if s.is_empty() { Ok(()) } else { qualified_name_part(s) }
}

/// A ConfigMap or Secret key (a file name when the data is mounted): at most 253 characters of
/// alphanumerics, `-`, `_` and `.`, and not `.`, `..` or starting with `..`.
pub fn config_key(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 253 {
        return Err(format!("must be no more than 253 characters (is {})", s.len()));
    }
    if !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err("must consist of alphanumerics, '-', '_' or '.'".into());
    }
    match s {
        "." => Err("must not be '.'".into()),
        ".." => Err("must not be '..'".into()),
        _ if s.starts_with("..") => Err("must not start with '..'".into()),
        _ => Ok(()),
    }
}

fn qualified_name_part(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("name part must not be empty".into());
    }
    if s.len() > 63 {
        return Err(format!("must be no more than 63 characters (is {})", s.len()));
    }
    let ok = s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let ends = s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok || !ends {
        return Err(
            "must consist of alphanumerics, '-', '_' or '.', and start and end with an alphanumeric".into()
        );
    }
    Ok(())
}

fn label_chars(s: &str) -> Result<(), String> {
    if !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return Err(lowercase_help(s));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("must start and end with a lowercase letter or digit".into());
    }
    Ok(())
}

fn lowercase_help(s: &str) -> String {
    if s.chars().any(|c| c.is_ascii_uppercase()) {
        "must be lowercase".into()
    } else {
        let bad: String = s
            .chars()
            .filter(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
            .take(1)
            .collect();
        format!("must consist of lowercase letters, digits and '-' (found {bad:?})")
    }
}

/// Services (and StatefulServices, which become Services) need DNS-1035 labels; Namespaces need
/// DNS-1123 labels.
pub fn dns1035_or_label(is_namespace: bool) -> fn(&str) -> Result<(), String> {
    if is_namespace { dns1123_label } else { dns1035_label }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn labels() {
        assert!(dns1123_label("shopping-cart").is_ok());
        assert!(dns1123_label("web-0").is_ok());
        assert_eq!(dns1123_label("Cart"), Err("must be lowercase".into()));
        assert!(dns1123_label("-a").is_err());
        assert!(dns1123_label(&"a".repeat(64)).is_err());
        assert!(dns1035_label("0cart").is_err());
        assert!(dns1123_subdomain("a.b-c.d").is_ok());
        assert!(dns1123_subdomain("a..b").is_err());
    }

    #[test]
    fn ports_and_label_keys() {
        assert!(port_name("grpc").is_ok());
        assert!(port_name("http-2").is_ok());
        assert!(port_name("8080").is_err());
        assert!(port_name("a--b").is_err());
        assert!(port_name("sixteen-chars-xx").is_err());
        assert!(label_key("app.kubernetes.io/name").is_ok());
        assert!(label_key("cloudstate.io/stateful-service").is_ok());
        assert!(label_key("Bad Key").is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("v1.2_x").is_ok());
        assert!(label_value("-x").is_err());
    }

    #[test]
    fn config_keys() {
        for good in ["app.properties", "tls.crt", "KEY_1", "-a", ".hidden", "a..b"] {
            assert_eq!(config_key(good), Ok(()), "{good}");
        }
        let bad = [
            ("", "must not be empty"),
            ("a/b", "must consist of alphanumerics, '-', '_' or '.'"),
            ("../../etc/passwd", "must consist of alphanumerics, '-', '_' or '.'"),
            ("a b", "must consist of alphanumerics, '-', '_' or '.'"),
            (".", "must not be '.'"),
            ("..", "must not be '..'"),
            ("..data", "must not start with '..'"),
        ];
        for (key, why) in bad {
            assert_eq!(config_key(key), Err(why.to_owned()), "{key}");
        }
        assert!(config_key(&"a".repeat(253)).is_ok());
        assert!(config_key(&"a".repeat(254)).is_err());
    }

    proptest! {
        #[test]
        fn valid_labels_are_accepted(s in "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?") {
            prop_assert!(dns1123_label(&s).is_ok());
        }

        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = (dns1123_label(&s), dns1123_subdomain(&s), port_name(&s), label_key(&s), label_value(&s));
            let _ = config_key(&s);
        }
    }
}
