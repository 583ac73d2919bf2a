//! Cron schedules for recurring definitions, read in a time zone, so "every day at 03:00 in
//! Oslo" stays at 03:00 across DST. The expression is parsed and matched by the `croner` crate:
//! five fields (minute, hour, day of month, month, day of week) with an optional leading
//! seconds field (six fields), `*`, numbers, ranges, steps, lists, English month and weekday
//! names, weekday 7 = Sunday, `L`, `W`, `#`, and `@hourly`, `@daily` (`@midnight`), `@weekly`,
//! `@monthly`, `@yearly` (`@annually`). As in Vixie cron, when both the day of month and the day
//! of week are restricted a day matching either counts.
//!
//! The crate is asked for slots in local wall-clock time only; how a local slot becomes an
//! instant is this module's rule, the same for every expression:
//! - a slot in the spring-forward gap (Oslo 02:30 on the last Sunday of March) runs once, at the
//!   end of the gap (03:00 local); several slots in one gap are that one run;
//! - a slot in the fall-back overlap (02:30 on the last Sunday of October) runs once, at its
//!   first instance.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    /// The expression as given, for display.
    text: String,
    zone: Tz,
    /// Boxed: the parsed pattern is large, and schedules are passed around by value.
    pattern: Box<croner::Cron>,
}

/// Longest expression accepted, in bytes.
pub const MAX_LEN: usize = 200;

/// How far ahead an occurrence is looked for: an expression like `0 0 30 2 *` never occurs.
const HORIZON_DAYS: i64 = 5 * 366;

