//! Decode-only HPACK (RFC 7541) for passive metering of forwarded HTTP/2.
//!
//! The HTTP/2 passthrough forwards frames verbatim and reads the response direction on the side to
//! learn each response's `:status`. Header blocks refer to a dynamic table that the upstream's encoder
//! builds up block after block, so a passive reader has to decode every block, in order, to keep its
//! copy of that table in step. [`Decoder`] does that and nothing more: no encoder, no validation of
//! header names or values (the endpoints do that; the proxy only looks).
//!
//! It refuses: index 0 and indices past the table; a dynamic table size update above the configured
//! cap or after a field; integers above 2^28 or with more than four continuation bytes; strings that
//! run past the block; Huffman strings holding the end-of-string symbol, or padding longer than 7 bits
//! or not all ones.
//!
//! Architecture invariant: never allocates beyond `max_table_size` (plus a fixed per-entry overhead)
//! for the dynamic table and one reusable scratch buffer for Huffman strings; never panics on any
//! input.

use std::collections::VecDeque;
use std::sync::OnceLock;

/// The dynamic table's maximum size until a size update changes it (RFC 9113 section 6.5.2).
const DEFAULT_TABLE_SIZE: usize = 4_096;
/// The overhead counted in each dynamic table entry's size (RFC 7541 section 4.1).
const ENTRY_OVERHEAD: usize = 32;
/// The largest integer accepted: far beyond any real length, index or table size.
const MAX_INTEGER: u64 = 1 << 28;
/// Continuation bytes accepted after a full prefix (4 × 7 bits reach [`MAX_INTEGER`]).
const MAX_CONTINUATION_BYTES: u32 = 4;
/// Scratch capacity kept between blocks; a buffer grown larger by one huge Huffman string is freed
/// so an idle connection does not hold it.
const SCRATCH_KEEP: usize = 16 * 1024;

/// Why a header block could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HpackError {
    /// Index 0 names no entry (RFC 7541 section 6.1).
    #[error("header table index 0 is not valid")]
    IndexZero,
    /// The index is past the static table and the dynamic table's entries.
    #[error("header table index {index} is out of range (dynamic table has {dynamic} entries)")]
    IndexOutOfRange {
        /// The index in the block.
        index: usize,
        /// How many entries the dynamic table held.
        dynamic: usize,
    },
    /// A dynamic table size update above the decoder's cap.
    #[error("dynamic table size update to {size} exceeds the limit {limit}")]
    TableSizeTooLarge {
        /// The size in the block.
        size: usize,
        /// The decoder's cap (`max_table_size`).
        limit: usize,
    },
    /// A dynamic table size update after a header field (RFC 7541 section 4.2 allows it only at the
    /// start of a block).
    #[error("dynamic table size update to {size} after a header field")]
    LateTableSizeUpdate {
        /// The size in the block.
        size: usize,
    },
    /// The block ends inside an integer.
    #[error("header block ends inside the integer at byte {at}")]
    TruncatedInteger {
        /// Offset of the integer's first byte.
        at: usize,
    },
    /// An integer above 2^28 or with too many continuation bytes.
    #[error("integer at byte {at} exceeds 2^28")]
    IntegerOverflow {
        /// Offset of the integer's first byte.
        at: usize,
    },
    /// A string longer than what is left of the block.
    #[error("string of {len} bytes at byte {at} is truncated ({available} bytes left)")]
    TruncatedString {
        /// Offset of the string's length prefix.
        at: usize,
        /// The string's length.
        len: usize,
        /// Bytes left in the block after the length.
        available: usize,
    },
    /// A Huffman string holding the end-of-string symbol (RFC 7541 section 5.2).
    #[error("huffman string contains the end-of-string symbol")]
    HuffmanEos,
    /// Huffman padding longer than 7 bits.
    #[error("huffman padding of {bits} bits is longer than 7 bits")]
    HuffmanPaddingTooLong {
        /// The padding's length.
        bits: u32,
    },
    /// Huffman padding (or a final partial code) that is not the most significant bits of EOS.
    #[error("huffman padding of {bits} bits is not all ones")]
    HuffmanPaddingNotOnes {
        /// The padding's length.
        bits: u32,
    },
}

/// One dynamic table entry: name and value in one allocation.
struct Entry {
    data: Box<[u8]>,
    name_len: usize,
}

impl Entry {
    fn new(name: &[u8], value: &[u8]) -> Self {
        let mut data = Vec::with_capacity(name.len() + value.len());
        data.extend_from_slice(name);
        data.extend_from_slice(value);
        Entry { data: data.into_boxed_slice(), name_len: name.len() }
    }

    fn name(&self) -> &[u8] {
        self.data.get(..self.name_len).unwrap_or_default()
    }

    fn value(&self) -> &[u8] {
        self.data.get(self.name_len..).unwrap_or_default()
    }

