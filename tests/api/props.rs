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

    /// The hand-written HTTP date (Last-Modified) says what chrono's formatter says.
    #[test]
    fn http_dates_match_chrono(secs in 0i64..253_402_300_800i64) {
        let t = DateTime::<Utc>::from_timestamp(secs, 0).unwrap();
        prop_assert_eq!(time::http_date(t), t.format("%a, %d %b %Y %H:%M:%S GMT").to_string());
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
            let shown = chrono::NaiveDateTime::parse_from_str(wall, "%Y-%m-%dT%H:%M:%S").unwrap();
            // An offset with seconds (Monrovia until 1972: -0:44:30) is written in whole minutes,
            // as the format has them: the same instant, its wall time off by under a minute.
            let offset = chrono::Offset::fix(&chrono::TimeZone::offset_from_utc_datetime(&zone, &instant.naive_utc()));
            if offset.local_minus_utc() % 60 != 0 && (shown - naive).num_seconds().abs() < 60 {
                return Ok(());
            }
            // Only a gap may move it, and only forward, by at most a day (historical zones).
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

mod formats {
    //! Properties of the formats layer: every IANA zone by name, XML output read back, and the
    //! readers' "never panic" promise.

    use batchd::domain::rights::TaskRights;
    use batchd::domain::task::{BatchTaskState, Parameters};
    use batchd::domain::{time, zones};
    use batchd::http::format::{Format, Payload, render};
    use batchd::http::wire::TaskView;
    use batchd::http::{patch, xml};
    use chrono::{DateTime, Utc};
    use chrono_tz::{TZ_VARIANTS, Tz};
    use proptest::prelude::*;
    use serde_json::Value;

    /// Text a client may store: any char but the few XML 1.0 cannot carry at all.
    fn text() -> impl Strategy<Value = String> {
        "[^\u{0}-\u{8}\u{b}\u{c}\u{e}-\u{1f}\u{fffe}\u{ffff}]{0,40}"
    }

    fn json_as_xml_sees_it(v: &Value) -> Value {
        match v {
            Value::Number(n) => Value::String(n.to_string()),
            Value::Bool(b) => Value::String(b.to_string()),
            Value::Array(a) => Value::Array(a.iter().map(json_as_xml_sees_it).collect()),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| match (k.as_str(), v) {
                        ("Mask", Value::String(s)) => (k.clone(), Value::String(s.replace(", ", " "))),
                        _ => (k.clone(), json_as_xml_sees_it(v)),
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every IANA name is a valid SO-TimeZone, in any letter case and with includeTZOffset,
        /// and dates written in it read back as the same instant with that zone as the default.
        #[test]
        fn every_iana_zone_round_trips(zone in prop::sample::select(TZ_VARIANTS.to_vec()), micros in -2_208_988_800_000_000i64..4_102_444_800_000_000i64, upper in any::<bool>()) {
            let name = if upper { zone.name().to_ascii_uppercase() } else { zone.name().to_owned() };
            let spec = zones::parse_header(&format!("{name}, includeTZOffset")).unwrap();
            prop_assert!(spec.include_offset);
            if is_code(&name) {
                // IANA's legacy links NZ, GB and UTC are also SuperOffice codes: same rules.
                prop_assert_eq!(time::format(DateTime::<Utc>::from_timestamp_micros(micros).unwrap(), spec.zone),
                    time::format(DateTime::<Utc>::from_timestamp_micros(micros).unwrap(), zone));
            } else {
                prop_assert_eq!(spec.zone, zone);
            }
            let instant = DateTime::<Utc>::from_timestamp_micros(micros).unwrap();
            let text = time::format(instant, zone);
            prop_assert_eq!(time::parse(&text, zone).unwrap(), instant, "{}", text);
        }

        /// The XML written for any task reads back, with the events reader, as its JSON.
        #[test]
        fn xml_output_reads_back_as_json(desc in proptest::option::of(text()), req in text(), params in prop::collection::vec((text(), text()), 0..4), zone in prop::sample::select(TZ_VARIANTS.to_vec()), state in prop::sample::select(BatchTaskState::STORED.to_vec())) {
            let now = Utc::now();
            let mut params = params;
            params.sort();
            params.dedup_by(|a, b| a.0 == b.0);
            let task = batchd::domain::Task {
                id: 7, name: "n".into(), associate_id: 1, details_table: 0, details_record: 0, is_system: false,
                is_internal: false, parameters: Some(Parameters(params)), last_started: Some(now), created: now,
                start_count: 2, database_serial_number: None, context: None, result: None, state, description: desc,
                response: None, request: Some(req), progress_description: None, progress_percent: 50, file_name: None,
                cancellation: Default::default(), version: 1, updated: now,
            };
            let rights = TaskRights { select: true, update: true, delete: false };
            let view = || TaskView { task: &task, rights, zone, select: None };
            let json: Value = serde_json::from_slice(&render(Format::Json, &Payload::Task(view()))).unwrap();
            let doc = xml::parse(&render(Format::Xml, &Payload::Task(view()))).unwrap();
            prop_assert_eq!(doc.root, "BatchTaskInfo");
            prop_assert_eq!(doc.value, json_as_xml_sees_it(&json));
        }

        /// The XML reader answers every input with a value or an error, never a panic.
        #[test]
        fn xml_reader_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200), s in "[<>/a-z=\"'&;#!\\[\\]: -]{0,120}") {
            let _ = xml::parse(&bytes);
            let _ = xml::parse(s.as_bytes());
        }

        /// So does the patch applier, whatever the patch and the document.
        #[test]
        fn patch_applier_never_panics(ops in prop::collection::vec(("(add|remove|replace|move|copy|test|x)", "/?[A-Za-z~01/-]{0,12}", "/?[A-Za-z~01/-]{0,12}", any::<Option<i8>>()), 0..6), merge in any::<bool>()) {
            let doc = serde_json::json!({"Id": 1, "Name": "n", "State": "New", "Description": null, "Request": "r",
                "ParameterObject": {"a": "1"}, "TableRight": {"Mask": "Select", "Reason": ""}});
            let value: Value = ops.iter().map(|(op, path, from, v)| serde_json::json!({"op": op, "path": path, "from": from, "value": v})).collect();
            let kind = if merge { batchd::http::body::BodyKind::MergePatch } else { batchd::http::body::BodyKind::JsonPatch };
            let body = if merge { value.get(0).cloned().unwrap_or(Value::Null) } else { value };
            if let Ok(p) = patch::parse(kind, Some(body)) {
                let _ = patch::apply(&p, doc);
            }
        }
    }

    /// Every IANA zone (not a sample of them) × random instants, seeded so a failure repeats:
    /// the header name parses to the zone, and format → parse in that zone is the identity.
    #[test]
    fn every_zone_times_random_instants() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        for zone in TZ_VARIANTS {
            if !is_code(zone.name()) {
                assert_eq!(zones::parse_zone(zone.name()), Some(zone), "{}", zone.name());
            }
            for _ in 0..64 {
                let micros = rng.gen_range(-2_208_988_800_000_000i64..4_102_444_800_000_000i64);
                let instant = DateTime::<Utc>::from_timestamp_micros(micros).unwrap();
                let text = time::format(instant, zone);
                assert_eq!(time::parse(&text, zone), Ok(instant), "{} {text}", zone.name());
                // A zone-less local time in the zone lands on an instant that shows the same wall
                // time, or (in a DST gap only) a later one. Offsets with seconds (local mean
                // time, mostly before 1900) are written rounded to the minute, so they are skipped.
                use chrono::Offset;
                if instant.with_timezone(&zone).offset().fix().local_minus_utc() % 60 != 0 {
                    continue;
                }
                let wall = &text[..19];
                let back = time::format(time::parse(wall, zone).unwrap(), zone);
                assert!(&back[..19] >= wall, "{}: {wall} → {back}", zone.name());
            }
        }
    }

    fn is_code(name: &str) -> bool {
        zones::CODES.iter().any(|(c, _, _)| c.eq_ignore_ascii_case(name))
    }

    #[test]
    fn zone_codes_name_real_zones() {
        for (code, _, zone) in zones::CODES {
            assert_eq!(zones::parse_zone(code), Some(*zone));
            assert!(TZ_VARIANTS.contains(zone));
        }
        let _: Tz = Tz::UTC;
    }
}
