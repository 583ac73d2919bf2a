//! The date-time and `SO-TimeZone` parsers. Input: a header line, then a date-time (or the same
//! text for both). Either parses or is refused, never panics; an accepted zone's IANA name reads
//! as a zone again; an accepted date-time keeps microseconds and, written out in the zone, reads
//! back as the same instant.
#![no_main]

use batchd::domain::{time, zones};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (header, date) = text.split_once('\n').unwrap_or((text, text));
    let spec = zones::parse_header(header);
    if let Some(spec) = &spec {
        assert!(zones::parse_zone(spec.zone.name()).is_some(), "{}", spec.zone.name());
    }
    let zone = spec.map_or(chrono_tz::Tz::UTC, |s| s.zone);
    if let Ok(t) = time::parse(date, zone) {
        assert_eq!(t, time::truncate_micros(t));
        let written = time::format(t, zone);
        // Years 0000-9999 only: the reader takes four digits.
        if written.len() == "2024-01-01T00:00:00.0000000+00:00".len() && written.as_bytes()[0].is_ascii_digit() {
            assert_eq!(time::parse(&written, zone), Ok(t), "{written}");
        }
    }
});
