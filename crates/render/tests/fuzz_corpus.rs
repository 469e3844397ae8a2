//! Replays both fuzz corpora (`fuzz/corpus/render` and `fuzz/corpus/load`) through what the
//! `render` fuzz target does: load, validate, draw every diagnostic as the CLI does, and render
//! and print a valid set. Any panic fails the test, so every input that ever crashed a target
//! stays a regression test once it is added to a corpus.

use miette::{GraphicalReportHandler, GraphicalTheme};
use stead_render::{Format, RenderOptions, render_all, to_string};

fn replay(text: &str) {
    let loaded = stead_api::load_str("fuzz.yaml", text);
    let mut problems = loaded.problems;
    problems.extend(stead_api::validate(&loaded.documents));
    let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor()).with_context_lines(2);
    for problem in &problems {
        let mut out = format!("{problem}\n");
        handler.render_report(&mut out, problem).expect("a problem draws");
    }
    if problems.iter().any(stead_api::Problem::is_error) {
        return;
    }
    let manifests: Vec<_> = loaded.documents.into_iter().map(|d| d.manifest).collect();
    let rendered = render_all(&manifests, &RenderOptions::default());
    let objects: Vec<_> =
        rendered.objects.iter().map(|m| m.to_json().expect("a rendered object serializes")).collect();
    for format in [Format::Yaml, Format::Json] {
        to_string(&objects, format).expect("rendered objects print");
    }
}

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
