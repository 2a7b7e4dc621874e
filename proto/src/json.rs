//! JSON output exactly as upstream `hubble` prints it.
//!
//! Upstream marshals messages with protojson (proto field names, declaration order,
//! zero values omitted, enums by name, 64-bit integers as strings) and then passes the
//! result through Go's `encoding/json`, which compacts it and escapes `<`, `>` and `&`
//! as `\u003c`, `\u003e` and `\u0026` (and U+2028/U+2029). This module reproduces both
//! steps in one pass over the pbjson serde impls.

use std::io::{self, Write};

/// A message that prints itself in upstream's JSON form. Implemented for every message
/// of the API by code generated from the `.proto` files.
pub trait ToJson {
    /// Appends `self` as a JSON object.
    fn write_json(&self, w: &mut Writer);
}

include!(concat!(env!("OUT_DIR"), "/hubble_json.rs"));

/// What [`from_slice`] keeps from one document to the next: its copy of the document
/// and the parser's buffers, and whether labels are read.
#[derive(Default)]
pub struct ReadScratch {
    copy: Vec<u8>,
    buffers: simd_json::Buffers,
    skip_labels: bool,
}

impl ReadScratch {
    /// When `skip` is true, documents read with this scratch leave the endpoints' and
    /// the node's labels (`Endpoint.labels`, `Flow.node_labels`) empty: they are checked
    /// as they would be read (a list of strings; anything else is refused with the same
    /// error) but not kept. A reader that prints no labels and filters on none (see
    /// `FilterSet::reads_labels`) saves their allocations; they are a third of a
    /// captured flow's text.
    pub fn skip_labels(&mut self, skip: bool) {
        self.skip_labels = skip;
    }
}

std::thread_local! {
    /// [`ReadScratch::skip_labels`] of the document this thread is reading.
    static SKIP_LABELS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs the simd-json parse of `document` with `skip` in force for [`Labels`].
fn parse_simd<T: serde::de::DeserializeOwned>(
    document: &mut [u8],
    buffers: &mut simd_json::Buffers,
    skip: bool,
) -> simd_json::Result<T> {
    SKIP_LABELS.with(|flag| flag.set(skip));
    let parsed = simd_json::serde::from_slice_with_buffers::<T>(document, buffers);
    SKIP_LABELS.with(|flag| flag.set(false));
    parsed
}

/// The type the generated readers of `Endpoint.labels` and `Flow.node_labels` read
/// (`build.rs` patches them): a list of strings, kept unless the reading thread skips
/// labels ([`ReadScratch::skip_labels`]).
pub(crate) struct Labels(pub(crate) Vec<String>);

impl<'de> serde::Deserialize<'de> for Labels {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if SKIP_LABELS.with(std::cell::Cell::get) {
            deserializer.deserialize_seq(CheckedStrings)?;
            Ok(Labels(Vec::new()))
        } else {
            Vec::<String>::deserialize(deserializer).map(Labels)
        }
    }
}

/// Accepts what `Vec<String>` accepts, keeping nothing; refuses with its words.
struct CheckedStrings;

impl<'de> serde::de::Visitor<'de> for CheckedStrings {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<CheckedString>()?.is_some() {}
        Ok(())
    }
}

/// One string, not kept.
struct CheckedString;

impl<'de> serde::Deserialize<'de> for CheckedString {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(CheckedString)
    }
}

impl serde::de::Visitor<'_> for CheckedString {
    type Value = CheckedString;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<CheckedString, E> {
        Ok(CheckedString)
    }
}

/// Reads one JSON document (a line of `hubble observe -o jsonpb` output, say) into
/// `T`. The document is copied into `scratch` and parsed there with simd-json (SIMD
/// chosen at run time); a document it refuses is parsed again by serde_json, whose
/// error (naming the line and column) is the one returned, so errors read as they
/// always did.
pub fn from_slice<T: serde::de::DeserializeOwned>(
    document: &[u8],
    scratch: &mut ReadScratch,
) -> serde_json::Result<T> {
    scratch.copy.clear();
    scratch.copy.extend_from_slice(document);
    match parse_simd::<T>(&mut scratch.copy, &mut scratch.buffers, scratch.skip_labels) {
        Ok(value) => Ok(value),
        Err(_) => serde_json::from_slice(document),
    }
}

