//! Any bytes through the loader and the validator: problems are fine, panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let loaded = stead_api::load_str("fuzz.yaml", text);
        let problems = stead_api::validate(&loaded.documents);
        for p in loaded.problems.iter().chain(&problems) {
            let _ = p.to_string();
        }
    }
});
