//! Property tests: the state-move rule and date text round trips.

use batchd::domain::state::can_move;
use batchd::domain::task::{BatchTaskState, Patch, Task, TaskUpdate};
use batchd::domain::time;
use chrono::{DateTime, Utc};
use chrono_tz::{TZ_VARIANTS, Tz};
use proptest::prelude::*;

fn any_state() -> impl Strategy<Value = BatchTaskState> {
    prop::sample::select(BatchTaskState::ALL_NAMES.to_vec())
}

fn task(state: BatchTaskState) -> Task {
    let now = Utc::now();
    Task {
        id: 1,
        name: "t".into(),
        associate_id: 1,
        details_table: 0,
        details_record: 0,
        is_system: false,
        is_internal: false,
        parameters: None,
        last_started: None,
        created: now,
        start_count: 0,
        database_serial_number: None,
        context: None,
        result: None,
        state,
        description: None,
        response: None,
        request: None,
        progress_description: None,
        progress_percent: 0,
        file_name: None,
        cancellation: Default::default(),
        version: 1,
        updated: now,
    }
}

proptest! {
    /// The rule, restated independently: the contract's table of moves.
    #[test]
    fn state_moves_match_the_contract(from in any_state(), to in any_state()) {
        use BatchTaskState::*;
        let expected = match (from, to) {
            (_, All | Unknown) => false,
            (a, b) if a == b => true,
            (New, Aquired | Started | Failed) => true,
            (Aquired, Started | New | Failed) => true,
            (Started, Succeeded | SucceededManualCleanup | Failed) => true,
            (Succeeded | SucceededManualCleanup | Failed, New) => true,
            (Unknown, New | Failed) => true,
            _ => false,
        };
        prop_assert_eq!(can_move(from, to), expected);
    }

    /// Applying an update either refuses, or lands exactly on the asked state, counting starts.
    #[test]
    fn applying_updates_keeps_start_count_honest(path in prop::collection::vec(any_state(), 1..12)) {
        let mut t = task(BatchTaskState::New);
        let mut starts = 0;
        for to in path {
            let u = TaskUpdate { state: Patch::Set(to), ..Default::default() };
            match u.apply(&t, Utc::now()) {
                Ok(next) => {
                    prop_assert!(can_move(t.state, to));
                    prop_assert_eq!(next.state, to);
                    if to == BatchTaskState::Started && t.state != BatchTaskState::Started {
                        starts += 1;
                        prop_assert!(next.last_started.is_some());
                    }
                    t = next;
                }
                Err(_) => prop_assert!(!can_move(t.state, to)),
            }
            prop_assert_eq!(t.start_count, starts);
        }
    }

    /// format → parse gives the same instant, in every IANA zone, at microsecond precision.
    #[test]
    fn dates_round_trip_in_every_zone(micros in -2_208_988_800_000_000i64..4_102_444_800_000_000i64, zone in prop::sample::select(TZ_VARIANTS.to_vec())) {
        let instant = DateTime::<Utc>::from_timestamp_micros(micros).unwrap();
        let text = time::format(instant, zone);
        prop_assert_eq!(text.len(), 33, "{}", text);
        prop_assert_eq!(time::parse(&text, Tz::UTC).unwrap(), instant, "{}", text);
        // Also readable by a strict RFC 3339 parser.
        prop_assert_eq!(DateTime::parse_from_rfc3339(&text).unwrap().with_timezone(&Utc), instant);
    }

    /// A zone-less local time read in a zone and written back in that zone shows the same wall
    /// time, except inside a DST gap, where it moves forward by the gap.
    #[test]
    fn local_times_read_in_a_zone_keep_their_wall_time(secs in 0i64..4_000_000_000i64, zone in prop::sample::select(TZ_VARIANTS.to_vec())) {
        let naive = DateTime::<Utc>::from_timestamp(secs, 0).unwrap().naive_utc();
        let text = naive.format("%Y-%m-%dT%H:%M:%S").to_string();
        let instant = time::parse(&text, zone).unwrap();
        let back = time::format(instant, zone);
        let wall = &back[..19];
        if wall != text {
            // Only a gap may move it, and only forward, by at most a day (historical zones).
            let shown = chrono::NaiveDateTime::parse_from_str(wall, "%Y-%m-%dT%H:%M:%S").unwrap();
            prop_assert!(shown > naive && shown - naive <= chrono::Duration::hours(24), "{} → {}", text, back);
        }
    }

    /// Parsing never panics, whatever the text.
    #[test]
    fn date_parser_never_panics(s in ".{0,40}") {
        let _ = time::parse(&s, Tz::Europe__Oslo);
    }

    #[test]
    fn filter_parser_never_panics(s in ".{0,200}") {
        let _ = batchd::domain::filter::parse(&s, Tz::UTC);
    }
}
