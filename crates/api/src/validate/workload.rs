//! Rules shared by the workloads that roll out pods: StatefulSets and StatefulServices.

use super::Findings;
use crate::path::FieldPath;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// `maxUnavailable` of a rolling update: at least 1, or a percentage between 1% and 100%.
pub(super) fn max_unavailable(f: &mut Findings, path: FieldPath, value: &IntOrString) {
    match value {
        IntOrString::Int(n) if *n < 1 => {
            f.error(path, format!("maxUnavailable must be at least 1 (is {n})"));
        }
        IntOrString::String(s) => {
            let pct = s.strip_suffix('%').and_then(|n| n.parse::<u32>().ok());
            match pct {
                Some(p) if (1..=100).contains(&p) => {}
                _ => {
                    f.error(path, format!("invalid maxUnavailable {s:?}: must be a number or a percentage between 1% and 100%"));
                }
            }
        }
        IntOrString::Int(_) => {}
    }
}
