//! Timestamps of access logs, as Unix milliseconds plus the UTC offset they
//! were written in.
//!
//! CLF's `[10/Oct/2000:13:55:36 -0700]` is parsed by hand (fixed width, on the
//! hot path, cross-checked against the `time` crate in tests); JSON `ts`
//! accepts RFC 3339 strings (via `time`) or Unix time numbers.

use ::time::OffsetDateTime;
use ::time::format_description::well_known::Rfc3339;

use super::MalformedReason;

/// Unix seconds of 9999-12-31T23:59:59Z, the latest accepted time.
const MAX_UNIX_S: i64 = 253_402_300_799;
/// Integers at or above this are read as Unix *milliseconds* (10^11 seconds
/// would be the year 5138).
pub const MILLIS_THRESHOLD: f64 = 1e11;

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut v: u32 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

fn month_from_abbrev(b: &[u8]) -> Option<u32> {
    Some(match b {
        b"Jan" => 1,
        b"Feb" => 2,
        b"Mar" => 3,
        b"Apr" => 4,
        b"May" => 5,
        b"Jun" => 6,
        b"Jul" => 7,
        b"Aug" => 8,
        b"Sep" => 9,
        b"Oct" => 10,
        b"Nov" => 11,
        b"Dec" => 12,
        _ => return None,
    })
}

/// Parses CLF's `dd/Mon/yyyy:HH:MM:SS ±hhmm` (the text between the brackets).
/// Returns (Unix ms, UTC offset in minutes).
pub fn parse_clf_time(s: &str) -> Result<(i64, i16), MalformedReason> {
    let bad = || {
        MalformedReason::bad(
            "time",
            format!(
                "{:?} is not dd/Mon/yyyy:HH:MM:SS ±hhmm",
                super::truncate(s, 40)
            ),
        )
    };
    let b = s.as_bytes();
    if b.len() != 26
        || b[2] != b'/'
        || b[6] != b'/'
        || b[11] != b':'
        || b[14] != b':'
        || b[17] != b':'
        || b[20] != b' '
    {
        return Err(bad());
    }
    let day = digits(&b[0..2]).ok_or_else(bad)?;
    let month = month_from_abbrev(&b[3..6]).ok_or_else(bad)?;
    let year = i64::from(digits(&b[7..11]).ok_or_else(bad)?);
    let hour = digits(&b[12..14]).ok_or_else(bad)?;
    let minute = digits(&b[15..17]).ok_or_else(bad)?;
    let second = digits(&b[18..20]).ok_or_else(bad)?;
    let sign: i64 = match b[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return Err(bad()),
    };
    let off_h = digits(&b[22..24]).ok_or_else(bad)?;
    let off_m = digits(&b[24..26]).ok_or_else(bad)?;
    if year < 1970
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
        || off_h > 23
        || off_m > 59
    {
        return Err(bad());
    }
    // A leap second (:60) is folded onto :59.
    let second = second.min(59);
    let offset_min = sign * i64::from(off_h * 60 + off_m);
    let local_s =
        days_from_civil(year, month, day) * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    let utc_s = local_s - offset_min * 60;
    if !(0..=MAX_UNIX_S).contains(&utc_s) {
        return Err(bad());
    }
    // |offset| ≤ 23*60+59 fits i16.
    Ok((utc_s * 1000, offset_min as i16))
}

/// Parses an RFC 3339 timestamp (`2024-03-04T12:00:00.250+01:00`).
pub fn parse_rfc3339(s: &str) -> Result<(i64, i16), MalformedReason> {
    let bad = |e: &dyn std::fmt::Display| {
        MalformedReason::bad("ts", format!("{:?}: {e}", super::truncate(s, 40)))
    };
    let dt = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| bad(&e))?;
    let ms = dt.unix_timestamp_nanos() / 1_000_000;
    let ms = i64::try_from(ms).map_err(|e| bad(&e))?;
    if !(0..=MAX_UNIX_S * 1000).contains(&ms) {
        return Err(bad(&"before 1970 or after 9999"));
    }
    let offset_min = dt.offset().whole_minutes();
    Ok((ms, offset_min))
}

