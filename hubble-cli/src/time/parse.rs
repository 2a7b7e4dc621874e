//! `--since`/`--until` values: a Go duration in the past (`5m`, `1h30m`) or one of the
//! absolute layouts upstream accepts (`2006-01-02`, `2006-01-02T15Z07:00`,
//! `2006-01-02T15:04Z07:00`, RFC 3339 with an optional fraction, RFC 1123 with a
//! numeric zone).

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};

use super::parse_duration;

/// A time value that is neither a duration nor one of the accepted layouts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to convert {0} to time")]
pub struct TimeParseError(pub String);

/// Parses `input` relative to `now` (durations count back from it).
pub fn parse_time(input: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, TimeParseError> {
    let err = || TimeParseError(input.to_string());
    if let Ok(nanos) = parse_duration(input) {
        return now
            .checked_sub_signed(Duration::nanoseconds(nanos))
            .ok_or_else(err);
    }
    parse_layouts(input).ok_or_else(err)
}

fn parse_layouts(input: &str) -> Option<DateTime<Utc>> {
    if let Some(t) = parse_rfc1123z(input) {
        return Some(t);
    }
    let mut cur = Cursor(input.as_bytes());
    let date = cur.date()?;
    if cur.0.is_empty() {
        return Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0)?).into();
    }
    cur.literal(b'T')?;
    let hour = cur.number(2, 0, 23)?;
    let (mut minute, mut second, mut nanos) = (0, 0, 0);
    if cur.peek() == Some(b':') {
        cur.literal(b':')?;
        minute = cur.number(2, 0, 59)?;
        if cur.peek() == Some(b':') {
            cur.literal(b':')?;
            second = cur.number(2, 0, 59)?;
            nanos = cur.fraction()?;
        }
    }
    let offset = cur.zone_rfc3339()?;
    if !cur.0.is_empty() {
        return None;
    }
    let naive = date.and_hms_nano_opt(hour, minute, second, nanos)?;
    let utc = naive.checked_sub_signed(Duration::seconds(offset))?;
    Some(Utc.from_utc_datetime(&utc))
}

/// `Mon, 02 Jan 2006 15:04:05 -0700` (the weekday is checked for spelling only, as Go
/// does).
fn parse_rfc1123z(input: &str) -> Option<DateTime<Utc>> {
    let mut cur = Cursor(input.as_bytes());
    let day_name = cur.take(3)?;
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    if !DAYS
        .iter()
        .any(|d| d.as_bytes().eq_ignore_ascii_case(day_name))
    {
        return None;
    }
    cur.literal(b',')?;
    cur.literal(b' ')?;
    let day = cur.number(2, 1, 31)?;
    cur.literal(b' ')?;
    let month_name = cur.take(3)?;
    let month = (1..=12u32).find(|m| {
        super::month_abbr(*m)
            .as_bytes()
            .eq_ignore_ascii_case(month_name)
    })?;
    cur.literal(b' ')?;
    let year = cur.number(4, 0, 9999)?;
    cur.literal(b' ')?;
    let hour = cur.number(2, 0, 23)?;
    cur.literal(b':')?;
    let minute = cur.number(2, 0, 59)?;
    cur.literal(b':')?;
    let second = cur.number(2, 0, 59)?;
    let nanos = cur.fraction()?;
    cur.literal(b' ')?;
    let sign = match cur.take(1)? {
        b"+" => 1,
        b"-" => -1,
        _ => return None,
    };
    let zh = cur.number(2, 0, 99)?;
    let zm = cur.number(2, 0, 99)?;
    if !cur.0.is_empty() {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    let naive = date.and_hms_nano_opt(hour, minute, second, nanos)?;
    let offset = sign * i64::from(zh * 3600 + zm * 60);
    let utc = naive.checked_sub_signed(Duration::seconds(offset))?;
    Some(Utc.from_utc_datetime(&utc))
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn literal(&mut self, b: u8) -> Option<()> {
        (self.take(1)? == [b]).then_some(())
    }

    /// Exactly `digits` ASCII digits whose value lies in `min..=max`.
    fn number(&mut self, digits: usize, min: u32, max: u32) -> Option<u32> {
        let raw = self.take(digits)?;
        if !raw.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let value = raw
            .iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
        (min..=max).contains(&value).then_some(value)
    }

    fn date(&mut self) -> Option<NaiveDate> {
        let year = self.number(4, 0, 9999)?;
        self.literal(b'-')?;
        let month = self.number(2, 1, 12)?;
        self.literal(b'-')?;
        let day = self.number(2, 1, 31)?;
        NaiveDate::from_ymd_opt(year as i32, month, day)
    }

    /// An optional `.ddd` or `,ddd` fraction of a second (Go accepts one after the
    /// seconds even when the layout has none), as nanoseconds.
    fn fraction(&mut self) -> Option<u32> {
        match self.peek() {
            Some(b'.') | Some(b',') => {}
            _ => return Some(0),
        }
        self.0 = &self.0[1..];
        let len = self.0.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        let digits = &self.0[..len];
        self.0 = &self.0[len..];
        let mut nanos = 0u32;
        for (i, d) in digits.iter().take(9).enumerate() {
            nanos += u32::from(d - b'0') * 10u32.pow(8 - i as u32);
        }
        Some(nanos)
    }

    /// `Z` or `+hh:mm`/`-hh:mm`, as seconds east of UTC.
    fn zone_rfc3339(&mut self) -> Option<i64> {
        match self.take(1)? {
            b"Z" => Some(0),
            [sign @ (b'+' | b'-')] => {
                let sign = if *sign == b'+' { 1 } else { -1 };
                let hours = self.number(2, 0, 23)?;
                self.literal(b':')?;
                let minutes = self.number(2, 0, 59)?;
                Some(sign * i64::from(hours * 3600 + minutes * 60))
            }
            _ => None,
        }
    }
}