    /// The size counted against the table's maximum (RFC 7541 section 4.1).
    fn size(&self) -> usize {
        self.data.len() + ENTRY_OVERHEAD
    }
}

/// Decodes the header blocks of one direction of one HTTP/2 connection, in order.
pub struct Decoder {
    /// Newest entry first: index 62 is `table[0]`.
    table: VecDeque<Entry>,
    /// Sum of the entries' sizes.
    size: usize,
    /// The table's current maximum size, set by size updates.
    max_size: usize,
    /// The largest size update accepted.
    limit: usize,
    /// Decoded Huffman strings of the field being decoded.
    scratch: Vec<u8>,
}

impl Decoder {
    /// `max_table_size`: the largest dynamic table size update this decoder accepts (a cap on
    /// memory). The table's maximum size starts at 4,096 (the protocol default) and follows the size
    /// updates in the blocks.
    pub fn new(max_table_size: usize) -> Self {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max_size: DEFAULT_TABLE_SIZE,
            limit: max_table_size,
            scratch: Vec::new(),
        }
    }

    /// Decodes one complete header block (HEADERS + CONTINUATION fragments already joined, padding
    /// and priority already removed), calling `field(name, value)` for each field in order, and
    /// updating the dynamic table. After an error the decoder's table is unreliable; the caller
    /// stops using it.
    pub fn decode(&mut self, block: &[u8], mut field: impl FnMut(&[u8], &[u8])) -> Result<(), HpackError> {
        let result = self.decode_fields(block, &mut field);
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
        result
    }

    fn decode_fields(
        &mut self,
        block: &[u8],
        field: &mut impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let mut pos = 0;
        let mut seen_field = false;
        while let Some(&first) = block.get(pos) {
            if first & 0x80 != 0 {
                // 1xxxxxxx: indexed field.
                let index = read_integer(block, &mut pos, 7)?;
                let (name, value) = lookup(&self.table, index)?;
                field(name, value);
            } else if first & 0x40 != 0 {
                // 01xxxxxx: literal with incremental indexing.
                self.literal(block, &mut pos, 6, true, field)?;
            } else if first & 0x20 != 0 {
                // 001xxxxx: dynamic table size update.
                let size = read_integer(block, &mut pos, 5)?;
                if seen_field {
                    return Err(HpackError::LateTableSizeUpdate { size });
                }
                if size > self.limit {
                    return Err(HpackError::TableSizeTooLarge { size, limit: self.limit });
                }
                self.max_size = size;
                self.evict(0);
                continue;
            } else {
                // 0001xxxx never indexed, 0000xxxx without indexing: same layout, neither is stored.
                self.literal(block, &mut pos, 4, false, field)?;
            }
            seen_field = true;
        }
        Ok(())
    }

    /// Decodes a literal field whose first byte is at `pos`, with an index of `prefix_bits` bits
    /// (0 = literal name), and stores it in the dynamic table when `insert`.
    fn literal(
        &mut self,
        block: &[u8],
        pos: &mut usize,
        prefix_bits: u32,
        insert: bool,
        field: &mut impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let index = read_integer(block, pos, prefix_bits)?;
        self.scratch.clear();
        let literal_name = if index == 0 { Some(read_string(block, pos, &mut self.scratch)?) } else { None };
        let value = read_string(block, pos, &mut self.scratch)?;
        let name = match literal_name {
            Some(name) => name.get(block, &self.scratch),
            None => lookup(&self.table, index)?.0,
        };
        let value = value.get(block, &self.scratch);
        field(name, value);
        if insert {
            let size = name.len() + value.len() + ENTRY_OVERHEAD;
            // An entry larger than the maximum empties the table and is not stored (section 4.4).
            let entry = (size <= self.max_size).then(|| Entry::new(name, value));
            self.evict(size);
            if let Some(entry) = entry {
                self.size += size;
                self.table.push_front(entry);
            }
        }
        Ok(())
    }

    /// Evicts the oldest entries until `incoming` more bytes fit under the maximum size.
    fn evict(&mut self, incoming: usize) {
        while self.size.saturating_add(incoming) > self.max_size {
            match self.table.pop_back() {
                Some(entry) => self.size = self.size.saturating_sub(entry.size()),
                None => break,
            }
        }
    }
}

/// The name and value at `index` in the static table (1..=61) followed by the dynamic table.
fn lookup(table: &VecDeque<Entry>, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
    if index == 0 {
        return Err(HpackError::IndexZero);
    }
    if let Some(&(name, value)) = STATIC_TABLE.get(index - 1) {
        return Ok((name.as_bytes(), value.as_bytes()));
    }
    match table.get(index - 1 - STATIC_TABLE.len()) {
        Some(entry) => Ok((entry.name(), entry.value())),
        None => Err(HpackError::IndexOutOfRange { index, dynamic: table.len() }),
    }
}

