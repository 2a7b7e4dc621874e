//! Exact, allocation-free packing of the text fields that have a binary form: IP
//! addresses, MAC addresses and UUIDs. A text is packed only when formatting it back
//! gives the very same string; anything else is kept as text.

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};

/// How an address text was packed.
pub const IP_EMPTY: u64 = 0;
pub const IP_V4: u64 = 1;
pub const IP_V6: u64 = 2;

/// A small stack buffer implementing `fmt::Write`.
pub struct StackText {
    buf: [u8; 64],
    len: usize,
}

impl StackText {
    fn new() -> Self {
        Self {
            buf: [0; 64],
            len: 0,
        }
    }

    /// The text written.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Packs an address text into `(kind, two words)` if it round-trips exactly.
pub fn pack_ip(text: &str) -> Option<(u64, u64, u64)> {
    if text.is_empty() {
        return Some((IP_EMPTY, 0, 0));
    }
    if !text.contains(':') {
        // Exactly four decimal octets without leading zeros: the one way an address
        // prints, so no need to format it back.
        let v4 = parse_ipv4(text.as_bytes())?;
        return Some((IP_V4, u64::from(u32::from(v4)), 0));
    }
    let addr: IpAddr = text.parse().ok()?;
    let mut out = StackText::new();
    write!(out, "{addr}").ok()?;
    if out.as_bytes() != text.as_bytes() {
        return None;
    }
    Some(match addr {
        IpAddr::V4(v4) => (IP_V4, u64::from(u32::from(v4)), 0),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            (IP_V6, (bits >> 64) as u64, bits as u64)
        }
    })
}

/// An IPv4 address of four decimal octets (0-255, no leading zeros), as
/// `Ipv4Addr`'s parser accepts them, in one pass over the bytes (the ingest path
/// packs every flow's two addresses).
fn parse_ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut at = 0;
    for (i, octet) in octets.iter_mut().enumerate() {
        if i > 0 {
            if b.get(at) != Some(&b'.') {
                return None;
            }
            at += 1;
        }
        let start = at;
        let mut value = 0u16;
        while let Some(&c) = b.get(at) {
            if !c.is_ascii_digit() || at - start == 3 {
                break;
            }
            value = value * 10 + u16::from(c - b'0');
            at += 1;
        }
        let digits = at - start;
        if digits == 0 || (digits > 1 && b[start] == b'0') {
            return None;
        }
        *octet = u8::try_from(value).ok()?;
    }
    (at == b.len()).then(|| Ipv4Addr::from(octets))
}

/// The address packed by [`pack_ip`].
#[inline]
pub fn unpack_ip(kind: u64, hi: u64, lo: u64) -> Option<IpAddr> {
    match kind {
        IP_V4 => Some(IpAddr::V4((hi as u32).into())),
        IP_V6 => Some(IpAddr::V6((u128::from(hi) << 64 | u128::from(lo)).into())),
        _ => None,
    }
}

/// The text of an address packed by [`pack_ip`], in a stack buffer (empty for
/// none).
pub fn ip_bytes(kind: u64, hi: u64, lo: u64) -> StackText {
    let mut out = StackText::new();
    match unpack_ip(kind, hi, lo) {
        Some(IpAddr::V4(v4)) => out.len = ipv4_bytes(v4, &mut out.buf),
        // An IPv6 text is at most 45 bytes: it fits the 64.
        Some(v6) if write!(out, "{v6}").is_err() => out.len = 0,
        _ => {}
    }
    out
}

/// An IPv4 address as dotted decimal text (what `Ipv4Addr`'s `Display` prints,
/// without the formatter machinery: flows carry addresses as text, and the ingest
/// and GetFlows paths make one per address).
pub fn ipv4_text(ip: Ipv4Addr) -> String {
    let mut text = [0u8; 15];
    let n = ipv4_bytes(ip, &mut text);
    ascii_text(&text[..n])
}

