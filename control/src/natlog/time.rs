//! UTC time in milliseconds <-> RFC 3339 text (`2026-11-30T14:02:11.123Z`,
//! the RFC 5424 section 6.2.3 TIMESTAMP with the `Z` offset), without a
//! time zone database: days to civil dates by H. Hinnant's algorithm.
//!
//! Invariant: `parse(&format(t)) == Some(t)` for every t from 1970 to 9999.

/// Days since 1970-01-01 -> (year, month, day).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) -> days since 1970-01-01.
fn days(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `t` (ms since the epoch, UTC) as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format(t: u64) -> String {
    let secs = i64::try_from(t / 1000).unwrap_or(i64::MAX);
    let (y, mo, d) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", s / 3600, s / 60 % 60, s % 60, t % 1000)
}

/// Milliseconds since the epoch from `YYYY-MM-DDTHH:MM:SS[.fff]Z` (or a
/// space for the `T`, or `+00:00` for the `Z`), or from a plain number of
/// milliseconds. Years 1970 to 9999 only (no arithmetic can overflow).
pub fn parse(s: &str) -> Option<u64> {
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once(['T', ' '])?;
    let mut dp = date.splitn(3, '-').map(str::parse::<u32>);
    let (y, mo, d) = (dp.next()?.ok()?, dp.next()?.ok()?, dp.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut tp = hms.splitn(3, ':').map(str::parse::<u64>);
    let (h, mi, sec) = (tp.next()?.ok()?, tp.next()?.ok()?, tp.next()?.ok()?);
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
        || h > 23
        || mi > 59
        || sec > 60
        || frac.len() > 9
    {
        return None;
    }
    let ms = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(3).collect();
        digits.parse::<u64>().ok()?
    };
    let day = u64::try_from(days(i64::from(y), mo, d)).ok()?;
    Some(((day * 86_400 + h * 3600 + mi * 60 + sec) * 1000) + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Garbage never panics (a cheap stand-in for a fuzz target: the
    /// parser is `masq whois --at`'s, fed by an operator).
    #[test]
    fn garbage_is_refused_without_a_panic() {
        let parts = [
            "",
            "0",
            "9",
            "99999999999",
            "-",
            ":",
            "T",
            " ",
            ".",
            "Z",
            "+00:00",
            "é",
            "1970",
            "12",
            "60",
            "2023-11-14",
        ];
        let mut n = 0u32;
        for a in parts {
            for b in parts {
                for c in parts {
                    for d in parts {
                        let _ = parse(&format!("{a}{b}{c}{d}"));
                        let _ = parse(&format!("{a}-{b}-{c}T{d}:{a}:{b}.{c}Z"));
                        n += 1;
                    }
                }
            }
        }
        assert_eq!(n, 16 * 16 * 16 * 16);
        let _ = format(u64::MAX);
    }

    #[test]
    fn known_instants_and_round_trips() {
        assert_eq!(format(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(format(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(parse("2023-11-14T22:13:20.123Z"), Some(1_700_000_000_123));
        assert_eq!(parse("2023-11-14 22:13:20+00:00"), Some(1_700_000_000_000));
        assert_eq!(parse("1700000000123"), Some(1_700_000_000_123));
        assert_eq!(parse("2023-13-14T22:13:20Z"), None);
        assert_eq!(parse("2023-11-14T22:13:20"), None, "a zone is required");
        assert_eq!(parse("4000000000-01-01T00:00:00Z"), None, "no overflow: out of range");
        assert_eq!(parse("1969-12-31T23:59:59Z"), None);
        assert_eq!(parse("9999-12-31T23:59:59.999Z"), Some(253_402_300_799_999));
        for t in (0..253_402_300_799_000u64).step_by(7_777_777_777) {
            assert_eq!(parse(&format(t)), Some(t), "{t}");
        }
    }
}
