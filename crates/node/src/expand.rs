//! The kubelet's `$(VAR)` expansion, as in Kubernetes' `third_party/forked/golang/expansion`.
//!
//! - `$(NAME)` is replaced by the value of `NAME` when a source defines it, and left as-is otherwise.
//! - `$$` is an escaped `$`: `$$(NAME)` yields the literal `$(NAME)`.
//! - `$(` without a closing `)` is left as-is, and so is `$` followed by anything else.
//!
//! Expansion never fails. One deliberate difference: Go copies the single *byte* after a lone `$`
//! through a rune conversion, which mangles a non-ASCII character there; we keep the character whole.

/// Expands `$(VAR)` references in `input`; `lookup` returns `None` for an undefined variable.
pub fn expand<'a>(input: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let mut chars = after.chars();
        match chars.next() {
            // A trailing `$` is copied as-is.
            None => {
                out.push('$');
                rest = after;
            }
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('(') => match after[1..].find(')') {
                Some(close) => {
                    let name = &after[1..1 + close];
                    match lookup(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 2..];
                }
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            Some(c) => {
                out.push('$');
                out.push(c);
                rest = chars.as_str();
            }
        }
    }
    out.push_str(rest);
    out
}

/// Expands every string of `items` (a container's `command` or `args`) against `lookup`.
pub fn expand_all<'a>(items: &[String], lookup: impl Fn(&str) -> Option<&'a str> + Copy) -> Vec<String> {
    items.iter().map(|s| expand(s, lookup)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn vars() -> BTreeMap<&'static str, &'static str> {
        BTreeMap::from([("VAR_A", "A"), ("VAR_B", "B"), ("VAR_C", "C"), ("VAR_EMPTY", ""), ("POD", "web-0")])
    }

    fn run(input: &str) -> String {
        let v = vars();
        expand(input, |k| v.get(k).copied())
    }

    /// Cases taken from Kubernetes' expand_test.go.
    #[test]
    fn table_from_kubernetes() {
        let cases = [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-$(VAR_B)-$(VAR_C)", "A-B-C"),
            ("f000-$$VAR_A", "f000-$VAR_A"),
            ("foo\\$(VAR_C)bar", "foo\\Cbar"),
            ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
            ("foo\\\\\\\\$(VAR_A)bar", "foo\\\\\\\\Abar"),
            ("$(VAR_A)$(VAR_B)", "AB"),
            ("$(VAR_A)$(VAR_B)$(VAR_C)", "ABC"),
            ("$(VAR_A)$(VAR_EMPTY)$(VAR_B)", "AB"),
            ("$(VAR_EMPTY)", ""),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
            ("$$$(VAR_A)", "$A"),
            ("$$(", "$("),
            ("$(", "$("),
            ("$(VAR_A", "$(VAR_A"),
            ("$(UNKNOWN)", "$(UNKNOWN)"),
            ("$()", "$()"),
            ("$", "$"),
            ("$VAR_A", "$VAR_A"),
            ("$$", "$"),
            ("$$$", "$$"),
            ("$)", "$)"),
            ("$(VAR_A))", "A)"),
            ("((($(VAR_A)))", "(((A))"),
            ("foo$(VAR_A)bar$(UNKNOWN)baz$(POD)", "fooAbar$(UNKNOWN)bazweb-0"),
            ("", ""),
            ("no references", "no references"),
            ("$é", "$é"),
            ("$(é)", "$(é)"),
            ("ünï$(VAR_A)cødé", "ünïAcødé"),
        ];
        for (input, want) in cases {
            assert_eq!(run(input), want, "input {input:?}");
        }
    }

    #[test]
    fn expand_all_keeps_order() {
        let v = vars();
        let got = expand_all(&["echo".into(), "$(POD)".into(), "$$(POD)".into()], |k| v.get(k).copied());
        assert_eq!(got, ["echo", "web-0", "$(POD)"]);
    }

    proptest! {
        /// Without any `$`, expansion is the identity.
        #[test]
        fn identity_without_dollar(s in "[^$]*") {
            prop_assert_eq!(run(&s), s);
        }

        /// With no variable defined, text without `$$` comes back unchanged.
        #[test]
        fn undefined_left_as_is(s in "([a-z()]|\\$[a-z(])*") {
            prop_assume!(!s.contains("$$"));
            prop_assert_eq!(expand(&s, |_| None), s);
        }

        /// Escaping: `$$` followed by anything yields a single `$` and the rest verbatim.
        #[test]
        fn escape_yields_literal(s in "[a-zA-Z_()]*") {
            prop_assert_eq!(run(&format!("$${s}")), format!("${s}"));
        }

        /// Any input is handled without panicking, and a defined reference is replaced.
        #[test]
        fn never_panics_and_replaces(prefix in "\\PC*", suffix in "[^$]*") {
            let _ = run(&prefix);
            let got = run(&format!("$(VAR_A){suffix}"));
            prop_assert_eq!(got, format!("A{suffix}"));
        }
    }
}