/// Writes `ip` as dotted decimal text at the start of `text`; returns its length.
fn ipv4_bytes(ip: Ipv4Addr, text: &mut [u8]) -> usize {
    let mut n = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            text[n] = b'.';
            n += 1;
        }
        if octet >= 100 {
            text[n] = b'0' + octet / 100;
            n += 1;
        }
        if octet >= 10 {
            text[n] = b'0' + octet / 10 % 10;
            n += 1;
        }
        text[n] = b'0' + octet % 10;
        n += 1;
    }
    n
}

fn hex_digit(c: u8) -> Option<u8> {
    let v = HEX_VALUES[usize::from(c)];
    (v != NOT_HEX).then_some(v)
}

/// Packs `aa:bb:cc:dd:ee:ff` (lowercase, as upstream prints MACs) into 48 bits.
pub fn pack_mac(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 17 {
        return None;
    }
    let mut value = 0u64;
    for i in 0..6 {
        let at = i * 3;
        if i > 0 && b[at - 1] != b':' {
            return None;
        }
        value = value << 8 | u64::from(hex_digit(b[at])? << 4 | hex_digit(b[at + 1])?);
    }
    Some(value)
}

/// The text of a MAC packed by [`pack_mac`].
pub fn mac_text(value: u64) -> String {
    ascii_text(&mac_bytes(value))
}

/// The text of a MAC packed by [`pack_mac`], as bytes.
pub fn mac_bytes(value: u64) -> [u8; 17] {
    // The last 12 of the 16 digits are the 48 bits'.
    let digits = hex_digits(value);
    let mut out = [b':'; 17];
    for (k, pair) in digits[4..].chunks_exact(2).enumerate() {
        out[3 * k..3 * k + 2].copy_from_slice(pair);
    }
    out
}

/// Dash positions of a canonical UUID text.
const UUID_DASHES: [usize; 4] = [8, 13, 18, 23];

/// Packs a lowercase canonical UUID (8-4-4-4-12) into two words.
pub fn pack_uuid(text: &str) -> Option<(u64, u64)> {
    let b = text.as_bytes();
    if b.len() != 36 || UUID_DASHES.iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let mut digits = [0u8; TRACE_ID_DIGITS];
    digits[..8].copy_from_slice(&b[0..8]);
    digits[8..12].copy_from_slice(&b[9..13]);
    digits[12..16].copy_from_slice(&b[14..18]);
    digits[16..20].copy_from_slice(&b[19..23]);
    digits[20..].copy_from_slice(&b[24..36]);
    Some((hex_word(&digits[..16])?, hex_word(&digits[16..])?))
}

/// The value of up to 16 lowercase hex digits; `None` if one is not such a digit.
/// Every flow's UUID and trace id is packed this way on ingest: one table lookup per
/// digit and one check at the end, no branch per digit.
#[inline]
fn hex_word(digits: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    let mut bad = 0u8;
    for &c in digits {
        let v = HEX_VALUES[usize::from(c)];
        bad |= v;
        value = value << 4 | u64::from(v & 15);
    }
    (bad & NOT_HEX == 0).then_some(value)
}

/// Marks a byte that is not a lowercase hex digit in [`HEX_VALUES`].
const NOT_HEX: u8 = 0x10;

/// Each byte's value as a lowercase hex digit, or [`NOT_HEX`].
static HEX_VALUES: [u8; 256] = {
    let mut values = [NOT_HEX; 256];
    let mut i = 0;
    while i < 16 {
        let digit = if i < 10 { b'0' + i } else { b'a' + i - 10 };
        values[digit as usize] = i;
        i += 1;
    }
    values
};

/// The text of a UUID packed by [`pack_uuid`].
pub fn uuid_bytes(hi: u64, lo: u64) -> [u8; 36] {
    let (hi, lo) = (hex_digits(hi), hex_digits(lo));
    let mut out = [b'-'; 36];
    out[..8].copy_from_slice(&hi[..8]);
    out[9..13].copy_from_slice(&hi[8..12]);
    out[14..18].copy_from_slice(&hi[12..]);
    out[19..23].copy_from_slice(&lo[..4]);
    out[24..].copy_from_slice(&lo[4..]);
    out
}

