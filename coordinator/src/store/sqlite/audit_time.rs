//! Times of the audit export: RFC 3339 UTC timestamps and the `--since`
//! forms `admin audit export` accepts (pure arithmetic, no time crate).

/// `unix_ms` as RFC 3339 UTC with milliseconds (`2026-12-05T23:41:52.123Z`).
pub fn rfc3339(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let ms = unix_ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Parses `--since`: Unix milliseconds, an RFC 3339 UTC time
/// (`2026-12-05T23:00:00Z`, fractional seconds allowed) or a date
/// (`2026-12-05`, midnight UTC), or a duration back from `now_unix_ms`
/// (`90m`, `24h`, `7d`).
pub fn parse_since(s: &str, now_unix_ms: i64) -> Result<i64, String> {
    let s = s.trim();
    let bad = || {
        format!(
            "--since {s:?}: expected Unix ms, an RFC 3339 UTC time (2026-12-05T23:00:00Z), a date \
             (2026-12-05) or a duration back from now (90m, 24h, 7d)"
        )
    };
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    if let Some((n, unit)) = s
        .strip_suffix('m')
        .map(|n| (n, 60_000))
        .or_else(|| s.strip_suffix('h').map(|n| (n, 3_600_000)))
        .or_else(|| s.strip_suffix('d').map(|n| (n, 86_400_000)))
        && let Ok(n) = n.parse::<i64>()
    {
        return Ok(now_unix_ms.saturating_sub(n.saturating_mul(unit)));
    }
    let (date, time) = match s.split_once(['T', 't', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let num = |x: &str| x.parse::<i64>().map_err(|_| bad());
    let mut parts = date.splitn(3, '-');
    let (y, m, d) = match (parts.next(), parts.next(), parts.next()) {
        (Some(y), Some(m), Some(d)) if y.len() == 4 && m.len() == 2 && d.len() == 2 => {
            (num(y)?, num(m)?, num(d)?)
        }
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let mut ms_of_day = 0;
    if let Some(t) = time {
        let t = t.strip_suffix(['Z', 'z']).ok_or_else(bad)?;
        let (hms, frac) = t.split_once('.').unwrap_or((t, ""));
        let mut p = hms.splitn(3, ':');
        let (h, mi, sec) = match (p.next(), p.next(), p.next()) {
            (Some(h), Some(mi), Some(sec)) => (num(h)?, num(mi)?, num(sec)?),
            _ => return Err(bad()),
        };
        if h > 23 || mi > 59 || sec > 60 {
            return Err(bad());
        }
        let frac_ms = if frac.is_empty() {
            0
        } else {
            let digits: String = frac.chars().chain("000".chars()).take(3).collect();
            num(&digits)?
        };
        ms_of_day = ((h * 60 + mi) * 60 + sec) * 1000 + frac_ms;
    }
    // Days from civil (the inverse of `rfc3339`).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400_000 + ms_of_day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_between_unix_ms_and_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_514_112_123), "2026-12-05T23:41:52.123Z");
        for ms in [0, 951_782_400_000, 1_796_514_112_123, 4_102_444_800_000] {
            assert_eq!(parse_since(&rfc3339(ms), 0), Ok(ms));
        }
        assert_eq!(parse_since("2026-12-05", 0), Ok(1_796_428_800_000));
        assert_eq!(parse_since("1234", 0), Ok(1234));
        assert_eq!(
            parse_since("24h", 100_000_000),
            Ok(100_000_000 - 86_400_000)
        );
        assert_eq!(parse_since("7d", 0), Ok(-7 * 86_400_000));
        for bad in [
            "yesterday",
            "2026-13-01",
            "2026-12-05T25:00:00Z",
            "2026-12-05T10:00:00",
        ] {
            assert!(parse_since(bad, 0).is_err(), "{bad}");
        }
    }
}