/// Reads an integer with a `prefix_bits`-bit prefix (RFC 7541 section 5.1) starting at `pos`,
/// leaving `pos` after it.
fn read_integer(block: &[u8], pos: &mut usize, prefix_bits: u32) -> Result<usize, HpackError> {
    let at = *pos;
    let Some(&first) = block.get(at) else {
        return Err(HpackError::TruncatedInteger { at });
    };
    *pos = at + 1;
    let max_prefix = (1u8 << prefix_bits) - 1;
    let mut value = u64::from(first & max_prefix);
    if value < u64::from(max_prefix) {
        return usize::try_from(value).map_err(|_| HpackError::IntegerOverflow { at });
    }
    for shift in (0..MAX_CONTINUATION_BYTES).map(|i| 7 * i) {
        let Some(&byte) = block.get(*pos) else {
            return Err(HpackError::TruncatedInteger { at });
        };
        *pos += 1;
        value += u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            if value > MAX_INTEGER {
                return Err(HpackError::IntegerOverflow { at });
            }
            return usize::try_from(value).map_err(|_| HpackError::IntegerOverflow { at });
        }
    }
    Err(HpackError::IntegerOverflow { at })
}

/// Where a decoded string lives: raw strings stay in the block, Huffman strings go to the scratch.
#[derive(Clone, Copy)]
enum Str {
    Block(usize, usize),
    Scratch(usize, usize),
}

impl Str {
    fn get<'a>(self, block: &'a [u8], scratch: &'a [u8]) -> &'a [u8] {
        match self {
            Str::Block(start, end) => block.get(start..end),
            Str::Scratch(start, end) => scratch.get(start..end),
        }
        .unwrap_or_default()
    }
}

/// Reads a string literal (RFC 7541 section 5.2) starting at `pos`, leaving `pos` after it.
fn read_string(block: &[u8], pos: &mut usize, scratch: &mut Vec<u8>) -> Result<Str, HpackError> {
    let at = *pos;
    let huffman = block.get(at).is_some_and(|byte| byte & 0x80 != 0);
    let len = read_integer(block, pos, 7)?;
    let start = *pos;
    let available = block.len().saturating_sub(start);
    if len > available {
        return Err(HpackError::TruncatedString { at, len, available });
    }
    let end = start + len;
    *pos = end;
    if huffman {
        let from = scratch.len();
        huffman_decode(block.get(start..end).unwrap_or_default(), scratch)?;
        Ok(Str::Scratch(from, scratch.len()))
    } else {
        Ok(Str::Block(start, end))
    }
}

/// The static table (RFC 7541 Appendix A); index 1 is the first element.
const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// The Huffman code's length in bits for each symbol (RFC 7541 Appendix B); symbol 256 is EOS. The
/// code is canonical, so the lengths determine the codes ([`HuffmanTable::build`]).
const CODE_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28,
    28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6,
    6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7,
    8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7,
    15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24,
    23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23,
    23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26,
    26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20,
    21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27,
    27, 27, 26, 30,
];

/// The end-of-string symbol.
const EOS: u16 = 256;
/// The longest code (EOS's).
const MAX_CODE_LENGTH: usize = 30;
/// Codes up to this length decode with one lookup in [`HuffmanTable::short`].
const SHORT_BITS: u32 = 8;

/// Decoding tables computed once from [`CODE_LENGTHS`].
struct HuffmanTable {
    /// For each value of the next 8 input bits: the symbol and its length when its code is at most 8
    /// bits long, else length 0.
    short: [(u16, u32); 256],
    /// Per length L: one past the last code of length ≤ L, left-aligned in 32 bits.
    limit: [u64; MAX_CODE_LENGTH + 1],
    /// Per length: the first code of that length.
    first: [u32; MAX_CODE_LENGTH + 1],
    /// Per length: where its symbols start in `sorted`.
    offset: [usize; MAX_CODE_LENGTH + 1],
    /// Symbols ordered by (code length, symbol), i.e. by code.
    sorted: [u16; 257],
}

fn huffman_table() -> &'static HuffmanTable {
    static TABLE: OnceLock<HuffmanTable> = OnceLock::new();
    TABLE.get_or_init(|| HuffmanTable::build().0)
}

