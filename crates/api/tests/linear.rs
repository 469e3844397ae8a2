//! Loading, validating and drawing every problem of a file reads the file's text a bounded
//! number of times, however many nodes and problems it has.
//!
//! Before the line index, placing each YAML node counted newlines from the start of the file
//! and drawing each snippet scanned from the start again: for this file (about 550 KB, 44,000
//! nodes, 4,000 problems) that is some 13 GB read, where the index reads it once.
//! The bound is on bytes read, not on time, so the test is as steady on a slow machine.

use miette::{GraphicalReportHandler, GraphicalTheme};
use stead_api::{SourceFile, load_source, validate};

const SERVICES: usize = 2_000;

fn service(i: usize) -> String {
    format!(
        "apiVersion: cloudstate.io/v1alpha1\nkind: StatefulService\nmetadata:\n  name: cart-{i}\n  labels:\n    app: cart\nspec:\n  replicas: 2\n  containers:\n  - image: cart:1\n    ports:\n    - containerPort: 70000\n    env:\n    - name: A\n      value: b\n  - name: Bad_{i}\n    image: ship:1\n"
    )
}

#[test]
fn placing_and_drawing_every_problem_reads_the_text_about_once() {
    let text: String = (0..SERVICES).map(service).collect::<Vec<_>>().join("---\n");
    let file = SourceFile::new("many.yaml", text.as_str());
    let loaded = load_source(file.clone());
    assert_eq!(loaded.documents.len(), SERVICES, "{:?}", loaded.problems.first().map(ToString::to_string));
    let mut problems = loaded.problems;
    problems.extend(validate(&loaded.documents));
    assert_eq!(problems.len(), 2 * SERVICES, "a bad port and a bad name in each service");

    // The last service's problems are placed exactly (lines counted from the start).
    let last = text.rfind("containerPort: 70000").unwrap();
    let line = text[..last].matches('\n').count() + 1;
    let found = problems.iter().filter_map(|p| p.loc).map(|l| l.line as usize).max().unwrap();
    assert_eq!(found, line + 4, "the last problem is the last service's container name");

    let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor()).with_context_lines(2);
    let mut drawn = String::new();
    for problem in &problems {
        handler.render_report(&mut drawn, problem).unwrap();
    }
    assert!(drawn.contains(&format!("many.yaml:{line}:")), "snippets name their line");

    // One pass to index the file, and a few short lines per snippet drawn.
    let per_snippet = 1024;
    let bound = text.len() + problems.len() * per_snippet;
    assert!(
        file.scanned_bytes() <= bound,
        "{} bytes read to place and draw {} problems in {} bytes of text (bound {bound})",
        file.scanned_bytes(),
        problems.len(),
        text.len()
    );
    assert!(file.scanned_bytes() >= text.len(), "the index read the text");
}
