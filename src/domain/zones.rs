//! Time zones a request may name in `SO-TimeZone`: IANA names, and SuperOffice's location
//! codes and numeric ids.

use chrono_tz::Tz;

/// A parsed `SO-TimeZone` header: the zone, and whether `includeTZOffset` was given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZoneSpec {
    pub zone: Tz,
    pub include_offset: bool,
}

/// SuperOffice location codes (and the numeric ids SuperOffice's `GET /api/v1/timezone` gives
/// for them, where known) mapped to the IANA zone they stand for.
const CODES: &[(&str, Option<u32>, Tz)] = &[
    ("UTC", Some(1), Tz::UTC),
    ("NO", Some(261), Tz::Europe__Oslo),
    ("SE", None, Tz::Europe__Stockholm),
    ("DK", Some(140), Tz::Europe__Copenhagen),
    ("FI", None, Tz::Europe__Helsinki),
    ("DE", None, Tz::Europe__Berlin),
    ("NL", None, Tz::Europe__Amsterdam),
    ("GB", None, Tz::Europe__London),
    ("UK", None, Tz::Europe__London),
    ("FR", None, Tz::Europe__Paris),
    ("ES", None, Tz::Europe__Madrid),
    ("IT", None, Tz::Europe__Rome),
    ("PL", None, Tz::Europe__Warsaw),
    ("BE", None, Tz::Europe__Brussels),
    ("CH", None, Tz::Europe__Zurich),
    ("AT", None, Tz::Europe__Vienna),
    ("IE", None, Tz::Europe__Dublin),
    ("PT", None, Tz::Europe__Lisbon),
    ("US-NY", Some(460), Tz::America__New_York),
    ("US-CHI", None, Tz::America__Chicago),
    ("US-DEN", None, Tz::America__Denver),
    ("US-LA", None, Tz::America__Los_Angeles),
    ("CA-QC", None, Tz::America__Toronto),
    ("AU-ACT", None, Tz::Australia__Sydney),
    ("JP", None, Tz::Asia__Tokyo),
];

/// Parses a zone name: IANA (case-insensitive), a SuperOffice code, or a known numeric id.
pub fn parse_zone(text: &str) -> Option<Tz> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    if let Ok(n) = t.parse::<u32>() {
        return CODES.iter().find(|(_, id, _)| *id == Some(n)).map(|(_, _, z)| *z);
    }
    if let Some((_, _, z)) = CODES.iter().find(|(code, _, _)| code.eq_ignore_ascii_case(t)) {
        return Some(*z);
    }
    t.parse::<Tz>().ok().or_else(|| Tz::from_str_insensitive(t).ok())
}

/// Parses the whole header value `zone[,includeTZOffset]`.
pub fn parse_header(text: &str) -> Option<ZoneSpec> {
    let mut parts = text.split(',');
    let zone = parse_zone(parts.next()?)?;
    let mut include_offset = false;
    for flag in parts {
        if flag.trim().eq_ignore_ascii_case("includeTZOffset") {
            include_offset = true;
        } else if !flag.trim().is_empty() {
            return None;
        }
    }
    Some(ZoneSpec { zone, include_offset })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_names_and_ids() {
        assert_eq!(parse_zone("NO"), Some(Tz::Europe__Oslo));
        assert_eq!(parse_zone("us-ny"), Some(Tz::America__New_York));
        assert_eq!(parse_zone("261"), Some(Tz::Europe__Oslo));
        assert_eq!(parse_zone("Europe/Oslo"), Some(Tz::Europe__Oslo));
        assert_eq!(parse_zone("europe/oslo"), Some(Tz::Europe__Oslo));
        assert_eq!(parse_zone("Mars/Olympus"), None);
        assert_eq!(
            parse_header("NO, includeTZOffset"),
            Some(ZoneSpec { zone: Tz::Europe__Oslo, include_offset: true })
        );
        assert_eq!(parse_header("NO,bogus"), None);
    }
}
