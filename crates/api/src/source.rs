//! Source files and positions in them.

use std::fmt;
use std::sync::Arc;

/// The text of one input (a file, or standard input) and the name to show for it.
#[derive(Debug)]
pub struct SourceFile {
    name: String,
    text: Arc<str>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Arc<Self> {
        Arc::new(Self { name: name.into(), text: text.into() })
    }

    /// The name shown in messages: the path as given, or `<stdin>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn text(&self) -> &Arc<str> {
        &self.text
    }
}

/// A place in a source: 1-based line and column (in characters), and the byte range it covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Loc {
    pub line: u32,
    pub column: u32,
    pub offset: usize,
    pub len: usize,
}

impl Loc {
    /// The location of a byte offset in `text`, covering `len` bytes.
    pub fn from_offset(text: &str, offset: usize, len: usize) -> Self {
        let offset = floor_char_boundary(text, offset.min(text.len()));
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = text[line_start..offset].chars().count() + 1;
        Self { line: to_u32(line), column: to_u32(column), offset, len }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "a: 1\nbé: 2\n";
        assert_eq!(Loc::from_offset(text, 0, 1), Loc { line: 1, column: 1, offset: 0, len: 1 });
        let two = text.find('2').unwrap();
        assert_eq!(Loc::from_offset(text, two, 1).line, 2);
        assert_eq!(Loc::from_offset(text, two, 1).column, 5);
        // past the end or inside a character: clamped, never a panic
        assert_eq!(Loc::from_offset(text, 999, 0).line, 3);
        assert_eq!(Loc::from_offset(text, 7, 0).column, 2);
    }
}
