//! Cron schedules for recurring definitions: five fields (minute, hour, day of month, month,
//! day of week) read in a time zone, so "every day at 03:00 in Oslo" stays at 03:00 across DST.
//!
//! Each field takes `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`, and lists of those
//! (`1,15,30-40/5`); months and weekdays also take their English three-letter names, and a
//! weekday 7 is Sunday like 0. As in Vixie cron, when both the day of month and the day of week
//! are restricted a day matching either counts. `@hourly`, `@daily` (`@midnight`), `@weekly`,
//! `@monthly` and `@yearly` (`@annually`) stand for their usual expressions.
//!
//! Local times that do not exist (the hour skipped when clocks go forward) are skipped; a local
//! time that happens twice (when clocks go back) runs once, at its first instance.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    /// The expression as given, for display.
    text: String,
    zone: Tz,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    any_day: bool,
    any_weekday: bool,
}

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Longest expression accepted, in bytes.
pub const MAX_LEN: usize = 200;

/// One field's set of values as a bit set, and whether it was `*`.
fn field(text: &str, min: u32, max: u32, names: &[&str], what: &str) -> Result<(u64, bool), String> {
    let value = |s: &str| -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Ok(i as u32 + min);
        }
        let n: u32 = s.parse().map_err(|_| format!("{what}: {s:?} is not a number"))?;
        // Weekday 7 is Sunday.
        let n = if what == "day of week" && n == 7 { 0 } else { n };
        if n < min || n > max {
            return Err(format!("{what}: {n} is outside {min}-{max}"));
        }
        Ok(n)
    };
    let mut bits = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("{what}: step {s:?} is not a number"))?;
                if step == 0 {
                    return Err(format!("{what}: a step must be at least 1"));
                }
                (r, step)
            }
            None => (item, 1),
        };
        let (lo, hi) = match range {
            "*" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                // `5/15`: from 5 to the end, every 15.
                None if step > 1 => (value(r)?, max),
                None => (value(r)?, value(r)?),
            },
        };
        if lo > hi {
            return Err(format!("{what}: range {lo}-{hi} runs backwards"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, text == "*"))
}

impl Cron {
    pub fn parse(expr: &str, zone: Tz) -> Result<Cron, String> {
        let text = expr.trim();
        if text.len() > MAX_LEN {
            return Err(format!("longer than {MAX_LEN} characters"));
        }
        let expanded = match text.to_ascii_lowercase().as_str() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            _ => text,
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        let [mi, h, d, mo, w] = parts[..] else {
            return Err(format!(
                "{} fields: a cron expression has 5 (minute hour day-of-month month day-of-week)",
                parts.len()
            ));
        };
        let (minutes, _) = field(mi, 0, 59, &[], "minute")?;
        let (hours, _) = field(h, 0, 23, &[], "hour")?;
        let (days, any_day) = field(d, 1, 31, &[], "day of month")?;
        let (months, _) = field(mo, 1, 12, &MONTHS, "month")?;
        let (weekdays, any_weekday) = field(w, 0, 7, &WEEKDAYS, "day of week")?;
        Ok(Cron {
            text: text.to_owned(),
            zone,
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: weekdays as u8,
            any_day,
            any_weekday,
        })
    }

