//! Writing protobuf keys, varints and lengths by hand, where a writer assembles a
//! message from parts (a GetFlows response from a flow's encoded fields, a compact
//! flow's record): into a vector, or into a buffer on the stack ([`StackBuf`]), without
//! prost's out-of-line calls per varint.

use prost::encoding::WireType;

/// Where the bytes are written.
pub trait Sink {
    /// Appends one byte.
    fn put(&mut self, byte: u8);
    /// Appends `bytes`.
    fn put_slice(&mut self, bytes: &[u8]);
    /// Bytes written so far.
    fn written(&self) -> usize;
    /// Overwrites the byte at `at`.
    fn set(&mut self, at: usize, byte: u8);
    /// Moves what was written from `at` on `n` bytes further, leaving room at `at`.
    fn open(&mut self, at: usize, n: usize);
}

impl Sink for Vec<u8> {
    #[inline(always)]
    fn put(&mut self, byte: u8) {
        self.push(byte);
    }
    #[inline(always)]
    fn put_slice(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    #[inline(always)]
    fn written(&self) -> usize {
        self.len()
    }
    #[inline(always)]
    fn set(&mut self, at: usize, byte: u8) {
        self[at] = byte;
    }
    fn open(&mut self, at: usize, n: usize) {
        let end = self.len();
        self.resize(end + n, 0);
        self.copy_within(at..end, at + n);
    }
}

/// A buffer of `N` bytes on the stack. Its bytes and length are the writer's own, so
/// a byte written does not make the compiler reload a vector's length and capacity, as
/// a `Vec<u8>` push does (a byte store may alias them). Writing past `N` panics: the
/// writer sizes it for the longest it writes.
pub struct StackBuf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Default for StackBuf<N> {
    fn default() -> Self {
        Self {
            bytes: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> StackBuf<N> {
    /// The bytes written.
    #[inline(always)]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl<const N: usize> Sink for StackBuf<N> {
    #[inline(always)]
    fn put(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }
    #[inline(always)]
    fn put_slice(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        self.bytes[self.len..end].copy_from_slice(bytes);
        self.len = end;
    }
    #[inline(always)]
    fn written(&self) -> usize {
        self.len
    }
    #[inline(always)]
    fn set(&mut self, at: usize, byte: u8) {
        self.bytes[at] = byte;
    }
    fn open(&mut self, at: usize, n: usize) {
        self.bytes.copy_within(at..self.len, at + n);
        self.len += n;
    }
}

/// A varint (what `prost::encoding::encode_varint` writes), without a call.
#[inline(always)]
pub fn put_varint(mut value: u64, out: &mut impl Sink) {
    while value >= 0x80 {
        out.put(value as u8 | 0x80);
        value >>= 7;
    }
    out.put(value as u8);
}

/// A field's key (what `prost::encoding::encode_key` writes).
#[inline(always)]
pub fn key(tag: u32, wire_type: WireType, out: &mut impl Sink) {
    put_varint(u64::from(tag << 3 | wire_type as u32), out);
}

/// A varint field, left out at 0 (proto3).
#[inline(always)]
pub fn varint_field(tag: u32, value: u64, out: &mut impl Sink) {
    if value != 0 {
        key(tag, WireType::Varint, out);
        put_varint(value, out);
    }
}

/// The key and length of a length-delimited field of `len` bytes.
#[inline(always)]
pub fn length_delimited(tag: u32, len: usize, out: &mut impl Sink) {
    key(tag, WireType::LengthDelimited, out);
    put_varint(len as u64, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys, varints and lengths are prost's bytes, in a vector and on the stack.
    #[test]
    fn writes_what_prost_writes() {
        for value in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut expected = Vec::new();
            prost::encoding::encode_key(1001, WireType::LengthDelimited, &mut expected);
            prost::encoding::encode_varint(value, &mut expected);
            let mut vec = Vec::new();
            let mut stack = StackBuf::<32>::default();
            length_delimited(1001, value as usize, &mut vec);
            length_delimited(1001, value as usize, &mut stack);
            assert_eq!(vec, expected, "{value}");
            assert_eq!(stack.as_bytes(), &expected[..], "{value}");
        }
        let mut out = Vec::new();
        varint_field(2, 0, &mut out);
        assert!(out.is_empty());
        varint_field(2, 5, &mut out);
        assert_eq!(out, [0x10, 5]);
    }
}
