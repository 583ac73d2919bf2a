//! Durations as people write them: the one grammar for the config file, the CLI and the API
//! (README.md, Durations, describes it for users).
//!
//! ```text
//! duration = number                  ; bare seconds: 90, 0.5
//!          | part *( [ws] part )     ; 30s, 1h30m, 1h 30m, 2 w
//! part     = number [ws] unit
//! number   = digits [ "." digits ] | "." digits
//! unit     = ms | s | sec | secs | second | seconds | m | min | mins | minute | minutes
//!          | h | hour | hours | d | day | days | w | week | weeks      ; any letter case
//! ```
//!
//! Leading and trailing whitespace is ignored. Arithmetic is exact (no floats), to the
//! nanosecond, and a total over [`MAX_DURATION`] is an error, never an overflow.

use std::time::Duration;

/// A hundred years (of 365 days): beyond that a duration is a typo, and chrono cannot add it to
/// a date anyway.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadDuration {
    #[error("not a duration: write a number of seconds or parts like 500ms, 30s, 5m, 2h, 7d, 2w, 1h30m")]
    Syntax,
    #[error("longer than 100 years")]
    TooLong,
}

const NANOS: u128 = 1_000_000_000;

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "ms" => NANOS / 1000,
        "s" | "sec" | "secs" | "second" | "seconds" => NANOS,
        "m" | "min" | "mins" | "minute" | "minutes" => 60 * NANOS,
        "h" | "hour" | "hours" => 3600 * NANOS,
        "d" | "day" | "days" => 86_400 * NANOS,
        "w" | "week" | "weeks" => 604_800 * NANOS,
        _ => return None,
    })
}

/// Parses the grammar above.
pub fn parse_duration(text: &str) -> Result<Duration, BadDuration> {
    let t = text.trim();
    let max = MAX_DURATION.as_nanos();
    let mut total: u128 = 0;
    let mut rest = t;
    let mut bare = true;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number = &rest[..num_len];
        rest = rest[num_len..].trim_start();
        let unit_len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let scale = match (unit.is_empty(), bare && rest.is_empty()) {
            // Only a whole text that is one number is bare seconds: `1h 30` is a typo.
            (true, true) => NANOS,
            (true, false) => return Err(BadDuration::Syntax),
            (false, _) => unit_nanos(unit).ok_or(BadDuration::Syntax)?,
        };
        bare = false;
        total = total.checked_add(scaled(number, scale)?).filter(|n| *n <= max).ok_or(BadDuration::TooLong)?;
    }
    if bare {
        return Err(BadDuration::Syntax);
    }
    // At most MAX_DURATION, so the seconds fit a u64.
    Ok(Duration::new((total / NANOS) as u64, (total % NANOS) as u32))
}

/// `number` (`12`, `1.5`, `.25`) times `scale` nanoseconds, truncated to the nanosecond; over
/// [`MAX_DURATION`] is [`BadDuration::TooLong`].
fn scaled(number: &str, scale: u128) -> Result<u128, BadDuration> {
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && frac.is_empty()) || frac.contains('.') {
        return Err(BadDuration::Syntax);
    }
    let too_long = BadDuration::TooLong;
    let mut n: u128 = 0;
    for d in whole.bytes() {
        n = n.checked_mul(10).and_then(|n| n.checked_add(u128::from(d - b'0'))).ok_or(too_long)?;
        if n > MAX_DURATION.as_nanos() {
            return Err(too_long);
        }
    }
    let mut nanos = n.checked_mul(scale).ok_or(too_long)?;
    // 18 fraction digits are finer than a nanosecond of a week; the rest cannot count.
    let frac = &frac[..frac.len().min(18)];
    if !frac.is_empty() {
        let digits: u128 = frac.parse().map_err(|_| BadDuration::Syntax)?;
        nanos = nanos.checked_add(digits * scale / 10u128.pow(frac.len() as u32)).ok_or(too_long)?;
    }
    Ok(nanos)
}

/// A TOML number of seconds, under the same bound as text.
pub fn from_secs_f64(secs: f64) -> Result<Duration, BadDuration> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(BadDuration::Syntax);
    }
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(BadDuration::TooLong),
    }
}

