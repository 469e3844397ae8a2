//! Source files and positions in them.
//!
//! A file's [`LineIndex`] is built once, in one pass over its text; every position (a YAML node's
//! line and column, a diagnostic's snippet) is then found by binary search, so placing all of a
//! file's nodes and problems costs time linear in its length.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// The text of one input (a file, or standard input) and the name to show for it.
pub struct SourceFile {
    name: String,
    text: Arc<str>,
    lines: OnceLock<LineIndex>,
    scanned: AtomicUsize,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            text: text.into(),
            lines: OnceLock::new(),
            scanned: AtomicUsize::new(0),
        })
    }

    /// The name shown in messages: the path as given, or `<stdin>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn text(&self) -> &Arc<str> {
        &self.text
    }

    /// Where the lines of the text start, built on first use.
    pub fn lines(&self) -> &LineIndex {
        self.lines.get_or_init(|| {
            self.scanned(self.text.len());
            LineIndex::new(&self.text)
        })
    }

    /// The location of a byte offset, covering `len` bytes.
    pub fn loc(&self, offset: usize, len: usize) -> Loc {
        self.lines().loc(&self.text, offset, len)
    }

    /// Bytes of the text read so far to place positions and draw snippets: the index's one pass,
    /// plus each snippet's lines. Loading stays linear while this stays near the text's length.
    pub fn scanned_bytes(&self) -> usize {
        self.scanned.load(Ordering::Relaxed)
    }

    pub(crate) fn scanned(&self, bytes: usize) {
        self.scanned.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl fmt::Debug for SourceFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceFile").field("name", &self.name).field("len", &self.text.len()).finish()
    }
}

/// The start of every line of a text, and where its characters wider than one byte are, so
/// that a byte offset becomes a line and a column (in characters) by binary search.
///
/// Lines end at `\n`, `\r\n` or a lone `\r`, as in YAML and in miette's snippets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineIndex {
    /// The byte offset at which each line starts; the first is 0.
    starts: Vec<usize>,
    /// The byte offset of each character longer than one byte, with the running total of the
    /// bytes beyond the first that such characters take, up to and including this one.
    wide: Vec<(usize, usize)>,
}

impl LineIndex {
    /// Indexes `text` in one pass.
    pub fn new(text: &str) -> Self {
        let bytes = text.as_bytes();
        let mut starts = vec![0];
        let mut wide = Vec::new();
        let mut extra = 0;
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'\n' => starts.push(i + 1),
                b'\r' if bytes.get(i + 1) != Some(&b'\n') => starts.push(i + 1),
                // The first byte of a multi-byte character says its length.
                0xC0.. => {
                    extra += if b >= 0xF0 {
                        3
                    } else if b >= 0xE0 {
                        2
                    } else {
                        1
                    };
                    wide.push((i, extra));
                }
                _ => {}
            }
        }
        Self { starts, wide }
    }

    /// How many lines the text has (a text ending in a line break has an empty last line).
    pub fn line_count(&self) -> usize {
        self.starts.len()
    }

    /// The 0-based line holding byte `offset`.
    pub fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset).saturating_sub(1)
    }

    /// The byte offset at which 0-based `line` starts, if the text has that line.
    pub fn line_start(&self, line: usize) -> Option<usize> {
        self.starts.get(line).copied()
    }

    /// The location of byte `offset` of `text` (the text this index was built from), covering
    /// `len` bytes. Offsets past the end or inside a character are moved back, never a panic.
    pub fn loc(&self, text: &str, offset: usize, len: usize) -> Loc {
        let offset = floor_char_boundary(text, offset.min(text.len()));
        let line = self.line_of(offset);
        let line_start = self.starts.get(line).copied().unwrap_or(0);
        let column = self.chars_between(line_start, offset) + 1;
        Loc { line: to_u32(line + 1), column: to_u32(column), offset, len }
    }

    /// The byte offset of 1-based `line` and `column` (in characters), clamped to the text.
    pub fn offset_of(&self, text: &str, line: u64, column: u64) -> usize {
        let Some(start) = usize::try_from(line).ok().and_then(|l| self.line_start(l.checked_sub(1)?)) else {
            return text.len();
        };
        let end = usize::try_from(line).ok().and_then(|l| self.line_start(l)).unwrap_or(text.len());
        let col = usize::try_from(column.saturating_sub(1)).unwrap_or(usize::MAX);
        start + text[start..end].char_indices().nth(col).map_or(end - start, |(b, _)| b)
    }

    /// The number of characters in `text[from..to]`, both character boundaries.
    fn chars_between(&self, from: usize, to: usize) -> usize {
        (to - from) - (self.extra_before(to) - self.extra_before(from))
    }

    /// The bytes beyond the first of the wide characters that start before `offset`.
    fn extra_before(&self, offset: usize) -> usize {
        match self.wide.partition_point(|&(at, _)| at < offset) {
            0 => 0,
            n => self.wide[n - 1].1,
        }
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
    use proptest::prelude::*;

    fn loc(text: &str, offset: usize, len: usize) -> Loc {
        LineIndex::new(text).loc(text, offset, len)
    }

    /// Line and column by counting from the start, as the index must agree with.
    fn counted(text: &str, offset: usize) -> (u32, u32) {
        let offset = floor_char_boundary(text, offset.min(text.len()));
        let (mut line, mut column) = (1, 1);
        for (i, c) in text[..offset].char_indices() {
            if c == '\n' || (c == '\r' && text.as_bytes().get(i + 1) != Some(&b'\n')) {
                (line, column) = (line + 1, 1);
            } else {
                column += 1;
            }
        }
        (line, column)
    }

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "a: 1\nbé: 2\n";
        assert_eq!(loc(text, 0, 1), Loc { line: 1, column: 1, offset: 0, len: 1 });
        let two = text.find('2').unwrap();
        assert_eq!(loc(text, two, 1).line, 2);
        assert_eq!(loc(text, two, 1).column, 5);
        // past the end or inside a character: clamped, never a panic
        assert_eq!(loc(text, 999, 0).line, 3);
        assert_eq!(loc(text, 7, 0).column, 2);
        // every kind of line break
        assert_eq!((loc("a\r\nb", 3, 1).line, loc("a\r\nb", 3, 1).column), (2, 1));
        assert_eq!((loc("a\rb", 2, 1).line, loc("a\rb", 2, 1).column), (2, 1));
    }

    #[test]
    fn every_offset_of_a_mixed_text_agrees_with_counting() {
        let text = "a: é\r\nb:\r  - \"日本\"\n\n  - 🦀x\r\n\rlast";
        let index = LineIndex::new(text);
        for offset in 0..=text.len() + 2 {
            let l = index.loc(text, offset, 0);
            assert_eq!((l.line, l.column), counted(text, offset), "offset {offset}");
            if text.is_char_boundary(offset) || offset > text.len() {
                let back = index.offset_of(text, u64::from(l.line), u64::from(l.column));
                assert_eq!(back, offset.min(text.len()), "offset {offset} from {l}");
            }
        }
    }

    proptest! {
        #[test]
        fn the_index_agrees_with_counting(text in "[a-c é日🦀\r\n]{0,40}", offset in 0usize..200) {
            let l = loc(&text, offset, 0);
            prop_assert_eq!((l.line, l.column), counted(&text, offset));
        }
    }
}
