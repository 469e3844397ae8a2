//! What the `render` fuzz target does with one input, shared with the corpus replay test
//! (`crates/render/tests/fuzz_corpus.rs`): load, validate, draw every diagnostic as the CLI draws
//! it (miette's graphical handler, two context lines), and, when nothing is an error, render and
//! print the objects. Problems are fine, panics are not.

use miette::{GraphicalReportHandler, GraphicalTheme};
use stead_render::{Format, RenderOptions, render_all, to_string};

pub fn load_draw_render(text: &str) {
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
