//! Replays the fuzz corpus (`fuzz/corpus/load`) through the loader and validator, as the fuzz
//! target does: any panic fails the test.

#[test]
fn the_fuzz_corpus_loads_without_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/load");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("the fuzz corpus exists") {
        let path = entry.expect("a corpus entry").path();
        let bytes = std::fs::read(&path).expect("a readable corpus file");
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let loaded = stead_api::load_str("fuzz.yaml", text);
            let problems = stead_api::validate(&loaded.documents);
            for p in loaded.problems.iter().chain(&problems) {
                let _ = p.to_string();
            }
        }
        count += 1;
    }
    assert!(count >= 10, "the corpus has {count} inputs");
}
