//! Printing problems: a miette report per problem, then a count.

use miette::{GraphicalReportHandler, GraphicalTheme};
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
        if handler.render_report(&mut out, problem).is_ok() {
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