/// Parses ISO 8601 as servers write it: `2024-03-04T09:15:02+01:00`
/// (nginx `$time_iso8601`), with or without fractional seconds, with `Z`,
/// `±hh:mm`, `±hhmm` or `±hh`, and a `T` or a space between date and time.
/// Returns (Unix ms, UTC offset in minutes).
pub fn parse_iso8601(s: &str) -> Result<(i64, i16), MalformedReason> {
    let bad = || {
        MalformedReason::bad(
            "time",
            format!("{:?} is not an ISO 8601 timestamp", super::truncate(s, 40)),
        )
    };
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let year = i64::from(digits(&b[0..4]).ok_or_else(bad)?);
    let month = digits(&b[5..7]).ok_or_else(bad)?;
    let day = digits(&b[8..10]).ok_or_else(bad)?;
    let hour = digits(&b[11..13]).ok_or_else(bad)?;
    let minute = digits(&b[14..16]).ok_or_else(bad)?;
    let second = digits(&b[17..19]).ok_or_else(bad)?;
    let mut i = 19;
    let mut millis = 0u32;
    if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 || n > 9 {
            return Err(bad());
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_min: i64 = match &b[i..] {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (h, m) = match rest {
                [h1, h2] => (digits(&[*h1, *h2]), Some(0)),
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => {
                    (digits(&[*h1, *h2]), digits(&[*m1, *m2]))
                }
                _ => return Err(bad()),
            };
            let (h, m) = (h.ok_or_else(bad)?, m.ok_or_else(bad)?);
            if h > 23 || m > 59 {
                return Err(bad());
            }
            let v = i64::from(h * 60 + m);
            if *sign == b'-' { -v } else { v }
        }
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&month)
        || year < 1970
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    let second = second.min(59);
    let local_s =
        days_from_civil(year, month, day) * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    let utc_s = local_s - offset_min * 60;
    if !(0..=MAX_UNIX_S).contains(&utc_s) {
        return Err(bad());
    }
    Ok((utc_s * 1000 + i64::from(millis), offset_min as i16))
}

/// Which unit an epoch timestamp field is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochUnit {
    /// Seconds, optionally with a fraction (nginx `$msec`, Apache `%{sec}t`).
    Seconds,
    /// Milliseconds (Apache `%{msec}t`).
    Millis,
    /// Microseconds (Apache `%{usec}t`).
    Micros,
}

/// Parses an epoch timestamp written as text (`1709543702.123`,
/// `1709543702123`). The offset is UTC.
pub fn parse_epoch_text(s: &str, unit: EpochUnit) -> Result<(i64, i16), MalformedReason> {
    let bad = || {
        MalformedReason::bad(
            "time",
            format!("{:?} is not a Unix timestamp", super::truncate(s, 40)),
        )
    };
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) if unit == EpochUnit::Seconds => (i, f),
        Some(_) => return Err(bad()),
        None => (s, ""),
    };
    if int.is_empty()
        || int.len() > 18
        || !int.bytes().all(|c| c.is_ascii_digit())
        || frac.len() > 9
        || !frac.bytes().all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    let v: i64 = int.parse().map_err(|_| bad())?;
    let ms = match unit {
        EpochUnit::Seconds => {
            let mut f = 0i64;
            for (k, c) in frac.bytes().take(3).enumerate() {
                f += i64::from(c - b'0') * [100, 10, 1][k];
            }
            v.checked_mul(1000).ok_or_else(bad)? + f
        }
        EpochUnit::Millis => v,
        EpochUnit::Micros => v / 1000,
    };
    if !(0..=MAX_UNIX_S * 1000).contains(&ms) {
        return Err(bad());
    }
    Ok((ms, 0))
}