    /// The expression and its zone, as `GET /Definitions` shows them.
    pub fn describe(&self) -> String {
        format!("{} {}", self.text, self.zone.name())
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let dom = self.days & (1 << date.day()) != 0;
        let dow = self.weekdays & (1 << date.weekday().num_days_from_sunday()) != 0;
        match (self.any_day, self.any_weekday) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        }
    }

    /// The first occurrence strictly after `after`, within the next five years (an expression
    /// like `0 0 30 2 *` never occurs: `None`).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.zone).naive_local();
        let start_day = local.date();
        for offset in 0..(5 * 366) {
            let date = start_day + Duration::days(offset);
            if !self.day_matches(date) {
                continue;
            }
            for hour in (0..24).filter(|h| self.hours & (1 << h) != 0) {
                if offset == 0 && hour < local.hour() {
                    continue;
                }
                for minute in (0..60).filter(|m| self.minutes & (1 << m) != 0) {
                    let Some(naive) = date.and_hms_opt(hour, minute, 0) else { continue };
                    let at = match self.zone.from_local_datetime(&naive) {
                        LocalResult::Single(t) => t,
                        LocalResult::Ambiguous(first, _) => first,
                        LocalResult::None => continue,
                    };
                    let at = at.with_timezone(&Utc);
                    if at > after {
                        return Some(at);
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn fields_lists_ranges_steps_and_names() {
        let c = Cron::parse("*/15 9-17 * * mon-fri", Tz::UTC).unwrap();
        // Friday 17:50 → Monday 09:00.
        assert_eq!(c.next_after(utc("2026-12-04T17:50:00Z")), Some(utc("2026-12-07T09:00:00Z")));
        assert_eq!(c.next_after(utc("2026-12-07T09:00:00Z")), Some(utc("2026-12-07T09:15:00Z")), "strictly after");
        let c = Cron::parse("5,10 0 1 jan,Jul *", Tz::UTC).unwrap();
        assert_eq!(c.next_after(utc("2026-12-03T00:00:00Z")), Some(utc("2027-01-01T00:05:00Z")));
        // Day of month or day of week when both are given.
        let c = Cron::parse("0 12 13 * 5", Tz::UTC).unwrap();
        assert_eq!(c.next_after(utc("2026-12-03T13:00:00Z")), Some(utc("2026-12-04T12:00:00Z")), "Friday the 4th");
        let c = Cron::parse("@daily", Tz::UTC).unwrap();
        assert_eq!(c.next_after(utc("2026-12-03T13:00:00Z")), Some(utc("2026-12-04T00:00:00Z")));
        assert_eq!(
            Cron::parse("0 0 * * 7", Tz::UTC).unwrap(),
            Cron { text: "0 0 * * 7".into(), ..Cron::parse("0 0 * * 0", Tz::UTC).unwrap() }
        );
        assert_eq!(Cron::parse("0 0 30 2 *", Tz::UTC).unwrap().next_after(utc("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn local_time_holds_across_dst_and_skips_the_missing_hour() {
        let oslo: Tz = "Europe/Oslo".parse().unwrap();
        let c = Cron::parse("0 3 * * *", oslo).unwrap();
        // 03:00 in Oslo is 02:00 UTC in winter and 01:00 UTC in summer.
        assert_eq!(c.next_after(utc("2026-03-28T12:00:00Z")), Some(utc("2026-03-29T01:00:00Z")));
        assert_eq!(c.next_after(utc("2026-03-27T12:00:00Z")), Some(utc("2026-03-28T02:00:00Z")));
        assert_eq!(c.describe(), "0 3 * * * Europe/Oslo");
        // 02:30 does not exist on 29 March 2026 in Oslo: that day is skipped.
        let c = Cron::parse("30 2 * * *", oslo).unwrap();
        assert_eq!(c.next_after(utc("2026-03-28T12:00:00Z")), Some(utc("2026-03-30T00:30:00Z")));
        // 02:30 happens twice on 25 October 2026: once, at the first.
        assert_eq!(c.next_after(utc("2026-10-24T12:00:00Z")), Some(utc("2026-10-25T00:30:00Z")));
        assert_eq!(c.next_after(utc("2026-10-25T00:30:00Z")), Some(utc("2026-10-26T01:30:00Z")));
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for (expr, says) in [
            ("* * * *", "4 fields"),
            ("60 * * * *", "minute: 60 is outside 0-59"),
            ("* 24 * * *", "hour"),
            ("*/0 * * * *", "step"),
            ("* * 0 * *", "day of month"),
            ("* * * foo *", "month"),
            ("5-1 * * * *", "backwards"),
        ] {
            let e = Cron::parse(expr, Tz::UTC).unwrap_err();
            assert!(e.contains(says), "{expr}: {e}");
        }
        assert!(Cron::parse(&"1,".repeat(150), Tz::UTC).unwrap_err().contains("longer"));
    }
}