impl HuffmanTable {
    /// Assigns canonical codes: shorter codes first, and within one length consecutive codes in
    /// symbol order. Also returns each symbol's code, in the low `CODE_LENGTHS[symbol]` bits.
    fn build() -> (Self, [u32; 257]) {
        let mut count = [0u32; MAX_CODE_LENGTH + 1];
        for &len in &CODE_LENGTHS {
            count[usize::from(len)] += 1;
        }
        let mut first = [0u32; MAX_CODE_LENGTH + 1];
        let mut offset = [0usize; MAX_CODE_LENGTH + 1];
        let mut limit = [0u64; MAX_CODE_LENGTH + 1];
        let mut code = 0u32;
        let mut symbols_before = 0usize;
        for len in 1..=MAX_CODE_LENGTH {
            code = (code + count[len - 1]) << 1;
            first[len] = code;
            offset[len] = symbols_before;
            symbols_before += count[len] as usize;
            limit[len] = u64::from(code + count[len]) << (32 - len);
        }
        let mut next = first;
        let mut codes = [0u32; 257];
        let mut sorted = [0u16; 257];
        for (symbol, &len) in (0u16..).zip(&CODE_LENGTHS) {
            let len = usize::from(len);
            let code = next[len];
            next[len] += 1;
            codes[usize::from(symbol)] = code;
            sorted[offset[len] + (code - first[len]) as usize] = symbol;
        }
        let mut table = HuffmanTable { short: [(0, 0); 256], limit, first, offset, sorted };
        for (top, slot) in (0u64..).zip(table.short.iter_mut()) {
            // Search without the short table (still empty); `slot` is of the copy being filled.
            *slot = match Self::search(&limit, &first, &offset, &sorted, top << 24, 1) {
                Some((symbol, len)) if len <= SHORT_BITS => (symbol, len),
                _ => (0, 0),
            };
        }
        (table, codes)
    }

    /// Finds the code that prefixes `bits` (the next 32 input bits, right-aligned in a u64) among
    /// the codes of `min_len` bits or more; returns the symbol and the code length.
    fn search(
        limit: &[u64; MAX_CODE_LENGTH + 1],
        first: &[u32; MAX_CODE_LENGTH + 1],
        offset: &[usize; MAX_CODE_LENGTH + 1],
        sorted: &[u16; 257],
        bits: u64,
        min_len: usize,
    ) -> Option<(u16, u32)> {
        for len in min_len..=MAX_CODE_LENGTH {
            if bits < *limit.get(len)? {
                let code = usize::try_from(bits >> (32 - len)).ok()?;
                let index = offset.get(len)? + code.checked_sub(usize::try_from(*first.get(len)?).ok()?)?;
                return Some((*sorted.get(index)?, len as u32));
            }
        }
        None
    }

    /// The symbol whose code starts `acc` (pending input bits, left-aligned) and its length.
    fn decode(&self, acc: u64) -> Option<(u16, u32)> {
        let (symbol, len) = self.short[usize::from((acc >> 56) as u8)];
        if len != 0 {
            return Some((symbol, len));
        }
        Self::search(&self.limit, &self.first, &self.offset, &self.sorted, acc >> 32, SHORT_BITS as usize + 1)
    }
}