/// [`from_slice`] for a document the caller lets the parser work in: one without a
/// backslash is parsed where it is (simd-json writes into its input only to unescape
/// strings), one with a backslash is copied first; either way the document is left
/// as it was (tested), so a caller can still quote a refused one.
pub fn from_mut_slice<T: serde::de::DeserializeOwned>(
    document: &mut [u8],
    scratch: &mut ReadScratch,
) -> serde_json::Result<T> {
    if memchr::memchr(b'\\', document).is_some() {
        return from_slice(document, scratch);
    }
    match parse_simd::<T>(document, &mut scratch.buffers, scratch.skip_labels) {
        Ok(value) => Ok(value),
        Err(_) => serde_json::from_slice(document),
    }
}

/// Returns `value` as compact JSON, exactly as upstream prints it.
pub fn to_string<T: ToJson + ?Sized>(value: &T) -> String {
    let mut w = Writer::with_capacity(512);
    value.write_json(&mut w);
    w.into_string()
}

/// Writes `value` followed by a newline to `out`, reusing `w`'s buffer.
pub fn write_line<T: ToJson + ?Sized, O: Write>(
    w: &mut Writer,
    value: &T,
    out: &mut O,
) -> io::Result<()> {
    w.clear();
    value.write_json(w);
    w.buf.push('\n');
    out.write_all(w.buf.as_bytes())
}

/// An append-only JSON writer with Go's `encoding/json` string escaping.
#[derive(Debug, Default)]
pub struct Writer {
    buf: String,
    /// One entry per open object or array: whether it already holds an element.
    nonempty: Vec<bool>,
}

impl Writer {
    /// Creates a writer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: String::with_capacity(capacity),
            nonempty: Vec::with_capacity(8),
        }
    }

    /// Empties the buffer, keeping its allocation.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.nonempty.clear();
    }

    /// The JSON written so far.
    pub fn as_str(&self) -> &str {
        &self.buf
    }

    /// Consumes the writer and returns its JSON.
    pub fn into_string(self) -> String {
        self.buf
    }

    pub fn begin_object(&mut self) {
        self.buf.push('{');
        self.nonempty.push(false);
    }

    pub fn end_object(&mut self) {
        self.buf.push('}');
        self.nonempty.pop();
    }

    pub fn begin_array(&mut self) {
        self.buf.push('[');
        self.nonempty.push(false);
    }

    pub fn end_array(&mut self) {
        self.buf.push(']');
        self.nonempty.pop();
    }

    /// Writes the separator before the next element of the innermost object or array.
    pub fn comma(&mut self) {
        if let Some(nonempty) = self.nonempty.last_mut() {
            if *nonempty {
                self.buf.push(',');
            }
            *nonempty = true;
        }
    }

    /// Writes a generated message's field name, given as `,"name":` (a literal, so the
    /// copy is a few fixed moves), without its comma for the message's first field.
    /// Generated messages keep their own `first` flag instead of the writer's stack.
    #[inline(always)]
    pub fn field(&mut self, first: &mut bool, key: &'static str) {
        if std::mem::take(first) {
            self.buf.push_str(&key[1..]);
        } else {
            self.buf.push_str(key);
        }
    }

    /// Writes the separator before a generated array's element unless it is the first.
    #[inline(always)]
    pub fn item(&mut self, first: &mut bool) {
        if !std::mem::take(first) {
            self.buf.push(',');
        }
    }

    /// Writes `"name":` (names are proto field names and need no escaping).
    pub fn key(&mut self, name: &str) {
        self.comma();
        self.buf.push('"');
        self.buf.push_str(name);
        self.buf.push_str("\":");
    }

    #[inline(always)]
    pub fn raw(&mut self, text: &str) {
        self.buf.push_str(text);
    }

    pub fn integer(&mut self, value: i64) {
        self.buf.push_str(itoa::Buffer::new().format(value));
    }

    pub fn quoted_integer(&mut self, value: i128) {
        self.buf.push('"');
        self.buf.push_str(itoa::Buffer::new().format(value));
        self.buf.push('"');
    }

    pub fn float(&mut self, value: f64) {
        if value.is_nan() {
            self.buf.push_str("\"NaN\"");
        } else if value.is_infinite() {
            self.buf.push_str(if value > 0.0 {
                "\"Infinity\""
            } else {
                "\"-Infinity\""
            });
        } else {
            let _ = std::fmt::Write::write_fmt(&mut self.buf, format_args!("{value}"));
        }
    }

    /// An enum by name, or by number when the number is not a known value.
    pub fn enumeration(&mut self, name: Option<&str>, value: i32) {
        match name {
            Some(name) => {
                self.buf.push('"');
                self.buf.push_str(name);
                self.buf.push('"');
            }
            None => self.integer(value.into()),
        }
    }

    /// A JSON string with Go's HTML-safe escaping (`<` as `\u003c`, ...).
    pub fn string(&mut self, value: &str) {
        self.buf.push('"');
        escape_into(&mut self.buf, value);
        self.buf.push('"');
    }

    pub fn bytes(&mut self, value: &[u8]) {
        self.buf.push('"');
        base64_into(&mut self.buf, value);
        self.buf.push('"');
    }

    /// A timestamp in RFC 3339, UTC, with 0, 3, 6 or 9 fractional digits.
    pub fn timestamp(&mut self, ts: &pbjson_types::Timestamp) {
        self.buf.push('"');
        format_timestamp(&mut self.buf, ts.seconds, ts.nanos);
        self.buf.push('"');
    }

    pub fn field_mask(&mut self, mask: &pbjson_types::FieldMask) {
        let joined: Vec<String> = mask.paths.iter().map(|p| lower_camel(p)).collect();
        self.string(&joined.join(","));
    }

    pub fn any(&mut self, any: &pbjson_types::Any) {
        self.begin_object();
        self.key("@type");
        self.string(&any.type_url);
        self.end_object();
    }
}

