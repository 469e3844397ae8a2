//! Problems found in the input: each names its file, line, column and field, and renders as a
//! miette diagnostic with a snippet of the source.

use crate::path::FieldPath;
use crate::source::{Loc, SourceFile};
use miette::{Diagnostic, LabeledSpan, SourceCode};
use std::fmt;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Warning,
    Error,
}

/// One problem in one place.
#[derive(Clone, Debug)]
pub struct Problem {
    pub severity: Severity,
    pub message: String,
    /// The field, when the problem is about one.
    pub path: Option<FieldPath>,
    pub source: Option<Arc<SourceFile>>,
    pub loc: Option<Loc>,
    pub help: Option<String>,
}

impl Problem {
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            message: message.into(),
            path: None,
            source: None,
            loc: None,
            help: None,
        }
    }

    pub fn warning(message: impl Into<String>) -> Self {
        Self { severity: Severity::Warning, ..Self::error(message) }
    }

    pub fn at(mut self, source: &Arc<SourceFile>, loc: Option<Loc>) -> Self {
        self.source = Some(source.clone());
        self.loc = loc;
        self
    }

    pub fn field(mut self, path: FieldPath) -> Self {
        self.path = (!path.is_root()).then_some(path);
        self
    }

    pub fn help(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `file:line:column` (or as much of it as is known).
    pub fn location(&self) -> Option<String> {
        let file = self.source.as_ref()?.name();
        Some(match self.loc {
            Some(loc) => format!("{file}:{}:{}", loc.line, loc.column),
            None => file.to_owned(),
        })
    }
}

/// `file:line:col: field.path: message`, one line, as compilers print.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(location) = self.location() {
            write!(f, "{location}: ")?;
        }
        if let Some(path) = &self.path {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

impl Diagnostic for Problem {
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.loc?;
        self.source.as_ref().map(|s| s.as_ref() as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let loc = self.loc?;
        let label = self.path.as_ref().map(ToString::to_string);
        Some(Box::new(std::iter::once(LabeledSpan::new(label, loc.offset, loc.len.max(1)))))
    }
}

/// Snippets read only the lines they show: the span's line is found in the file's line index,
/// and miette's own reading runs from a line before the first context line (never from the start
/// of the file), so drawing every problem of a file costs a few lines each.
impl SourceCode for SourceFile {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let text = self.text().as_ref();
        if span.offset() > text.len() {
            // (miette's own reading can panic on such a span)
            return Err(miette::MietteError::OutOfBounds);
        }
        let lines = self.lines();
        // One line more than the context: miette's reading treats a span at the very start of
        // its input specially, so the window never starts at the span unless the text does.
        let first = lines.line_of(span.offset()).saturating_sub(context_lines_before + 1);
        let start = lines.line_start(first).unwrap_or(0);
        let within = miette::SourceSpan::new((span.offset() - start).into(), span.len());
        let contents = text[start..].read_span(&within, context_lines_before, context_lines_after)?;
        self.scanned(contents.data().len());
        let shown = miette::SourceSpan::new((contents.span().offset() + start).into(), contents.span().len());
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.name().to_owned(),
            contents.data(),
            shown,
            contents.line() + first,
            contents.column(),
            contents.line_count() + first,
        )))
    }
}

/// Problems in order of file, then position (stable: problems at one place keep their order).
pub fn sort(problems: &mut [Problem]) {
    fn key(p: &Problem) -> (Option<&str>, Option<usize>) {
        (p.source.as_ref().map(|s| s.name()), p.loc.map(|l| l.offset))
    }
    problems.sort_by(|a, b| key(a).cmp(&key(b)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use miette::SpanContents;

    fn parts(c: &dyn SpanContents<'_>) -> (Vec<u8>, usize, usize, usize, usize, usize) {
        (c.data().to_vec(), c.span().offset(), c.span().len(), c.line(), c.column(), c.line_count())
    }

    /// Every span of texts with every kind of line break, with 0 to 3 context lines: the
    /// indexed reading gives exactly what miette's reading from the start of the text gives.
    #[test]
    fn snippets_from_the_index_are_miettes_snippets() {
        let texts = ["", "a", "a: 1\nb: 2\n", "x\r\ny: é\r\n\r\nz\rw\n\nlast", "\n\n\r\r\n日本: 1\n  - q\n"];
        for text in texts {
            let file = SourceFile::new("t.yaml", text);
            for offset in 0..=text.len() + 1 {
                for len in 0..=text.len() + 1 - offset {
                    for context in 0..=3 {
                        let span = miette::SourceSpan::new(offset.into(), len);
                        let ours = file.read_span(&span, context, context).map(|c| parts(c.as_ref()));
                        if offset > text.len() {
                            assert!(ours.is_err(), "{text:?} at {offset}+{len}: past the end");
                            continue;
                        }
                        let theirs = text.read_span(&span, context, context).map(|c| parts(c.as_ref()));
                        match (ours, theirs) {
                            (Ok(a), Ok(b)) => assert_eq!(a, b, "{text:?} at {offset}+{len}, {context} lines"),
                            (Err(_), Err(_)) => {}
                            (a, b) => panic!("{text:?} at {offset}+{len}: {a:?} vs {b:?}"),
                        }
                    }
                }
            }
        }
    }
}
