//! Date-time text on the wire: RFC 3339 with an explicit offset out, several shapes in.
//!
//! Instants are kept in UTC with microsecond precision (both databases store microseconds).
//! Output always carries 7 fractional digits, like .NET's round-trip format, so the value
//! reads the same in every client. Input without a zone is read in the request's zone; local
//! times that fall in a DST gap or overlap are resolved the way RFC 9557 / Temporal call
//! "compatible": a time in a gap moves forward by the gap's length, an ambiguous time takes
//! the earlier of its two instants.

use chrono::{
    DateTime, Datelike, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

/// Formats `instant` in `zone` as `YYYY-MM-DDTHH:MM:SS.fffffff±HH:MM`.
pub fn format(instant: DateTime<Utc>, zone: Tz) -> String {
    // RFC 3339 offsets have no seconds, but historical local mean times do (Asia/Aden was
    // +03:06:59). Round such an offset to the minute and show the wall time for that offset,
    // so the text still names the exact instant.
    let exact = instant.with_timezone(&zone).offset().fix().local_minus_utc();
    let offset = (f64::from(exact) / 60.0).round() as i32 * 60;
    let local = instant.with_timezone(&FixedOffset::east_opt(offset).expect("offsets are within a day"));
    let (sign, off) = if offset < 0 { ('-', -offset) } else { ('+', offset) };
    let ticks = local.nanosecond() % 1_000_000_000 / 100; // 100 ns ticks, 7 digits
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}{}{:02}:{:02}",
        local.year(),
        local.month(),
        local.day(),
        local.hour(),
        local.minute(),
        local.second(),
        ticks,
        sign,
        off / 3600,
        off % 3600 / 60
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a date-time: expected YYYY-MM-DDTHH:MM:SS[.fffffff][Z|±HH:MM]")]
pub struct BadDateTime;

/// Parses `YYYY-MM-DD[(T| )HH:MM[:SS[.f{1,7}]]][Z|±HH:MM|±HHMM|±HH]`; no zone = `zone`.
pub fn parse(text: &str, zone: Tz) -> Result<DateTime<Utc>, BadDateTime> {
    let b = text.trim().as_bytes();
    let mut p = Cursor { b, i: 0 };
    let year = p.digits(4)? as i32;
    p.expect(b'-')?;
    let month = p.digits(2)?;
    p.expect(b'-')?;
    let day = p.digits(2)?;
    let date = NaiveDate::from_ymd_opt(year, month, day).ok_or(BadDateTime)?;
    let (mut h, mut m, mut s, mut nanos) = (0, 0, 0, 0u32);
    if p.peek().is_some_and(|c| c == b'T' || c == b't' || c == b' ') {
        p.i += 1;
        h = p.digits(2)?;
        p.expect(b':')?;
        m = p.digits(2)?;
        if p.peek() == Some(b':') {
            p.i += 1;
            s = p.digits(2)?;
            if p.peek() == Some(b'.') || p.peek() == Some(b',') {
                p.i += 1;
                let start = p.i;
                while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                    p.i += 1;
                }
                let frac = &b[start..p.i];
                if frac.is_empty() || frac.len() > 9 {
                    return Err(BadDateTime);
                }
                let mut n: u32 = 0;
                for (k, d) in frac.iter().enumerate() {
                    n += u32::from(d - b'0') * 10u32.pow(8 - k as u32);
                }
                nanos = n / 1000 * 1000; // keep microseconds, like the stores
            }
        }
    }
    let time = NaiveTime::from_hms_nano_opt(h, m, s, nanos).ok_or(BadDateTime)?;
    let naive = NaiveDateTime::new(date, time);
    let offset = match p.peek() {
        None => None,
        Some(b'Z') | Some(b'z') => {
            p.i += 1;
            Some(0)
        }
        Some(c @ (b'+' | b'-')) => {
            p.i += 1;
            let oh = p.digits(2)? as i32;
            let mut om = 0;
            if p.peek() == Some(b':') {
                p.i += 1;
                om = p.digits(2)? as i32;
            } else if p.peek().is_some() {
                om = p.digits(2)? as i32;
            }
            if oh > 23 || om > 59 {
                return Err(BadDateTime);
            }
            let secs = oh * 3600 + om * 60;
            Some(if c == b'-' { -secs } else { secs })
        }
        Some(_) => return Err(BadDateTime),
    };
    if p.i != b.len() {
        return Err(BadDateTime);
    }
    match offset {
        Some(secs) => {
            let fixed = FixedOffset::east_opt(secs).ok_or(BadDateTime)?;
            fixed.from_local_datetime(&naive).single().map(|d| d.with_timezone(&Utc)).ok_or(BadDateTime)
        }
        None => Ok(resolve_local(naive, zone)),
    }
}