/// Formats a protobuf timestamp as protojson does.
pub fn format_timestamp(out: &mut String, seconds: i64, nanos: i32) {
    use std::fmt::Write as _;
    // Days since 1970-01-01 to a civil date (proleptic Gregorian), without allocating.
    let days = seconds.div_euclid(86_400);
    let secs_of_day = seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if (0..=9999).contains(&year) {
        push_digits(out, year, 4);
    } else {
        let _ = write!(out, "{year:04}");
    }
    for (separator, value) in [
        ('-', month),
        ('-', day),
        ('T', secs_of_day / 3_600),
        (':', secs_of_day % 3_600 / 60),
        (':', secs_of_day % 60),
    ] {
        out.push(separator);
        push_digits(out, value, 2);
    }
    let nanos = i64::from(nanos.max(0));
    if nanos != 0 {
        out.push('.');
        if nanos % 1_000_000 == 0 {
            push_digits(out, nanos / 1_000_000, 3);
        } else if nanos % 1_000 == 0 {
            push_digits(out, nanos / 1_000, 6);
        } else {
            push_digits(out, nanos, 9);
        }
    }
    out.push('Z');
}

/// The last `width` decimal digits of `value` (not negative), zero-padded.
pub fn push_digits(out: &mut String, value: i64, width: u32) {
    let mut divisor = 10i64.pow(width - 1);
    while divisor > 0 {
        out.push(char::from(b'0' + (value / divisor % 10) as u8));
        divisor /= 10;
    }
}

fn lower_camel(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut upper = false;
    for c in path.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Bytes that may start something to escape: control characters, `"`, `\`, `<`, `>`,
/// `&`, and 0xE2 (the first byte of U+2028 and U+2029).
const MAY_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table[b'<' as usize] = true;
    table[b'>' as usize] = true;
    table[b'&' as usize] = true;
    table[0xE2] = true;
    table
};

/// Whether `bytes` hold a byte of [`MAY_ESCAPE`], eight bytes at a time (the check
/// every JSON string goes through; byte by byte it was a tenth of `hubble observe -o
/// jsonpb`'s CPU).
fn may_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Non-zero when a byte of `x` is `b` (exact for "some byte is").
    let has = |x: u64, b: u8| {
        let v = x ^ (ONES * u64::from(b));
        v.wrapping_sub(ONES) & !v & HIGH
    };
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // Some byte below 0x20 (exact for "some byte is", as above).
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        if control
            | has(x, b'"')
            | has(x, b'\\')
            | has(x, b'<')
            | has(x, b'>')
            | has(x, b'&')
            | has(x, 0xE2)
            != 0
        {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| MAY_ESCAPE[b as usize])
}

fn escape_into(out: &mut String, value: &str) {
    if !may_escape(value.as_bytes()) {
        out.push_str(value);
        return;
    }
    let mut start = 0;
    for (i, c) in value.char_indices() {
        let escape: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '<' => Some("\\u003c"),
            '>' => Some("\\u003e"),
            '&' => Some("\\u0026"),
            '\u{2028}' => Some("\\u2028"),
            '\u{2029}' => Some("\\u2029"),
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        out.push_str(&value[start..i]);
        match escape {
            Some(e) => out.push_str(e),
            None => {
                use std::fmt::Write as _;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
        start = i + c.len_utf8();
    }
    out.push_str(&value[start..]);
}

fn base64_into(out: &mut String, data: &[u8]) {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode_string(data, out);
}

pub mod lines;
#[cfg(test)]
mod tests;
