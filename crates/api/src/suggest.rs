//! "Did you mean" suggestions for misspelled field names and values.

/// The closest candidate to `given`, as a help line, when one is close enough to be a likely typo.
pub fn did_you_mean<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    closest(given, candidates).map(|c| format!("did you mean {c:?}?"))
}

/// Candidates compared at most, so that thousands of misspellings among thousands of names cost
/// time linear in the misspellings.
const MAX_CANDIDATES: usize = 1_000;

/// The closest candidate, if any is plausibly what was meant (among the first [`MAX_CANDIDATES`]).
pub fn closest<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let folded = fold(given);
    let mut best: Option<(f64, &str)> = None;
    for candidate in candidates.into_iter().take(MAX_CANDIDATES) {
        // Same letters, other case or separators (`container_port`, `ContainerPort`).
        if fold(candidate) == folded {
            return Some(candidate);
        }
        let score = strsim::jaro_winkler(&given.to_ascii_lowercase(), &candidate.to_ascii_lowercase());
        let edits = strsim::damerau_levenshtein(&folded, &fold(candidate));
        let close =
            score >= 0.88 || (edits <= 2 && candidate.len() > 3) || (edits <= 1 && candidate.len() > 1);
        if close && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, c)| c)
}

fn fold(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_typos_and_spellings() {
        let fields = ["containers", "replicas", "serviceAccountName", "volumes", "labels"];
        assert_eq!(closest("contaners", fields), Some("containers"));
        assert_eq!(closest("replica", fields), Some("replicas"));
        assert_eq!(closest("service_account_name", fields), Some("serviceAccountName"));
        assert_eq!(closest("lables", fields), Some("labels"));
        assert_eq!(closest("image", fields), None);
        assert_eq!(closest("x", fields), None);
    }
}
