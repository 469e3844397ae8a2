//! Resource quantities where Kubernetes checks them: containers' requests and limits, claims'
//! storage, emptyDir size limits. A quantity must parse and must not be negative; a request
//! must not exceed its limit; a claim's storage must be more than zero.

use super::Findings;
use crate::path::FieldPath;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Text;
use std::collections::BTreeMap;
use stead_quantity::Quantity;

/// Checks one quantity, which must not be negative; returns it when it parses.
pub fn quantity(f: &mut Findings, path: FieldPath, what: &str, text: &str) -> Option<Quantity> {
    let parsed = if text.trim() == text { Quantity::parse(text) } else { Quantity::parse("") };
    let q = match parsed {
        Ok(q) => q,
        Err(stead_quantity::QuantityError::TooLarge(_)) => {
            f.error(path, format!("invalid {what} {text:?}: too large"));
            return None;
        }
        Err(_) => {
            f.error(path, format!("invalid {what} {text:?}: not a quantity"))
                .with_help("a number with an optional suffix such as m, Ki, Mi, Gi, k, M, G or e3");
            return None;
        }
    };
    if q.is_negative() {
        f.error(path, format!("invalid {what} {text:?}: must not be negative"));
    }
    Some(q)
}

/// Checks requests and limits (of a container or a claim): each quantity, and each request
/// against the limit of the same resource.
pub fn requirements(
    f: &mut Findings,
    path: &FieldPath,
    requests: Option<&BTreeMap<String, Text>>,
    limits: Option<&BTreeMap<String, Text>>,
) {
    let requested = each(f, path, "requests", requests);
    let limited = each(f, path, "limits", limits);
    for (name, request) in &requested {
        if let Some(limit) = limited.get(name)
            && request.compare(limit) == Some(std::cmp::Ordering::Greater)
        {
            let text = |m: Option<&BTreeMap<String, Text>>| m.and_then(|m| m.get(*name)).map(|q| q.0.clone());
            let (request, limit) = (text(requests).unwrap_or_default(), text(limits).unwrap_or_default());
            f.error(
                path.key("requests").key(*name),
                format!("{name} request {request:?} is more than its limit {limit:?}"),
            );
        }
    }
}

/// Checks every quantity of a requests or limits map; returns those that parse.
fn each<'a>(
    f: &mut Findings,
    path: &FieldPath,
    field: &str,
    map: Option<&'a BTreeMap<String, Text>>,
) -> BTreeMap<&'a str, Quantity> {
    let mut parsed = BTreeMap::new();
    for (name, text) in map.into_iter().flatten() {
        let what = format!("{name} {}", field.trim_end_matches('s'));
        if let Some(q) = quantity(f, path.key(field).key(name.clone()), &what, &text.0) {
            parsed.insert(name.as_str(), q);
        }
    }
    parsed
}
