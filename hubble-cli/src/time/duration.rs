//! Go's `time.ParseDuration` and `time.Duration.String`, which upstream uses for relative
//! `--since`/`--until` values, duration flags and the uptimes it prints.

use std::fmt::Write as _;

/// A duration string that Go's `time.ParseDuration` rejects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("time: invalid duration {0:?}")]
    Invalid(String),
    #[error("time: missing unit in duration {0:?}")]
    MissingUnit(String),
    #[error("time: unknown unit {unit:?} in duration {input:?}")]
    UnknownUnit { unit: String, input: String },
}

const NANOS_PER_UNIT: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a Go duration such as `5m`, `1h30m`, `1.5h` or `-300ms` into signed
/// nanoseconds, with Go's grammar, overflow rules and error messages.
pub fn parse_duration(input: &str) -> Result<i64, DurationError> {
    let invalid = || DurationError::Invalid(input.to_string());
    let mut s = input;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let bytes = s.as_bytes();
        if !(bytes[0] == b'.' || bytes[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
        let int_part = &s[..int_len];
        s = &s[int_len..];
        let mut frac_part = "";
        if let Some(rest) = s.strip_prefix('.') {
            let frac_len = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
            frac_part = &rest[..frac_len];
            s = &rest[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = s
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map(|(i, _)| i)
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(DurationError::MissingUnit(input.to_string()));
        }
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let Some(&(_, scale)) = NANOS_PER_UNIT.iter().find(|(name, _)| *name == unit) else {
            return Err(DurationError::UnknownUnit {
                unit: unit.to_string(),
                input: input.to_string(),
            });
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut value = whole.checked_mul(scale).ok_or_else(invalid)?;
        // Go keeps the fraction exact by scaling it digit by digit and truncating.
        let mut frac_scale = scale;
        for digit in frac_part.bytes() {
            frac_scale /= 10;
            if frac_scale == 0 {
                break;
            }
            value += u128::from(digit - b'0') * frac_scale;
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > 1u128 << 63 {
            return Err(invalid());
        }
    }
    if negative {
        Ok((total as i128).wrapping_neg() as i64)
    } else if total > i64::MAX as u128 {
        Err(invalid())
    } else {
        Ok(total as i64)
    }
}

/// Formats signed nanoseconds as Go's `time.Duration.String` does (`1m40s`,
/// `5m1.515181665s`, `1.5µs`, `0s`).
pub fn format_duration(nanos: i64) -> String {
    let negative = nanos < 0;
    let mut u = nanos.unsigned_abs();
    let mut out = String::new();
    if u < 1_000_000_000 {
        let (unit, scale) = match u {
            0 => return "0s".to_string(),
            1..=999 => ("ns", 1),
            1_000..=999_999 => ("\u{b5}s", 1_000),
            _ => ("ms", 1_000_000),
        };
        write_fraction(&mut out, u, scale);
        out.push_str(unit);
    } else {
        let hours = u / 3_600_000_000_000;
        u %= 3_600_000_000_000;
        let minutes = u / 60_000_000_000;
        u %= 60_000_000_000;
        if hours > 0 {
            let _ = write!(out, "{hours}h");
        }
        if hours > 0 || minutes > 0 {
            let _ = write!(out, "{minutes}m");
        }
        write_fraction(&mut out, u, 1_000_000_000);
        out.push('s');
    }
    if negative {
        out.insert(0, '-');
    }
    out
}

/// Writes `value / scale` with the fraction's trailing zeros removed.
fn write_fraction(out: &mut String, value: u64, scale: u64) {
    let whole = value / scale;
    let mut frac = value % scale;
    let _ = write!(out, "{whole}");
    if frac == 0 {
        return;
    }
    let mut digits = scale.trailing_zeros_decimal();
    while frac.is_multiple_of(10) {
        frac /= 10;
        digits -= 1;
    }
    let _ = write!(out, ".{frac:0width$}", width = digits as usize);
}

trait DecimalZeros {
    fn trailing_zeros_decimal(self) -> u32;
}

impl DecimalZeros for u64 {
    fn trailing_zeros_decimal(self) -> u32 {
        let mut n = self;
        let mut count = 0;
        while n >= 10 && n.is_multiple_of(10) {
            n /= 10;
            count += 1;
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_duration("5m"), Ok(300_000_000_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_duration("-300ms"), Ok(-300_000_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("2us"), Ok(2_000));
        assert_eq!(parse_duration(".5s"), Ok(500_000_000));
        assert_eq!(
            parse_duration("5"),
            Err(DurationError::MissingUnit("5".into()))
        );
        assert_eq!(
            parse_duration("5x"),
            Err(DurationError::UnknownUnit {
                unit: "x".into(),
                input: "5x".into()
            })
        );
        assert_eq!(parse_duration(""), Err(DurationError::Invalid("".into())));
        assert_eq!(
            parse_duration("1h43,"),
            Err(DurationError::UnknownUnit {
                unit: ",".into(),
                input: "1h43,".into()
            })
        );
        assert!(parse_duration("9999999999h").is_err());
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_duration(301_515_181_665), "5m1.515181665s");
        assert_eq!(format_duration(100_000_000_000), "1m40s");
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(1_500), "1.5\u{b5}s");
        assert_eq!(format_duration(12_000_000_000), "12s");
        assert_eq!(format_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(format_duration(-2_000_000), "-2ms");
    }
}