impl Cron {
    pub fn parse(expr: &str, zone: Tz) -> Result<Cron, String> {
        let text = expr.trim();
        if text.len() > MAX_LEN {
            return Err(format!("longer than {MAX_LEN} characters"));
        }
        let fields = text.split_whitespace().count();
        if !text.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(format!(
                "{fields} fields: a cron expression has 5 (minute hour day-of-month month day-of-week), \
                 or 6 with a leading seconds field"
            ));
        }
        let parser = CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
        // Vixie cron's `@midnight` is `@daily`; croner knows only the latter.
        let pattern_text = if text.eq_ignore_ascii_case("@midnight") { "@daily" } else { text };
        let pattern = parser.parse(pattern_text).map_err(|e| e.to_string())?;
        Ok(Cron { text: text.to_owned(), zone, pattern: Box::new(pattern) })
    }

    /// The expression and its zone, as `GET /Definitions` shows them.
    pub fn describe(&self) -> String {
        format!("{} {}", self.text, self.zone.name())
    }

    /// The instant a local slot runs at: itself; its first instance when the clocks go back;
    /// the end of the gap when it falls where the clocks go forward.
    fn instant(&self, slot: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self.zone.from_local_datetime(&slot) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.with_timezone(&Utc)),
            LocalResult::None => {
                // Gaps are whole minutes and at most a few hours; the first local minute that
                // exists again is the end of the gap.
                let minute = slot - Duration::seconds(i64::from(chrono::Timelike::second(&slot)));
                (1..=24 * 60).find_map(|m| match self.zone.from_local_datetime(&(minute + Duration::minutes(m))) {
                    LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                        // The exact end: the zone's transition lies within this last minute.
                        let end = t.with_timezone(&Utc);
                        let earliest = (0..60)
                            .rev()
                            .map(|s| end - Duration::seconds(s))
                            .find(|u| u.with_timezone(&self.zone).naive_local() > slot)
                            .unwrap_or(end);
                        Some(earliest)
                    }
                    LocalResult::None => None,
                })
            }
        }
    }

    /// The first occurrence strictly after `after`, within the next five years.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // A slot's instant never decreases as its local time increases, and a slot before
        // `after`'s local time runs at or before `after`: the search starts there.
        let mut cursor = after.with_timezone(&self.zone).naive_local();
        let horizon = cursor + Duration::days(HORIZON_DAYS);
        loop {
            let slot = self.pattern.find_next_occurrence(&cursor, false).ok()?;
            if slot > horizon {
                return None;
            }
            // A slot in the overlap's first hour seen from its second pass, or a gap slot
            // already run at the gap's end, is not a new occurrence.
            if let Some(at) = self.instant(slot).filter(|at| *at > after) {
                return Some(at);
            }
            cursor = slot;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn oslo() -> Tz {
        "Europe/Oslo".parse().unwrap()
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
        let sunday = Cron::parse("0 0 * * 7", Tz::UTC).unwrap();
        assert_eq!(sunday.next_after(utc("2026-12-03T00:00:00Z")), Some(utc("2026-12-06T00:00:00Z")));
        assert_eq!(Cron::parse("0 0 30 2 *", Tz::UTC).unwrap().next_after(utc("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn an_optional_leading_seconds_field() {
        let c = Cron::parse("30 * * * * *", Tz::UTC).unwrap();
        assert_eq!(c.next_after(utc("2026-12-03T10:00:00Z")), Some(utc("2026-12-03T10:00:30Z")));
        assert_eq!(c.next_after(utc("2026-12-03T10:00:30Z")), Some(utc("2026-12-03T10:01:30Z")));
        let five = Cron::parse("* * * * *", Tz::UTC).unwrap();
        assert_eq!(five.next_after(utc("2026-12-03T10:00:00Z")), Some(utc("2026-12-03T10:01:00Z")), "five: seconds 0");
    }

    #[test]
    fn the_short_names_include_midnight() {
        for name in ["@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"] {
            assert!(Cron::parse(name, Tz::UTC).is_ok(), "{name}");
        }
        let c = Cron::parse("@midnight", Tz::UTC).unwrap();
        assert_eq!(c.next_after(utc("2026-12-03T10:00:00Z")), Some(utc("2026-12-04T00:00:00Z")));
        assert_eq!(c.describe(), "@midnight UTC");
    }

    #[test]
    fn local_time_holds_across_dst() {
        let c = Cron::parse("0 3 * * *", oslo()).unwrap();
        // 03:00 in Oslo is 02:00 UTC in winter and 01:00 UTC in summer.
        assert_eq!(c.next_after(utc("2026-03-28T12:00:00Z")), Some(utc("2026-03-29T01:00:00Z")));
        assert_eq!(c.next_after(utc("2026-03-27T12:00:00Z")), Some(utc("2026-03-28T02:00:00Z")));
        assert_eq!(c.describe(), "0 3 * * * Europe/Oslo");
    }

    #[test]
    fn a_slot_in_the_spring_gap_runs_once_at_its_end() {
        // 02:00-03:00 does not exist on 29 March 2026 in Oslo: 02:30 runs at 03:00 CEST (01:00Z).
        let c = Cron::parse("30 2 * * *", oslo()).unwrap();
        assert_eq!(c.next_after(utc("2026-03-28T12:00:00Z")), Some(utc("2026-03-29T01:00:00Z")));
        assert_eq!(c.next_after(utc("2026-03-29T01:00:00Z")), Some(utc("2026-03-30T00:30:00Z")), "then as usual");
        // Every 15 minutes: the four slots of the missing hour are one run, at its end.
        let c = Cron::parse("*/15 * * * *", oslo()).unwrap();
        assert_eq!(c.next_after(utc("2026-03-29T00:45:00Z")), Some(utc("2026-03-29T01:00:00Z")));
        assert_eq!(c.next_after(utc("2026-03-29T01:00:00Z")), Some(utc("2026-03-29T01:15:00Z")));
    }

    #[test]
    fn a_slot_in_the_autumn_overlap_runs_once_at_its_first_instance() {
        // 02:30 happens twice on 25 October 2026 (00:30Z CEST, 01:30Z CET): once, at the first.
        let c = Cron::parse("30 2 * * *", oslo()).unwrap();
        assert_eq!(c.next_after(utc("2026-10-24T12:00:00Z")), Some(utc("2026-10-25T00:30:00Z")));
        assert_eq!(c.next_after(utc("2026-10-25T00:30:00Z")), Some(utc("2026-10-26T01:30:00Z")));
        // Every 30 minutes: 02:00 and 02:30 once each, then 03:00 CET.
        let c = Cron::parse("*/30 * * * *", oslo()).unwrap();
        assert_eq!(c.next_after(utc("2026-10-25T00:30:00Z")), Some(utc("2026-10-25T02:00:00Z")));
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for expr in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "*/0 * * * *",
            "* * 0 * *",
            "* * * foo *",
            "5-1 * * * *",
            "0 0 0 1 1 * 2027",
        ] {
            assert!(Cron::parse(expr, Tz::UTC).is_err(), "{expr}");
        }
        assert!(Cron::parse("* * * *", Tz::UTC).unwrap_err().contains("4 fields"));
        assert!(Cron::parse(&"1,".repeat(150), Tz::UTC).unwrap_err().contains("longer"));
    }
}