/// A zone-less local time in `zone`, with the documented gap/overlap rule.
pub fn resolve_local(naive: NaiveDateTime, zone: Tz) -> DateTime<Utc> {
    match zone.from_local_datetime(&naive) {
        LocalResult::Single(d) => d.with_timezone(&Utc),
        LocalResult::Ambiguous(earlier, _) => earlier.with_timezone(&Utc),
        LocalResult::None => {
            // In a gap: read the wall time with the offset in force just before the gap,
            // which lands the same distance past the gap's end.
            let before = naive - chrono::Duration::hours(3);
            let offset = match zone.from_local_datetime(&before) {
                LocalResult::Single(d) | LocalResult::Ambiguous(d, _) => d.offset().fix(),
                LocalResult::None => FixedOffset::east_opt(0).expect("zero offset"),
            };
            offset.from_local_datetime(&naive).single().expect("fixed offsets are never ambiguous").with_timezone(&Utc)
        }
    }
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 IMF-fixdate) for Last-Modified.
/// Written by hand: chrono's strftime parses its pattern on every call, and this is on every GET.
pub fn http_date(t: DateTime<Utc>) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[t.weekday().num_days_from_monday() as usize],
        t.day(),
        MONTHS[t.month0() as usize],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Truncates to the microsecond precision the stores keep.
pub fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).expect("in range")
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn expect(&mut self, c: u8) -> Result<(), BadDateTime> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(BadDateTime)
        }
    }
    fn digits(&mut self, n: usize) -> Result<u32, BadDateTime> {
        let s = self.b.get(self.i..self.i + n).ok_or(BadDateTime)?;
        if !s.iter().all(u8::is_ascii_digit) {
            return Err(BadDateTime);
        }
        self.i += n;
        Ok(s.iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0')))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_match_chrono() {
        for secs in [0i64, 784_111_777, 1_700_000_000, 4_102_444_799] {
            let t = DateTime::<Utc>::from_timestamp(secs, 0).unwrap();
            assert_eq!(http_date(t), t.format("%a, %d %b %Y %H:%M:%S GMT").to_string());
        }
    }

    #[test]
    fn formats_with_seven_digits_and_offset() {
        let t = DateTime::parse_from_rfc3339("2018-06-22T14:32:48.290238Z").unwrap().with_timezone(&Utc);
        assert_eq!(format(t, Tz::UTC), "2018-06-22T14:32:48.2902380+00:00");
        assert_eq!(format(t, Tz::Europe__Oslo), "2018-06-22T16:32:48.2902380+02:00");
        assert_eq!(format(t, Tz::America__New_York), "2018-06-22T10:32:48.2902380-04:00");
    }

    #[test]
    fn parses_the_documented_shapes() {
        let want = DateTime::parse_from_rfc3339("2018-06-22T14:32:48.290238Z").unwrap().with_timezone(&Utc);
        for s in [
            "2018-06-22T16:32:48.2902385+02:00",
            "2018-06-22T16:32:48.2902385+0200",
            "2018-06-22T14:32:48.290238Z",
            "2018-06-22T14:32:48.290238",
            "2018-06-22 14:32:48.290238",
        ] {
            assert_eq!(parse(s, Tz::UTC), Ok(want), "{s}");
        }
        assert_eq!(parse("2018-06-22T16:32:48.290238", Tz::Europe__Oslo), Ok(want));
        for bad in [
            "",
            "2018",
            "2018-13-01",
            "2018-02-30",
            "2018-06-22T25:00:00",
            "2018-06-22T10:00:00+2",
            "2018-06-22T10:00:00X",
            "2018-06-22T10:00:00.Z",
        ] {
            assert!(parse(bad, Tz::UTC).is_err(), "{bad}");
        }
    }

    #[test]
    fn dst_gap_moves_forward_and_overlap_takes_earlier() {
        // Oslo springs forward at 02:00 on 2024-03-31; 02:30 does not exist.
        let gap = parse("2024-03-31T02:30:00", Tz::Europe__Oslo).unwrap();
        assert_eq!(format(gap, Tz::Europe__Oslo), "2024-03-31T03:30:00.0000000+02:00");
        // Oslo falls back at 03:00 on 2024-10-27; 02:30 happens twice.
        let overlap = parse("2024-10-27T02:30:00", Tz::Europe__Oslo).unwrap();
        assert_eq!(format(overlap, Tz::Europe__Oslo), "2024-10-27T02:30:00.0000000+02:00");
    }
}