/// Interprets a numeric JSON `ts`: Unix seconds (fractions allowed), or Unix
/// milliseconds when ≥ [`MILLIS_THRESHOLD`]. The offset is UTC.
pub fn parse_unix_number(v: f64) -> Result<(i64, i16), MalformedReason> {
    if !v.is_finite() || v < 0.0 {
        return Err(MalformedReason::bad(
            "ts",
            format!("{v} is not a Unix time"),
        ));
    }
    let ms = if v >= MILLIS_THRESHOLD { v } else { v * 1000.0 };
    if ms > (MAX_UNIX_S * 1000) as f64 {
        return Err(MalformedReason::bad("ts", format!("{v} is after 9999")));
    }
    Ok((ms.floor() as i64, 0))
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01
/// (Hinnant's algorithm, inverse of [`days_from_civil`]).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

struct Local {
    year: i64,
    month: u32,
    day: u32,
    hour: i64,
    minute: i64,
    second: i64,
    millis: i64,
    sign: char,
    off_h: i64,
    off_m: i64,
}

fn local(ts_ms: i64, utc_offset_min: i16) -> Local {
    let local_ms = ts_ms + i64::from(utc_offset_min) * 60_000;
    let days = local_ms.div_euclid(86_400_000);
    let in_day = local_ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let off = i64::from(utc_offset_min);
    Local {
        year,
        month,
        day,
        hour: in_day / 3_600_000,
        minute: in_day / 60_000 % 60,
        second: in_day / 1000 % 60,
        millis: in_day % 1000,
        sign: if off < 0 { '-' } else { '+' },
        off_h: off.abs() / 60,
        off_m: off.abs() % 60,
    }
}

/// Formats a time as CLF's `dd/Mon/yyyy:HH:MM:SS ±hhmm` (seconds precision).
pub fn format_clf_time(ts_ms: i64, utc_offset_min: i16) -> String {
    let l = local(ts_ms, utc_offset_min);
    format!(
        "{:02}/{}/{:04}:{:02}:{:02}:{:02} {}{:02}{:02}",
        l.day,
        MONTHS[(l.month - 1) as usize],
        l.year,
        l.hour,
        l.minute,
        l.second,
        l.sign,
        l.off_h,
        l.off_m
    )
}

/// Formats a time as RFC 3339 with milliseconds and the offset
/// (`2024-03-04T09:15:02.125+01:00`).
pub fn format_rfc3339(ts_ms: i64, utc_offset_min: i16) -> String {
    let l = local(ts_ms, utc_offset_min);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}{}{:02}:{:02}",
        l.year, l.month, l.day, l.hour, l.minute, l.second, l.millis, l.sign, l.off_h, l.off_m
    )
}

