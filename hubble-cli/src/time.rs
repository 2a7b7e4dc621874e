//! Time as upstream `hubble` prints and parses it: the named layouts of `--time-format`
//! (Go layouts, always in UTC because protobuf timestamps are converted to UTC), and the
//! relative or absolute values of `--since`/`--until`.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Timelike, Utc};
use proto::json::push_digits;

mod duration;
mod parse;

pub use duration::{format_duration, parse_duration, DurationError};
pub use parse::{parse_time, TimeParseError};

/// Smallest valid protobuf timestamp (0001-01-01T00:00:00Z).
pub const MIN_VALID_SECONDS: i64 = -62_135_596_800;
/// Largest valid protobuf timestamp (9999-12-31T23:59:59Z).
pub const MAX_VALID_SECONDS: i64 = 253_402_300_799;

/// A time format of `--time-format`, named as upstream names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeLayout {
    /// `Jan _2 15:04:05.000`, the default.
    #[default]
    StampMilli,
    /// `2006-01-02`.
    YearMonthDay,
    /// `2006-01-02T15Z07:00`.
    YearMonthDayHour,
    /// `2006-01-02T15:04Z07:00`.
    YearMonthDayHourMinute,
    /// `2006-01-02T15:04:05Z07:00`.
    Rfc3339,
    /// `2006-01-02T15:04:05.999Z07:00`.
    Rfc3339Milli,
    /// `2006-01-02T15:04:05.999999Z07:00`.
    Rfc3339Micro,
    /// `2006-01-02T15:04:05.999999999Z07:00`.
    Rfc3339Nano,
    /// `Mon, 02 Jan 2006 15:04:05 -0700`.
    Rfc1123Z,
}

/// The names `--time-format` accepts, in upstream's order.
pub const FORMAT_NAMES: &[&str] = &[
    "YearMonthDay",
    "YearMonthDayHour",
    "YearMonthDayHourMinute",
    "StampMilli",
    "RFC3339",
    "RFC3339Milli",
    "RFC3339Micro",
    "RFC3339Nano",
    "RFC1123Z",
];

impl TimeLayout {
    /// Maps a format name (any case) to its layout; like upstream, an unknown name
    /// means `StampMilli`.
    pub fn from_name(name: &str) -> Self {
        match name.to_ascii_lowercase().as_str() {
            "yearmonthday" => Self::YearMonthDay,
            "yearmonthdayhour" => Self::YearMonthDayHour,
            "yearmonthdayhourminute" => Self::YearMonthDayHourMinute,
            "rfc3339" => Self::Rfc3339,
            "rfc3339milli" => Self::Rfc3339Milli,
            "rfc3339micro" => Self::Rfc3339Micro,
            "rfc3339nano" => Self::Rfc3339Nano,
            "rfc1123z" => Self::Rfc1123Z,
            _ => Self::StampMilli,
        }
    }
}

/// Appends a protobuf timestamp in `layout`, or `N/A` when it is missing or out of the
/// valid range, as upstream's printer does.
pub fn write_timestamp(out: &mut String, layout: TimeLayout, ts: Option<&pbjson_types::Timestamp>) {
    let Some(ts) = ts else {
        out.push_str("N/A");
        return;
    };
    if !(MIN_VALID_SECONDS..=MAX_VALID_SECONDS).contains(&ts.seconds)
        || !(0..1_000_000_000).contains(&ts.nanos)
    {
        out.push_str("N/A");
        return;
    }
    let Some(t) = DateTime::<Utc>::from_timestamp(ts.seconds, ts.nanos as u32) else {
        out.push_str("N/A");
        return;
    };
    write_time(out, layout, &t);
}

/// Appends `t` (UTC) in `layout`.
pub fn write_time(out: &mut String, layout: TimeLayout, t: &DateTime<Utc>) {
    let nanos = t.nanosecond() % 1_000_000_000;
    let date = |out: &mut String| {
        let _ = write!(out, "{:04}-{:02}-{:02}", t.year(), t.month(), t.day());
    };
    match layout {
        TimeLayout::StampMilli => {
            // "Jan  2 15:04:05.000", the compact output's every line: written digit by
            // digit, not through `format_args!`.
            out.push_str(month_abbr(t.month()));
            out.push(' ');
            if t.day() < 10 {
                out.push(' ');
            }
            out.push_str(itoa::Buffer::new().format(t.day()));
            out.push(' ');
            push_digits(out, i64::from(t.hour()), 2);
            out.push(':');
            push_digits(out, i64::from(t.minute()), 2);
            out.push(':');
            push_digits(out, i64::from(t.second()), 2);
            out.push('.');
            push_digits(out, i64::from(nanos / 1_000_000), 3);
        }
        TimeLayout::YearMonthDay => date(out),
        TimeLayout::YearMonthDayHour => {
            date(out);
            let _ = write!(out, "T{:02}Z", t.hour());
        }
        TimeLayout::YearMonthDayHourMinute => {
            date(out);
            let _ = write!(out, "T{:02}:{:02}Z", t.hour(), t.minute());
        }
        TimeLayout::Rfc3339
        | TimeLayout::Rfc3339Milli
        | TimeLayout::Rfc3339Micro
        | TimeLayout::Rfc3339Nano => {
            date(out);
            let _ = write!(out, "T{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second());
            let digits = match layout {
                TimeLayout::Rfc3339Milli => 3,
                TimeLayout::Rfc3339Micro => 6,
                TimeLayout::Rfc3339Nano => 9,
                _ => 0,
            };
            write_trimmed_fraction(out, nanos, digits);
            out.push('Z');
        }
        TimeLayout::Rfc1123Z => {
            let _ = write!(
                out,
                "{}, {:02} {} {:04} {:02}:{:02}:{:02} +0000",
                weekday_abbr(t.weekday().num_days_from_sunday()),
                t.day(),
                month_abbr(t.month()),
                t.year(),
                t.hour(),
                t.minute(),
                t.second()
            );
        }
    }
}

/// Go's `.999` layouts: up to `digits` truncated digits, trailing zeros removed, and
/// no dot at all when nothing remains.
fn write_trimmed_fraction(out: &mut String, nanos: u32, digits: u32) {
    if digits == 0 {
        return;
    }
    let mut value = nanos / 10u32.pow(9 - digits);
    let mut width = digits as usize;
    if value == 0 {
        return;
    }
    while value.is_multiple_of(10) {
        value /= 10;
        width -= 1;
    }
    let _ = write!(out, ".{value:0width$}");
}

/// Returns `Jan` .. `Dec`.
pub fn month_abbr(month: u32) -> &'static str {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    MONTHS[(month.clamp(1, 12) - 1) as usize]
}

fn weekday_abbr(days_from_sunday: u32) -> &'static str {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    DAYS[(days_from_sunday % 7) as usize]
}

#[cfg(test)]
mod tests;
