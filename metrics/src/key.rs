//! Series keys: the label values of one series, length-prefixed into a reusable byte
//! buffer so that looking a series up allocates nothing.

use std::fmt::{self, Write as _};

/// A reusable buffer holding the label values of one series being looked up.
///
/// Each value is stored as a 4-byte little-endian length followed by its UTF-8 bytes,
/// so that no choice of separator can make two different value lists collide.
#[derive(Debug, Default)]
pub struct KeyBuf {
    bytes: Vec<u8>,
    /// Where the length of the value being written sits, while one is open.
    open: Option<usize>,
}

impl KeyBuf {
    /// Creates an empty buffer with room for a typical key.
    pub fn new() -> Self {
        Self {
            bytes: Vec::with_capacity(256),
            open: None,
        }
    }

    /// Empties the buffer, keeping its allocation.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.open = None;
    }

    /// The encoded key.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The current length, to truncate back to with [`KeyBuf::truncate`].
    pub fn mark(&self) -> usize {
        self.bytes.len()
    }

    /// Drops every value pushed after `mark`.
    pub fn truncate(&mut self, mark: usize) {
        self.bytes.truncate(mark);
        self.open = None;
    }

    /// Appends one label value.
    pub fn push(&mut self, value: &str) {
        self.bytes
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(value.as_bytes());
    }

    /// Appends one label value in (ASCII) lower case.
    pub fn push_lower(&mut self, value: &str) {
        let start = self.bytes.len() + 4;
        self.push(value);
        self.bytes[start..].make_ascii_lowercase();
    }

    /// Appends one label value made of several pieces.
    pub fn push_parts(&mut self, parts: &[&str]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.bytes.extend_from_slice(&(len as u32).to_le_bytes());
        for part in parts {
            self.bytes.extend_from_slice(part.as_bytes());
        }
    }

    /// Appends one label value: `items` joined with `separator`.
    pub fn push_joined(&mut self, items: &[String], separator: &str) {
        self.begin();
        for (index, item) in items.iter().enumerate() {
            if index > 0 {
                self.bytes.extend_from_slice(separator.as_bytes());
            }
            self.bytes.extend_from_slice(item.as_bytes());
        }
        self.end();
    }

    /// Appends one label value printed from `args`.
    pub fn push_fmt(&mut self, args: fmt::Arguments<'_>) {
        self.begin();
        let _ = self.write_fmt(args);
        self.end();
    }

    /// Appends one label value: the decimal form of `value`.
    pub fn push_u32(&mut self, value: u32) {
        self.push_fmt(format_args!("{value}"));
    }

    fn begin(&mut self) {
        self.open = Some(self.bytes.len());
        self.bytes.extend_from_slice(&[0; 4]);
    }

    fn end(&mut self) {
        if let Some(at) = self.open.take() {
            let len = (self.bytes.len() - at - 4) as u32;
            self.bytes[at..at + 4].copy_from_slice(&len.to_le_bytes());
        }
    }
}

impl fmt::Write for KeyBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.bytes.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Splits an encoded key back into its label values.
pub fn decode(mut key: &[u8]) -> Vec<Box<str>> {
    let mut values = Vec::new();
    while key.len() >= 4 {
        let len = u32::from_le_bytes([key[0], key[1], key[2], key[3]]) as usize;
        let end = (4 + len).min(key.len());
        values.push(String::from_utf8_lossy(&key[4..end]).into());
        key = &key[end..];
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_values_with_any_content() {
        let mut key = KeyBuf::new();
        key.push("a|b");
        key.push("");
        key.push_parts(&["default", "/", "xwing"]);
        key.push_joined(&["k8s:a=b".to_owned(), "k8s:c=d".to_owned()], ",");
        key.push_u32(8080);
        let values: Vec<String> = decode(key.as_bytes())
            .iter()
            .map(|v| v.to_string())
            .collect();
        assert_eq!(
            values,
            ["a|b", "", "default/xwing", "k8s:a=b,k8s:c=d", "8080"]
        );
    }

    #[test]
    fn different_splits_give_different_keys() {
        let mut one = KeyBuf::new();
        one.push("ab");
        one.push("c");
        let mut two = KeyBuf::new();
        two.push("a");
        two.push("bc");
        assert_ne!(one.as_bytes(), two.as_bytes());
    }
}