/// ASCII bytes as a `String` (one copy; not char by char).
fn ascii_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Hex digits of a W3C trace id.
pub const TRACE_ID_DIGITS: usize = 32;

/// Packs a trace id of 32 lowercase hex digits (the W3C `traceparent` form) into two
/// words.
pub fn pack_trace_id(text: &str) -> Option<(u64, u64)> {
    let b = text.as_bytes();
    if b.len() != TRACE_ID_DIGITS {
        return None;
    }
    Some((hex_word(&b[..16])?, hex_word(&b[16..])?))
}

/// The text of a trace id packed by [`pack_trace_id`].
pub fn trace_id_bytes(hi: u64, lo: u64) -> [u8; TRACE_ID_DIGITS] {
    let mut out = [0; TRACE_ID_DIGITS];
    out[..16].copy_from_slice(&hex_digits(hi));
    out[16..].copy_from_slice(&hex_digits(lo));
    out
}

/// The 16 lowercase hex digits of `value`, computed in registers: each nibble spread
/// into a byte of its own, then all 16 turned into digits at once (a table lookup
/// per byte, stored byte by byte, stalled the response writer's reads of the text).
fn hex_digits(value: u64) -> [u8; 16] {
    const fn repeat(byte: u8) -> u128 {
        u128::from_ne_bytes([byte; 16])
    }
    let mut v = u128::from(value);
    v = (v | v << 32) & 0x0000_0000_ffff_ffff_0000_0000_ffff_ffff;
    v = (v | v << 16) & 0x0000_ffff_0000_ffff_0000_ffff_0000_ffff;
    v = (v | v << 8) & 0x00ff_00ff_00ff_00ff_00ff_00ff_00ff_00ff;
    v = (v | v << 4) & repeat(0x0f);
    // Byte i holds nibble i; a byte of 10 or more gets bit 4 set by adding 6.
    let letters = ((v + repeat(6)) >> 4) & repeat(1);
    let digits = v + repeat(b'0') + letters * u128::from(b'a' - b'0' - 10);
    digits.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_text_is_what_display_prints() {
        for octet in 0..=255u8 {
            for at in 0..4 {
                let mut octets = [10, 200, 1, 12];
                octets[at] = octet;
                let ip = Ipv4Addr::from(octets);
                assert_eq!(ipv4_text(ip), ip.to_string());
            }
        }
    }

    #[test]
    fn ipv4_texts_parse_as_the_standard_parser_parses_them() {
        let mut texts: Vec<String> = [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.1",
            "256.0.0.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.2.3.04",
            "1..2.3",
            ".1.2.3",
            "1.2.3.",
            "1.2.3.4 ",
            "",
            "1000.1.1.1",
            "1.2.3.-4",
            "+1.2.3.4",
            "1.2.3.4a",
            "0.00.0.0",
        ]
        .iter()
        .map(|t| (*t).to_string())
        .collect();
        for a in 0..=300u16 {
            texts.push(format!("{a}.{}.7.{a}", 300 - a));
            texts.push(format!("0{a}.1.1.1"));
        }
        for text in texts {
            assert_eq!(
                parse_ipv4(text.as_bytes()),
                text.parse::<Ipv4Addr>().ok(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn hex_digits_are_what_format_prints() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let edges = [0, 1, 9, 10, 15, 16, 0xa0, u64::MAX, u64::MAX / 3, 1 << 63];
        for value in edges.into_iter().chain((0..10_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })) {
            assert_eq!(hex_digits(value), format!("{value:016x}").as_bytes());
            let digits = format!("{value:016x}{:016x}", !value);
            assert_eq!(trace_id_bytes(value, !value), digits.as_bytes());
            let uuid = format!(
                "{}-{}-{}-{}-{}",
                &digits[..8],
                &digits[8..12],
                &digits[12..16],
                &digits[16..20],
                &digits[20..]
            );
            assert_eq!(uuid_bytes(value, !value), uuid.as_bytes());
            let mac = value & 0xffff_ffff_ffff;
            let octets = &mac.to_be_bytes()[2..];
            let expected: Vec<String> = octets.iter().map(|o| format!("{o:02x}")).collect();
            assert_eq!(mac_text(mac), expected.join(":"));
        }
    }

    #[test]
    fn texts_round_trip_or_are_refused() {
        for ip in ["10.0.0.1", "fd00::1", "::", "2001:db8::8:800:200c:417a", ""] {
            let (kind, hi, lo) = pack_ip(ip).unwrap_or_else(|| panic!("{ip}"));
            assert_eq!(ip_bytes(kind, hi, lo).as_bytes(), ip.as_bytes());
        }
        for bad in ["010.0.0.1", "FD00::1", "fd00:0::1", "1.2.3.4 ", "x"] {
            assert_eq!(pack_ip(bad), None, "{bad}");
        }
        let mac = "0a:1b:2c:3d:4e:5f";
        assert_eq!(pack_mac(mac).map(mac_text).as_deref(), Some(mac));
        assert_eq!(pack_mac("0A:1b:2c:3d:4e:5f"), None);
        assert_eq!(pack_mac("0a-1b-2c-3d-4e-5f"), None);
        let uuid = "8d0c4d7a-2a46-4a8f-9f0e-0123456789ab";
        let (hi, lo) = pack_uuid(uuid).unwrap_or_default();
        assert_eq!(uuid_bytes(hi, lo), uuid.as_bytes());
        assert_eq!(pack_uuid("8D0C4D7A-2a46-4a8f-9f0e-0123456789ab"), None);
        assert_eq!(pack_uuid("8d0c4d7a2a464a8f9f0e0123456789ab"), None);
        assert_eq!(pack_uuid("8d0c4d7a-2a46-4a8f-9f0e-0123456789a-"), None);
        assert_eq!(pack_uuid("8d0c4d7a-2a46-4a8f-9f0e-0123-456789ab"), None);
        for trace in [
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "00000000000000000000000000000000",
        ] {
            let (hi, lo) = pack_trace_id(trace).unwrap_or_default();
            assert_eq!(trace_id_bytes(hi, lo), trace.as_bytes());
        }
        for bad in [
            "4BF92F3577B34DA6A3CE929D0E0E4736",
            "4bf92f3577b34da6a3ce929d0e0e473",
            "4bf92f3577b34da6a3ce929d0e0e47366",
            "4bf92f3577b34da6-3ce929d0e0e4736",
            "",
        ] {
            assert_eq!(pack_trace_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_byte_that_is_not_a_lowercase_hex_digit_is_refused_anywhere() {
        type Packed = fn(&str) -> Option<(u64, u64)>;
        type Printed = fn(u64, u64) -> Vec<u8>;
        let forms: [(&str, Packed, Printed); 2] = [
            (
                "4bf92f3577b34da6a3ce929d0e0e4736",
                pack_trace_id,
                |hi, lo| trace_id_bytes(hi, lo).to_vec(),
            ),
            (
                "8d0c4d7a-2a46-4a8f-9f0e-0123456789ab",
                pack_uuid,
                |hi, lo| uuid_bytes(hi, lo).to_vec(),
            ),
        ];
        for byte in 0..=255u8 {
            let hex = byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte);
            for (form, pack, print) in forms {
                // Every position but the UUID's dashes.
                for at in (0..form.len()).filter(|&at| form.as_bytes()[at] != b'-') {
                    let mut text = form.as_bytes().to_vec();
                    text[at] = byte;
                    let text = String::from_utf8_lossy(&text);
                    let packed = pack(&text);
                    assert_eq!(packed.is_some(), hex, "{text:?}");
                    if let Some((hi, lo)) = packed {
                        assert_eq!(print(hi, lo), text.as_bytes());
                    }
                }
            }
            assert_eq!(hex_digit(byte).is_some(), hex);
        }
    }
}
