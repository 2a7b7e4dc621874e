use chrono::{TimeZone, Utc};

use super::*;

fn ts(seconds: i64, nanos: i32) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp { seconds, nanos }
}

fn fmt(layout: TimeLayout, t: &pbjson_types::Timestamp) -> String {
    let mut out = String::new();
    write_timestamp(&mut out, layout, Some(t));
    out
}

#[test]
fn formats_every_layout() {
    let t = ts(1_721_920_405, 416_789_123);
    let got: Vec<String> = FORMAT_NAMES
        .iter()
        .map(|name| format!("{name}: {}", fmt(TimeLayout::from_name(name), &t)))
        .collect();
    expect_test::expect![[r#"
        YearMonthDay: 2024-07-25
        YearMonthDayHour: 2024-07-25T15Z
        YearMonthDayHourMinute: 2024-07-25T15:13Z
        StampMilli: Jul 25 15:13:25.416
        RFC3339: 2024-07-25T15:13:25Z
        RFC3339Milli: 2024-07-25T15:13:25.416Z
        RFC3339Micro: 2024-07-25T15:13:25.416789Z
        RFC3339Nano: 2024-07-25T15:13:25.416789123Z
        RFC1123Z: Thu, 25 Jul 2024 15:13:25 +0000"#]]
    .assert_eq(&got.join("\n"));
}

#[test]
fn trims_fractions_and_pads_days() {
    // Upstream's printer tests: 1234.5678 seconds after the epoch.
    assert_eq!(
        fmt(TimeLayout::StampMilli, &ts(1234, 567_800_000)),
        "Jan  1 00:20:34.567"
    );
    assert_eq!(
        fmt(TimeLayout::StampMilli, &ts(0, 0)),
        "Jan  1 00:00:00.000"
    );
    assert_eq!(
        fmt(TimeLayout::StampMilli, &ts(1_530_984_600, 123_000_000)),
        "Jul  7 17:30:00.123"
    );
    assert_eq!(
        fmt(TimeLayout::Rfc3339Milli, &ts(0, 500_000_000)),
        "1970-01-01T00:00:00.5Z"
    );
    assert_eq!(
        fmt(TimeLayout::Rfc3339Micro, &ts(0, 0)),
        "1970-01-01T00:00:00Z"
    );
    assert_eq!(
        fmt(TimeLayout::Rfc3339Nano, &ts(0, 1_000)),
        "1970-01-01T00:00:00.000001Z"
    );
    assert_eq!(
        fmt(TimeLayout::Rfc3339Milli, &ts(0, 999_999)),
        "1970-01-01T00:00:00Z"
    );
}

#[test]
fn invalid_timestamps_are_not_available() {
    assert_eq!(fmt(TimeLayout::StampMilli, &ts(-1, -1)), "N/A");
    assert_eq!(
        fmt(TimeLayout::StampMilli, &ts(MAX_VALID_SECONDS + 1, 0)),
        "N/A"
    );
    let mut out = String::new();
    write_timestamp(&mut out, TimeLayout::StampMilli, None);
    assert_eq!(out, "N/A");
}

#[test]
fn unknown_format_names_mean_stamp_milli() {
    assert_eq!(
        TimeLayout::from_name("rfc3339NANO"),
        TimeLayout::Rfc3339Nano
    );
    assert_eq!(TimeLayout::from_name("kitchen"), TimeLayout::StampMilli);
}

#[test]
fn parses_relative_times() {
    let now = Utc.with_ymd_and_hms(2024, 7, 25, 15, 0, 0).unwrap();
    assert_eq!(
        parse_time("5m", now).unwrap(),
        Utc.with_ymd_and_hms(2024, 7, 25, 14, 55, 0).unwrap()
    );
    assert_eq!(
        parse_time("1h30m", now).unwrap(),
        Utc.with_ymd_and_hms(2024, 7, 25, 13, 30, 0).unwrap()
    );
    assert_eq!(
        parse_time("-1h", now).unwrap(),
        Utc.with_ymd_and_hms(2024, 7, 25, 16, 0, 0).unwrap()
    );
}

#[test]
fn parses_absolute_layouts() {
    let now = Utc::now();
    let cases = [
        ("2024-07-25", "2024-07-25T00:00:00Z"),
        ("2024-07-25T15Z", "2024-07-25T15:00:00Z"),
        ("2024-07-25T15+02:00", "2024-07-25T13:00:00Z"),
        ("2024-07-25T15:13Z", "2024-07-25T15:13:00Z"),
        ("2024-07-25T15:13-01:30", "2024-07-25T16:43:00Z"),
        ("2024-07-25T15:13:25Z", "2024-07-25T15:13:25Z"),
        ("2024-07-25T15:13:25.123Z", "2024-07-25T15:13:25.123Z"),
        (
            "2024-07-25T15:13:25.123456789+01:00",
            "2024-07-25T14:13:25.123456789Z",
        ),
        ("Thu, 25 Jul 2024 15:13:25 +0200", "2024-07-25T13:13:25Z"),
    ];
    for (input, want) in cases {
        let got = parse_time(input, now).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(
            got.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            want,
            "{input}"
        );
    }
}

#[test]
fn rejects_bad_times_naming_them() {
    let now = Utc::now();
    for input in [
        "yesterday",
        "2024-13-01",
        "2024-02-30",
        "2024-07-25T25Z",
        "2024-07-25T15:13:25",
        "Jul 25 15:13:25.416",
        "2024-07-25 15:13:25Z",
        "",
    ] {
        let err = parse_time(input, now).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("failed to convert {input} to time")
        );
    }
}
