//! Printing problems: a miette report per problem, then a count.

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme};
use std::io::IsTerminal;
use stead_api::{Problem, Severity};

/// Prints every problem to standard error; returns the number of errors.
pub fn report(problems: &[Problem]) -> usize {
    let theme = if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_context_lines(2);
    for problem in problems {
        let mut out = String::new();
        // The one-line form first: greppable, and what editors jump to.
        out.push_str(&format!("{}: {problem}\n", severity(problem.severity)));
        if handler.render_report(&mut out, &Snippet(problem)).is_ok() {
            eprint!("{out}");
        } else {
            eprintln!("{problem}");
        }
    }
    let errors = problems.iter().filter(|p| p.is_error()).count();
    let warnings = problems.len() - errors;
    if !problems.is_empty() {
        eprintln!("{}, {}", plural(errors, "error"), plural(warnings, "warning"));
    }
    errors
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") }
}

/// A problem as miette draws it under its one-line form: the message alone, with the snippet.
#[derive(Debug)]
struct Snippet<'a>(&'a Problem);

impl std::fmt::Display for Snippet<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for Snippet<'_> {}

impl miette::Diagnostic for Snippet<'_> {
    fn severity(&self) -> Option<miette::Severity> {
        Diagnostic::severity(self.0)
    }
    fn help<'b>(&'b self) -> Option<Box<dyn std::fmt::Display + 'b>> {
        Diagnostic::help(self.0)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Diagnostic::source_code(self.0)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        Diagnostic::labels(self.0)
    }
}
