//! Replays both fuzz corpora (`fuzz/corpus/render` and `fuzz/corpus/load`) through what the
//! `render` fuzz target does: load, validate, draw every diagnostic as the CLI does, and render
//! and print a valid set. Any panic fails the test, so every input that ever crashed a target
//! stays a regression test once it is added to a corpus.

#[path = "../../../fuzz/render_pipeline.rs"]
mod pipeline;

use pipeline::load_draw_render as replay;

#[test]
fn both_fuzz_corpora_load_draw_and_render_without_panics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut count = 0;
    for corpus in ["render", "load"] {
        let mut entries: Vec<_> = std::fs::read_dir(root.join(corpus))
            .expect("the fuzz corpus exists")
            .map(|e| e.expect("a corpus entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let bytes = std::fs::read(&path).expect("a readable corpus file");
            if let Ok(text) = std::str::from_utf8(&bytes) {
                replay(text);
            }
            count += 1;
        }
    }
    assert!(count >= 40, "the corpora have {count} inputs");
}