/// `1.5s`, `2m`, `3h30m`: compact, for messages and docs, to the millisecond. What it writes
/// [`parse_duration`] reads back.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return if ms < 1000 { format!("{ms}ms") } else { format!("{}.{:03}s", ms / 1000, ms % 1000) };
    }
    let mut s = d.as_secs();
    let mut out = String::new();
    for (unit, size) in [("d", 86_400u64), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= size {
            out.push_str(&format!("{}{unit}", s / size));
            s %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> Option<Duration> {
        parse_duration(text).ok()
    }

    /// What the config's and the definitions' parser took before there was one grammar.
    #[test]
    fn durations_parse_and_format() {
        assert_eq!(parse("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(parse("5 m"), Some(Duration::from_secs(300)));
        assert_eq!(parse("5x"), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("-1"), None);
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }

    /// What the credential lifetimes' parser took (its one-second floor stays in `access`).
    #[test]
    fn lifetimes_as_before() {
        assert_eq!(parse("30d"), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse("8h"), Some(Duration::from_secs(8 * 3600)));
        assert_eq!(parse("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse(" 2 w "), Some(Duration::from_secs(2 * 604_800)));
        assert_eq!(parse("5y"), None);
        assert_eq!(parse("99999999999999999d"), None);
        for (long, secs) in [("30 seconds", 30), ("2 Minutes", 120), ("1 hour", 3600), ("3 DAYS", 259_200)] {
            assert_eq!(parse(long), Some(Duration::from_secs(secs)), "{long}");
        }
    }

    #[test]
    fn both_grammars_together() {
        assert_eq!(parse("2w3d"), Some(Duration::from_secs(17 * 86_400)));
        assert_eq!(parse("1h 30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("1H30M"), Some(Duration::from_secs(5400)));
        assert_eq!(parse(".5s"), Some(Duration::from_millis(500)));
        assert_eq!(parse("1s500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(parse("0.1"), Some(Duration::from_millis(100)), "exact, no float rounding");
        assert_eq!(parse("0.000000001"), Some(Duration::from_nanos(1)));
        assert_eq!(parse("0"), Some(Duration::ZERO));
        assert_eq!(parse("0s"), Some(Duration::ZERO));
        for bad in ["s", "1h 30", "30 1h", "1..5s", ".", "1.2.3s", "1e3", "+5", "1 h x", "h1", "1 yr", "1,5s"] {
            assert_eq!(parse_duration(bad), Err(BadDuration::Syntax), "{bad}");
        }
    }

    #[test]
    fn huge_numbers_are_an_error_not_a_panic() {
        assert_eq!(parse_duration("36500d"), Ok(MAX_DURATION));
        for huge in [
            "36500d1s",
            "5300w",
            "99999999999999999999999999999999999999999999999999",
            "340282366920938463463374607431768211456w",
            "18446744073709551616s",
            "99999999999999999999999.5h",
            "36500d 36500d",
        ] {
            assert_eq!(parse_duration(huge), Err(BadDuration::TooLong), "{huge}");
        }
        assert_eq!(parse("1.99999999999999999999999999999s"), Some(Duration::new(1, 999_999_999)));
        assert_eq!(from_secs_f64(1e30), Err(BadDuration::TooLong));
        assert_eq!(from_secs_f64(f64::NAN), Err(BadDuration::Syntax));
        assert_eq!(from_secs_f64(-1.0), Err(BadDuration::Syntax));
        assert_eq!(from_secs_f64(0.5), Ok(Duration::from_millis(500)));
    }

    proptest! {
        #[test]
        fn what_format_writes_parse_reads_back(ms in 0..=MAX_DURATION.as_millis() as u64) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{}", format_duration(d));
        }

        #[test]
        fn any_text_parses_or_fails_without_panicking(text in "[0-9. a-zA-Z]{0,40}") {
            if let Ok(d) = parse_duration(&text) {
                prop_assert!(d <= MAX_DURATION);
            }
        }
    }
}