/// Appends the Huffman decoding of `src` (RFC 7541 section 5.2) to `out`.
fn huffman_decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
    let table = huffman_table();
    out.reserve(src.len() * 8 / 5 + 1);
    let mut input = src.iter();
    // Pending input bits, left-aligned, and how many there are.
    let mut acc = 0u64;
    let mut bits = 0u32;
    loop {
        while bits <= 56 {
            let Some(&byte) = input.next() else { break };
            acc |= u64::from(byte) << (56 - bits);
            bits += 8;
        }
        if bits == 0 {
            return Ok(());
        }
        match table.decode(acc) {
            Some((symbol, len)) if len <= bits => {
                if symbol == EOS {
                    return Err(HpackError::HuffmanEos);
                }
                let byte = u8::try_from(symbol).map_err(|_| HpackError::HuffmanEos)?;
                out.push(byte);
                acc <<= len;
                bits -= len;
            }
            // Fewer bits than the next code: the input is exhausted (a refill leaves more than the
            // longest code otherwise) and the rest must be padding, the first bits of EOS.
            _ => {
                let padding = acc >> (64 - bits);
                if padding != (1u64 << bits) - 1 {
                    return Err(HpackError::HuffmanPaddingNotOnes { bits });
                }
                if bits > 7 {
                    return Err(HpackError::HuffmanPaddingTooLong { bits });
                }
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    type Fields = Vec<(Vec<u8>, Vec<u8>)>;

    fn decode(decoder: &mut Decoder, block: &[u8]) -> Result<Fields, HpackError> {
        let mut fields = Vec::new();
        decoder.decode(block, |name, value| fields.push((name.to_vec(), value.to_vec())))?;
        Ok(fields)
    }

    fn pairs(list: &[(&str, &str)]) -> Fields {
        list.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
    }

    fn table(decoder: &Decoder) -> Fields {
        decoder.table.iter().map(|e| (e.name().to_vec(), e.value().to_vec())).collect()
    }

    fn huffman(bytes: &[u8]) -> Result<Vec<u8>, HpackError> {
        let mut out = Vec::new();
        huffman_decode(bytes, &mut out)?;
        Ok(out)
    }

    /// One step of an Appendix C sequence: block, fields, table afterwards (newest first), size.
    type Step<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [(&'a str, &'a str)], usize);

    fn run_sequence(decoder: &mut Decoder, steps: &[Step<'_>]) {
        for (i, (block, fields, entries, size)) in steps.iter().enumerate() {
            let got = decode(decoder, &hex(block)).unwrap_or_else(|e| panic!("step {i}: {e}"));
            assert_eq!(got, pairs(fields), "fields of step {i}");
            assert_eq!(table(decoder), pairs(entries), "table after step {i}");
            assert_eq!(decoder.size, *size, "table size after step {i}");
        }
    }

    #[test]
    fn computed_codes_match_rfc() {
        let (_, codes) = HuffmanTable::build();
        assert_eq!((codes[usize::from(b'0')], CODE_LENGTHS[usize::from(b'0')]), (0b00000, 5));
        assert_eq!((codes[usize::from(b'a')], CODE_LENGTHS[usize::from(b'a')]), (0b00011, 5));
        assert_eq!((codes[usize::from(b' ')], CODE_LENGTHS[usize::from(b' ')]), (0b010100, 6));
        assert_eq!((codes[usize::from(b':')], CODE_LENGTHS[usize::from(b':')]), (0x5c, 7));
        assert_eq!((codes[usize::from(b'&')], CODE_LENGTHS[usize::from(b'&')]), (0xf8, 8));
        assert_eq!((codes[0], CODE_LENGTHS[0]), (0x1ff8, 13));
        assert_eq!((codes[256], CODE_LENGTHS[256]), (0x3fff_ffff, 30));
        // A complete prefix code: the Kraft sum is exactly 1.
        let kraft: u64 = CODE_LENGTHS.iter().map(|&len| 1u64 << (30 - len)).sum();
        assert_eq!(kraft, 1 << 30);
    }

    #[test]
    fn huffman_rfc_strings() {
        let cases = [
            ("f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"),
            ("a8eb 1064 9cbf", "no-cache"),
            ("25a8 49e9 5ba9 7d7f", "custom-key"),
            ("25a8 49e9 5bb8 e8b4 bf", "custom-value"),
            ("6402", "302"),
            ("aec3 771a 4b", "private"),
            ("9bd9 ab", "gzip"),
            ("07", "0"),
            ("", ""),
        ];
        for (encoded, plain) in cases {
            assert_eq!(huffman(&hex(encoded)).unwrap(), plain.as_bytes(), "{plain}");
            assert_eq!(huffman_encode(plain.as_bytes()), hex(encoded), "{plain}");
        }
    }

    #[test]
    fn c2_single_representations() {
        let cases: [(&str, (&str, &str), usize); 4] = [
            (
                "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
                ("custom-key", "custom-header"),
                55,
            ),
            ("040c 2f73 616d 706c 652f 7061 7468", (":path", "/sample/path"), 0),
            ("1008 7061 7373 776f 7264 0673 6563 7265 74", ("password", "secret"), 0),
            ("82", (":method", "GET"), 0),
        ];
        for (block, field, size) in cases {
            let mut decoder = Decoder::new(65_536);
            assert_eq!(decode(&mut decoder, &hex(block)).unwrap(), pairs(&[field]));
            assert_eq!(decoder.size, size, "{block}");
            let expected = if size == 0 { Vec::new() } else { pairs(&[field]) };
            assert_eq!(table(&decoder), expected);
        }
    }

    const REQ1: &[(&str, &str)] =
        &[(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")];
    const REQ2: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
        ("cache-control", "no-cache"),
    ];
    const REQ3: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ];
    const REQ_T1: &[(&str, &str)] = &[(":authority", "www.example.com")];
    const REQ_T2: &[(&str, &str)] = &[("cache-control", "no-cache"), (":authority", "www.example.com")];
    const REQ_T3: &[(&str, &str)] =
        &[("custom-key", "custom-value"), ("cache-control", "no-cache"), (":authority", "www.example.com")];

    #[test]
    fn c3_requests_without_huffman() {
        run_sequence(
            &mut Decoder::new(65_536),
            &[
                ("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d", REQ1, REQ_T1, 57),
                ("8286 84be 5808 6e6f 2d63 6163 6865", REQ2, REQ_T2, 110),
                (
                    "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
                    REQ3,
                    REQ_T3,
                    164,
                ),
            ],
        );
    }

    #[test]
    fn c4_requests_with_huffman() {
        run_sequence(
            &mut Decoder::new(65_536),
            &[
                ("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff", REQ1, REQ_T1, 57),
                ("8286 84be 5886 a8eb 1064 9cbf", REQ2, REQ_T2, 110),
                ("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf", REQ3, REQ_T3, 164),
            ],
        );
    }

    const DATE1: &str = "Mon, 21 Oct 2013 20:13:21 GMT";
    const DATE2: &str = "Mon, 21 Oct 2013 20:13:22 GMT";
    const LOCATION: &str = "https://www.example.com";
    const COOKIE: &str = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
    const RESP1: &[(&str, &str)] =
        &[(":status", "302"), ("cache-control", "private"), ("date", DATE1), ("location", LOCATION)];
    const RESP2: &[(&str, &str)] =
        &[(":status", "307"), ("cache-control", "private"), ("date", DATE1), ("location", LOCATION)];
    const RESP3: &[(&str, &str)] = &[
        (":status", "200"),
        ("cache-control", "private"),
        ("date", DATE2),
        ("location", LOCATION),
        ("content-encoding", "gzip"),
        ("set-cookie", COOKIE),
    ];
    const RESP_T1: &[(&str, &str)] =
        &[("location", LOCATION), ("date", DATE1), ("cache-control", "private"), (":status", "302")];
    const RESP_T2: &[(&str, &str)] =
        &[(":status", "307"), ("location", LOCATION), ("date", DATE1), ("cache-control", "private")];
    const RESP_T3: &[(&str, &str)] = &[("set-cookie", COOKIE), ("content-encoding", "gzip"), ("date", DATE2)];

    /// A decoder whose table maximum is 256, set the protocol's way: a size update at a block start.
    fn decoder_256() -> Decoder {
        let mut decoder = Decoder::new(65_536);
        assert_eq!(decode(&mut decoder, &[0x3f, 0xe1, 0x01]).unwrap(), Vec::new());
        assert_eq!(decoder.max_size, 256);
        decoder
    }

    /// Appendix C.5: three responses without Huffman coding.
    const C5_BLOCKS: [&str; 3] = [
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
         2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
         6c65 2e63 6f6d",
        "4803 3330 37c1 c0bf",
        "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
         54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
         5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
         3d31",
    ];

    /// Appendix C.6: the same responses with Huffman coding.
    const C6_BLOCKS: [&str; 3] = [
        "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
         2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        "4883 640e ffc1 c0bf",
        "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
         77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
         9587 3160 65c0 03ed 4ee5 b106 3d50 07",
    ];

    #[test]
    fn c5_responses_without_huffman() {
        run_sequence(
            &mut decoder_256(),
            &[
                (C5_BLOCKS[0], RESP1, RESP_T1, 222),
                (C5_BLOCKS[1], RESP2, RESP_T2, 222),
                (C5_BLOCKS[2], RESP3, RESP_T3, 215),
            ],
        );
    }

    #[test]
    fn c6_responses_with_huffman() {
        run_sequence(
            &mut decoder_256(),
            &[
                (C6_BLOCKS[0], RESP1, RESP_T1, 222),
                (C6_BLOCKS[1], RESP2, RESP_T2, 222),
                (C6_BLOCKS[2], RESP3, RESP_T3, 215),
            ],
        );
    }

    #[test]
    fn size_updates_at_block_start_evict() {
        let mut decoder = Decoder::new(65_536);
        decode(&mut decoder, &hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d")).unwrap();
        decode(&mut decoder, &hex("8286 84be 5808 6e6f 2d63 6163 6865")).unwrap();
        assert_eq!(decoder.size, 110);
        // Two updates at the start (RFC 7541 section 4.2): to 60 evicts the oldest, then back up.
        let fields = decode(&mut decoder, &[0x3f, 0x1d, 0x3f, 0xe1, 0x1f, 0x82]).unwrap();
        assert_eq!(fields, pairs(&[(":method", "GET")]));
        assert_eq!(table(&decoder), pairs(&[("cache-control", "no-cache")]));
        assert_eq!((decoder.size, decoder.max_size), (53, 4_096));
        // To 0 empties the table.
        decode(&mut decoder, &[0x20]).unwrap();
        assert_eq!((decoder.table.len(), decoder.size), (0, 0));
    }

    #[test]
    fn entry_larger_than_the_table_empties_it() {
        let mut decoder = decoder_256();
        decode(&mut decoder, &hex("4803 3330 3258 0770 7269 7661 7465")).unwrap();
        assert_eq!(decoder.table.len(), 2);
        // A value of 300 bytes: the field is still yielded, the table ends empty.
        let mut block = vec![0x40];
        encode_string(&mut block, b"x", false);
        encode_string(&mut block, &[b'v'; 300], false);
        let fields = decode(&mut decoder, &block).unwrap();
        assert_eq!(fields, vec![(b"x".to_vec(), vec![b'v'; 300])]);
        assert_eq!((decoder.table.len(), decoder.size), (0, 0));
    }

    #[test]
    fn errors() {
        let fresh = |block: &[u8]| decode(&mut Decoder::new(256), block).unwrap_err();
        assert_eq!(fresh(&[0x80]), HpackError::IndexZero);
        assert_eq!(fresh(&[0xbe]), HpackError::IndexOutOfRange { index: 62, dynamic: 0 });
        // Literal without indexing whose indexed name is past the table (15 + 47 = 62).
        assert_eq!(fresh(&[0x0f, 0x2f, 0x00]), HpackError::IndexOutOfRange { index: 62, dynamic: 0 });
        assert_eq!(fresh(&[0x3f, 0xe2, 0x01]), HpackError::TableSizeTooLarge { size: 257, limit: 256 });
        assert_eq!(fresh(&[0x82, 0x20]), HpackError::LateTableSizeUpdate { size: 0 });
        assert_eq!(fresh(&[0xff]), HpackError::TruncatedInteger { at: 0 });
        assert_eq!(fresh(&[0x82, 0xff, 0x80]), HpackError::TruncatedInteger { at: 1 });
        assert_eq!(fresh(&[0x40, 0x05, b'a']), HpackError::TruncatedString { at: 1, len: 5, available: 1 });
        // The value is missing altogether.
        assert_eq!(fresh(&[0x40, 0x01, b'a']), HpackError::TruncatedInteger { at: 3 });
        // 32 one bits: the first 30 are EOS.
        assert_eq!(fresh(&[0x00, 0x84, 0xff, 0xff, 0xff, 0xff, 0x00]), HpackError::HuffmanEos);
        // 8 one bits of padding.
        assert_eq!(fresh(&[0x00, 0x81, 0xff, 0x00]), HpackError::HuffmanPaddingTooLong { bits: 8 });
        // '0' (00000) then padding 110.
        assert_eq!(fresh(&[0x00, 0x81, 0x06, 0x00]), HpackError::HuffmanPaddingNotOnes { bits: 3 });
        // A value above 2^28, and a fifth continuation byte.
        assert_eq!(fresh(&[0xff, 0xff, 0xff, 0xff, 0x7f]), HpackError::IntegerOverflow { at: 0 });
        assert_eq!(fresh(&[0x82, 0xff, 0x80, 0x80, 0x80, 0x80, 0x00]), HpackError::IntegerOverflow { at: 1 });
        assert_eq!(
            HpackError::IndexOutOfRange { index: 70, dynamic: 3 }.to_string(),
            "header table index 70 is out of range (dynamic table has 3 entries)"
        );
    }

    #[test]
    fn largest_integer_is_accepted() {
        // 2^28 as a size update (5-bit prefix): 31 + continuation of 2^28 - 31.
        let mut block = vec![0x3f];
        let mut rest = (1usize << 28) - 31;
        while rest >= 128 {
            block.push((rest % 128) as u8 | 0x80);
            rest /= 128;
        }
        block.push(rest as u8);
        assert_eq!(block.len(), 5);
        decode(&mut Decoder::new(1 << 28), &block).unwrap();
    }

    fn huffman_encode(bytes: &[u8]) -> Vec<u8> {
        let (_, codes) = HuffmanTable::build();
        let mut out = Vec::new();
        let mut acc = 0u64;
        let mut bits = 0u32;
        for &byte in bytes {
            let len = u32::from(CODE_LENGTHS[usize::from(byte)]);
            acc = (acc << len) | u64::from(codes[usize::from(byte)]);
            bits += len;
            while bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        if bits > 0 {
            out.push(((acc << (8 - bits)) as u8) | (0xff >> bits));
        }
        out
    }

    fn encode_integer(out: &mut Vec<u8>, flags: u8, prefix_bits: u32, value: usize) {
        let max = (1usize << prefix_bits) - 1;
        if value < max {
            out.push(flags | value as u8);
            return;
        }
        out.push(flags | max as u8);
        let mut rest = value - max;
        while rest >= 128 {
            out.push((rest % 128) as u8 | 0x80);
            rest /= 128;
        }
        out.push(rest as u8);
    }

    fn encode_string(out: &mut Vec<u8>, bytes: &[u8], huffman: bool) {
        if huffman {
            let encoded = huffman_encode(bytes);
            encode_integer(out, 0x80, 7, encoded.len());
            out.extend_from_slice(&encoded);
        } else {
            encode_integer(out, 0, 7, bytes.len());
            out.extend_from_slice(bytes);
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Literal with incremental indexing and a literal name.
        Insert { name: Vec<u8>, value: Vec<u8>, huffman_name: bool, huffman_value: bool },
        /// Indexed field naming a dynamic entry (taken modulo the entries present).
        Reference(usize),
        /// Literal without indexing, never indexed when `never`, with a static name.
        Plain { name_index: usize, value: Vec<u8>, huffman: bool, never: bool },
    }

    fn op() -> impl Strategy<Value = Op> {
        let bytes = |max: usize| proptest::collection::vec(any::<u8>(), 0..max);
        prop_oneof![
            3 => (bytes(24), bytes(300), any::<bool>(), any::<bool>()).prop_map(
                |(name, value, huffman_name, huffman_value)| Op::Insert { name, value, huffman_name, huffman_value }
            ),
            2 => any::<usize>().prop_map(Op::Reference),
            1 => (1..=61usize, bytes(40), any::<bool>(), any::<bool>())
                .prop_map(|(name_index, value, huffman, never)| Op::Plain { name_index, value, huffman, never }),
        ]
    }

    /// The dynamic table as RFC 7541 section 4 describes it, kept the simple way.
    struct Model {
        entries: VecDeque<(Vec<u8>, Vec<u8>)>,
        size: usize,
        max: usize,
    }

    impl Model {
        fn shrink_to(&mut self, max: usize) {
            while self.size > max {
                let (n, v) = self.entries.pop_back().unwrap();
                self.size -= n.len() + v.len() + 32;
            }
        }

        fn insert(&mut self, name: &[u8], value: &[u8]) {
            let size = name.len() + value.len() + 32;
            if size > self.max {
                self.shrink_to(0);
                return;
            }
            self.shrink_to(self.max - size);
            self.entries.push_front((name.to_vec(), value.to_vec()));
            self.size += size;
        }
    }

    /// A small valid block sequence to give a decoder dynamic entries (C.3).
    fn primed_decoder() -> Decoder {
        let mut decoder = Decoder::new(65_536);
        for block in [
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ] {
            decode(&mut decoder, &hex(block)).unwrap();
        }
        decoder
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_blocks_never_panic(blocks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..200), 1..4)
        ) {
            for mut decoder in [Decoder::new(65_536), primed_decoder()] {
                for block in &blocks {
                    if decode(&mut decoder, block).is_err() {
                        break;
                    }
                    prop_assert!(decoder.size <= decoder.max_size);
                    let counted: usize = decoder.table.iter().map(Entry::size).sum();
                    prop_assert_eq!(counted, decoder.size);
                }
            }
        }

        #[test]
        fn mutated_rfc_blocks_never_panic(at in 0..200usize, byte in any::<u8>(), huffman in any::<bool>()) {
            let blocks = if huffman { &C6_BLOCKS } else { &C5_BLOCKS };
            let mut blocks: Vec<Vec<u8>> = blocks.iter().map(|b| hex(b)).collect();
            let total: usize = blocks.iter().map(Vec::len).sum();
            let mut at = at % total;
            for block in &mut blocks {
                if at < block.len() {
                    block[at] = byte;
                    break;
                }
                at -= block.len();
            }
            let mut decoder = decoder_256();
            for block in &blocks {
                if decode(&mut decoder, block).is_err() {
                    break;
                }
                prop_assert!(decoder.size <= decoder.max_size);
            }
        }

        #[test]
        fn arbitrary_huffman_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = huffman(&bytes);
        }

        #[test]
        fn huffman_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(huffman(&huffman_encode(&bytes)).unwrap(), bytes);
        }

        #[test]
        fn encoded_blocks_round_trip(blocks in proptest::collection::vec(
            (proptest::option::of(0..6_000usize), proptest::collection::vec(op(), 0..8)), 1..6)
        ) {
            let mut decoder = Decoder::new(6_000);
            let mut model = Model { entries: VecDeque::new(), size: 0, max: DEFAULT_TABLE_SIZE };
            for (size_update, ops) in blocks {
                let mut block = Vec::new();
                let mut expected = Vec::new();
                if let Some(max) = size_update {
                    encode_integer(&mut block, 0x20, 5, max);
                    model.max = max;
                    model.shrink_to(max);
                }
                for op in ops {
                    match op {
                        Op::Insert { name, value, huffman_name, huffman_value } => {
                            block.push(0x40);
                            encode_string(&mut block, &name, huffman_name);
                            encode_string(&mut block, &value, huffman_value);
                            model.insert(&name, &value);
                            expected.push((name, value));
                        }
                        Op::Reference(k) => {
                            if model.entries.is_empty() {
                                continue;
                            }
                            let k = k % model.entries.len();
                            encode_integer(&mut block, 0x80, 7, 62 + k);
                            expected.push(model.entries[k].clone());
                        }
                        Op::Plain { name_index, value, huffman, never } => {
                            encode_integer(&mut block, if never { 0x10 } else { 0 }, 4, name_index);
                            encode_string(&mut block, &value, huffman);
                            let name = STATIC_TABLE[name_index - 1].0.as_bytes().to_vec();
                            expected.push((name, value));
                        }
                    }
                }
                prop_assert_eq!(decode(&mut decoder, &block).unwrap(), expected);
                prop_assert_eq!(decoder.size, model.size);
                prop_assert_eq!(table(&decoder), model.entries.iter().cloned().collect::<Fields>());
            }
        }
    }
}
