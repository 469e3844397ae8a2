//! Metadata helpers shared by the planners: owner references, label selectors, int-or-percent
//! values and resource quantities.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Problems with a desired object that make planning impossible.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetaError {
    #[error("{field} is not an integer or a percentage: {value:?}")]
    IntOrPercent { field: &'static str, value: String },
    #[error("{kind} has no name")]
    NoName { kind: &'static str },
}

/// The controller reference Kubernetes' controllers put on what they create
/// (`metav1.NewControllerRef`): `controller` and `blockOwnerDeletion` both true.
pub fn controller_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The controller reference of an object, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.as_deref().unwrap_or_default().iter().find(|r| r.controller == Some(true))
}

/// Whether `meta` is controlled by the object with this uid. An owner without a uid (not yet
/// stored) is matched by kind and name instead, so that plans over unsaved fixtures still work.
pub fn is_controlled_by(meta: &ObjectMeta, kind: &str, owner: &ObjectMeta) -> bool {
    match controller_of(meta) {
        None => false,
        Some(r) => match owner.uid.as_deref() {
            Some(uid) if !uid.is_empty() => r.uid == uid,
            _ => r.kind == kind && Some(r.name.as_str()) == owner.name.as_deref(),
        },
    }
}

/// `metav1.LabelSelectorAsSelector(...).Matches(labels)`: matchLabels and matchExpressions
/// (In, NotIn, Exists, DoesNotExist), all of which must hold. An empty selector matches
/// everything; an unknown operator matches nothing.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .as_ref()
        .map(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)))
        .unwrap_or(true);
    let by_expressions = selector.match_expressions.as_deref().unwrap_or_default().iter().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    by_labels && by_expressions
}

/// A Service's selector (a plain map; empty selects nothing, as Services mean it).
pub fn map_selector_matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// `intstr.GetScaledValueFromIntOrPercent`: an int as is, or `total * p / 100` rounded up or
/// down.
pub fn scaled_value(
    v: &IntOrString,
    total: i32,
    round_up: bool,
    field: &'static str,
) -> Result<i32, MetaError> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let bad = || MetaError::IntOrPercent { field, value: s.clone() };
            let p: i64 = s.strip_suffix('%').ok_or_else(bad)?.parse().map_err(|_| bad())?;
            let num = i64::from(total) * p;
            let v = if round_up { (num + 99).div_euclid(100) } else { num.div_euclid(100) };
            i32::try_from(v).map_err(|_| bad())
        }
    }
}

/// A resource quantity ("1Gi", "500M", "1.5e3", "100m") in thousandths of its unit, or None if
/// it does not parse or overflows. Enough to compare storage requests.
pub fn quantity_millis(q: &str) -> Option<i128> {
    let q = q.trim();
    let split =
        q.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let negative = int_part.starts_with('-');
    let int_part = int_part.trim_start_matches(['+', '-']);
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let digits = format!("{int_part}{frac_part}");
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mantissa: i128 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
    let frac_len = u32::try_from(frac_part.len()).ok()?;
    // value = mantissa * 10^-frac_len * multiplier; in millis multiply by 1000.
    let (num, den): (i128, i128) = match suffix {
        "" => (1000, 1),
        "m" => (1, 1),
        "k" => (1_000_000, 1),
        "M" => (1_000_000_000, 1),
        "G" => (1_000_000_000_000, 1),
        "T" => (1_000_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000_000, 1),
        "Ki" => (1000 << 10, 1),
        "Mi" => (1000 << 20, 1),
        "Gi" => (1000 << 30, 1),
        "Ti" => (1000 << 40, 1),
        "Pi" => (1000 << 50, 1),
        "Ei" => (1000 << 60, 1),
        s if s.starts_with(['e', 'E']) => {
            let exp: i32 = s[1..].parse().ok()?;
            if exp >= 0 {
                (1000i128.checked_mul(10i128.checked_pow(u32::try_from(exp).ok()?)?)?, 1)
            } else {
                (1000, 10i128.checked_pow(exp.unsigned_abs())?)
            }
        }
        _ => return None,
    };
    let value = mantissa.checked_mul(num)? / 10i128.checked_pow(frac_len)?.checked_mul(den)?;
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(quantity_millis("1Gi"), Some(1000 << 30));
        assert_eq!(quantity_millis("1.5Gi"), Some(1500 << 30));
        assert_eq!(quantity_millis("500M"), Some(500_000_000_000));
        assert_eq!(quantity_millis("100m"), Some(100));
        assert_eq!(quantity_millis("1e3"), Some(1_000_000));
        assert_eq!(quantity_millis("2"), Some(2000));
        assert_eq!(quantity_millis("abc"), None);
        assert_eq!(quantity_millis("1Zi"), None);
        assert!(quantity_millis("2Gi") > quantity_millis("1G"));
    }

    #[test]
    fn percentages_round_as_kubernetes() {
        let p = IntOrString::String("25%".into());
        assert_eq!(scaled_value(&p, 10, true, "f"), Ok(3));
        assert_eq!(scaled_value(&p, 10, false, "f"), Ok(2));
        assert_eq!(scaled_value(&IntOrString::Int(4), 10, false, "f"), Ok(4));
        assert!(scaled_value(&IntOrString::String("x".into()), 10, false, "f").is_err());
    }
}