/// Local hour of day (0–23) of a timestamp with its UTC offset.
pub fn local_hour(ts_ms: i64, utc_offset_min: i16) -> u32 {
    let local_s = ts_ms.div_euclid(1000) + i64::from(utc_offset_min) * 60;
    (local_s.rem_euclid(86_400) / 3600) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::time::format_description;

    #[test]
    fn clf_examples() {
        // Apache documentation example.
        assert_eq!(
            parse_clf_time("10/Oct/2000:13:55:36 -0700"),
            Ok((971_211_336_000, -420))
        );
        assert_eq!(parse_clf_time("01/Jan/1970:00:00:00 +0000"), Ok((0, 0)));
        assert_eq!(
            parse_clf_time("29/Feb/2024:23:59:60 +0530"),
            Ok(((1_709_251_199 - 330 * 60) * 1000, 330))
        );
    }

    #[test]
    fn clf_rejects_impossible_dates() {
        for s in [
            "30/Feb/2024:00:00:00 +0000",
            "29/Feb/2023:00:00:00 +0000",
            "10/Foo/2000:13:55:36 -0700",
            "10/Oct/2000:24:00:00 -0700",
            "10/Oct/2000:13:55:36 0700",
            "10/Oct/2000:13:55:36 -07:00",
            "1/Oct/2000:13:55:36 -0700",
            "00/Oct/2000:13:55:36 -0700",
            "10/Oct/1969:13:55:36 -0700",
            "",
            "10/Oct/2000:13:5x:36 -0700",
        ] {
            assert!(parse_clf_time(s).is_err(), "{s}");
        }
    }

    #[test]
    fn clf_agrees_with_the_time_crate() {
        let fmt = format_description::parse_borrowed::<2>(
            "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]",
        )
        .unwrap();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let months = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        for _ in 0..2000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = state >> 11;
            let year = 1971 + (r % 120) as i64;
            let month = 1 + ((r >> 8) % 12) as u32;
            let day = 1 + ((r >> 12) % u64::from(days_in_month(year, month))) as u32;
            let (h, mi, se) = ((r >> 20) % 24, (r >> 25) % 60, (r >> 31) % 60);
            let (oh, om) = ((r >> 37) % 15, [0, 30, 45][((r >> 41) % 3) as usize]);
            let sign = if (r >> 43).is_multiple_of(2) {
                '+'
            } else {
                '-'
            };
            let s = format!(
                "{day:02}/{}/{year}:{h:02}:{mi:02}:{se:02} {sign}{oh:02}{om:02}",
                months[(month - 1) as usize]
            );
            let reference = OffsetDateTime::parse(&s, &fmt).unwrap();
            let (ms, off) = parse_clf_time(&s).unwrap();
            assert_eq!(ms, reference.unix_timestamp() * 1000, "{s}");
            assert_eq!(off, reference.offset().whole_minutes(), "{s}");
        }
    }

    #[test]
    fn rfc3339_and_numbers() {
        assert_eq!(
            parse_rfc3339("2000-10-10T13:55:36.250-07:00"),
            Ok((971_211_336_250, -420))
        );
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01Z"), Ok((1000, 0)));
        assert!(parse_rfc3339("2000-10-10 13:55:36").is_err());
        assert!(parse_rfc3339("yesterday").is_err());
        assert_eq!(parse_unix_number(971_211_336.25), Ok((971_211_336_250, 0)));
        assert_eq!(
            parse_unix_number(971_211_336_250.0),
            Ok((971_211_336_250, 0))
        );
        assert!(parse_unix_number(f64::NAN).is_err());
        assert!(parse_unix_number(-1.0).is_err());
        assert!(parse_unix_number(1e300).is_err());
    }

    #[test]
    fn formatting_roundtrips_through_the_parsers() {
        for (ts, off) in [
            (971_211_336_250i64, -420i16),
            (0, 0),
            (1_709_251_199_999, 330),
            (951_782_400_000, -600),
            (4_102_444_800_000, 59),
        ] {
            let clf = format_clf_time(ts, off);
            assert_eq!(
                parse_clf_time(&clf),
                Ok((ts - ts.rem_euclid(1000), off)),
                "{clf}"
            );
            let rfc = format_rfc3339(ts, off);
            assert_eq!(parse_rfc3339(&rfc), Ok((ts, off)), "{rfc}");
        }
        assert_eq!(
            format_clf_time(971_211_336_000, -420),
            "10/Oct/2000:13:55:36 -0700"
        );
        assert_eq!(
            format_rfc3339(971_211_336_250, 60),
            "2000-10-10T21:55:36.250+01:00"
        );
        for d in [-800_000i64, -1, 0, 59, 60, 11_016, 2_932_896] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn iso8601_as_servers_write_it() {
        let want = (971_211_336_000, -420);
        for s in [
            "2000-10-10T13:55:36-07:00",
            "2000-10-10T13:55:36-0700",
            "2000-10-10T13:55:36-07",
            "2000-10-10 13:55:36-07:00",
        ] {
            assert_eq!(parse_iso8601(s), Ok(want), "{s}");
        }
        assert_eq!(
            parse_iso8601("2000-10-10T20:55:36.25Z"),
            Ok((971_211_336_250, 0))
        );
        assert_eq!(
            parse_iso8601("2000-10-10T20:55:36.123456789+00:00"),
            Ok((971_211_336_123, 0))
        );
        for s in [
            "2000-10-10T13:55:36",
            "2000-13-10T13:55:36Z",
            "2000-02-30T13:55:36Z",
            "2000-10-10T13:55:36.Z",
            "2000-10-10T13:55:36+7",
            "2000-10-10T13:55:36+07:0",
            "10/Oct/2000:13:55:36 -0700",
            "",
        ] {
            assert!(parse_iso8601(s).is_err(), "{s}");
        }
        // Agrees with the RFC 3339 parser where both apply.
        assert_eq!(
            parse_iso8601("2024-03-04T09:15:02.125+01:00"),
            parse_rfc3339("2024-03-04T09:15:02.125+01:00").map_err(|_| unreachable!())
        );
    }

    #[test]
    fn epoch_text() {
        assert_eq!(
            parse_epoch_text("971211336.250", EpochUnit::Seconds),
            Ok((971_211_336_250, 0))
        );
        assert_eq!(
            parse_epoch_text("971211336", EpochUnit::Seconds),
            Ok((971_211_336_000, 0))
        );
        assert_eq!(
            parse_epoch_text("971211336250", EpochUnit::Millis),
            Ok((971_211_336_250, 0))
        );
        assert_eq!(
            parse_epoch_text("971211336250999", EpochUnit::Micros),
            Ok((971_211_336_250, 0))
        );
        for (s, u) in [
            ("", EpochUnit::Seconds),
            ("-5", EpochUnit::Seconds),
            ("1.2.3", EpochUnit::Seconds),
            ("12.5", EpochUnit::Millis),
            ("99999999999999999", EpochUnit::Seconds),
            ("1e9", EpochUnit::Seconds),
        ] {
            assert!(parse_epoch_text(s, u).is_err(), "{s}");
        }
    }

    #[test]
    fn local_hours() {
        // 13:55 at -07:00.
        assert_eq!(local_hour(971_211_336_000, -420), 13);
        assert_eq!(local_hour(971_211_336_000, 0), 20);
        assert_eq!(local_hour(0, 330), 5);
    }
}
