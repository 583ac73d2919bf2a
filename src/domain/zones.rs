//! Time zones a request may name in `SO-TimeZone`: IANA names, and SuperOffice's location
//! codes and numeric ids.

use chrono_tz::Tz;

/// A parsed `SO-TimeZone` header: the zone, and whether `includeTZOffset` was given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZoneSpec {
    pub zone: Tz,
    pub include_offset: bool,
}

/// SuperOffice location codes mapped to the IANA zone they stand for, with the numeric id
/// SuperOffice's `GET /api/v1/timezone` lists for them where its documentation gives one (the
/// SO-TimeZone header page lists UTC 1, AU-ACT 36, BD 50, CA-QC 114, DK 140, FR 156, NO 261,
/// US-CA 425, US-HI 433, US-NY 460; other ids are not published, so those codes have none).
pub const CODES: &[(&str, Option<u32>, Tz)] = &[
    ("UTC", Some(1), Tz::UTC),
    ("AU-ACT", Some(36), Tz::Australia__Sydney),
    ("BD", Some(50), Tz::Asia__Dhaka),
    ("CA-QC", Some(114), Tz::America__Toronto),
    ("DK", Some(140), Tz::Europe__Copenhagen),
    ("FR", Some(156), Tz::Europe__Paris),
    ("NO", Some(261), Tz::Europe__Oslo),
    ("US-CA", Some(425), Tz::America__Los_Angeles),
    ("US-HI", Some(433), Tz::Pacific__Honolulu),
    ("US-NY", Some(460), Tz::America__New_York),
    ("SE", None, Tz::Europe__Stockholm),
    ("FI", None, Tz::Europe__Helsinki),
    ("DE", None, Tz::Europe__Berlin),
    ("NL", None, Tz::Europe__Amsterdam),
    ("GB", None, Tz::Europe__London),
    ("UK", None, Tz::Europe__London),
    ("ES", None, Tz::Europe__Madrid),
    ("IT", None, Tz::Europe__Rome),
    ("PL", None, Tz::Europe__Warsaw),
    ("BE", None, Tz::Europe__Brussels),
    ("CH", None, Tz::Europe__Zurich),
    ("AT", None, Tz::Europe__Vienna),
    ("IE", None, Tz::Europe__Dublin),
    ("PT", None, Tz::Europe__Lisbon),
    ("IS", None, Tz::Atlantic__Reykjavik),
    ("EE", None, Tz::Europe__Tallinn),
    ("LV", None, Tz::Europe__Riga),
    ("LT", None, Tz::Europe__Vilnius),
    ("US-CHI", None, Tz::America__Chicago),
    ("US-DEN", None, Tz::America__Denver),
    ("US-LA", None, Tz::America__Los_Angeles),
    ("US-PHX", None, Tz::America__Phoenix),
    ("JP", None, Tz::Asia__Tokyo),
    ("SG", None, Tz::Asia__Singapore),
    ("IN", None, Tz::Asia__Kolkata),
    ("NZ", None, Tz::Pacific__Auckland),
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

/// Parses the whole header value `zone[,includeTZOffset]`. batchd always writes an offset
/// (docs/API.md), so `includeTZOffset` is accepted and changes nothing.
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

    #[test]
    fn every_code_the_issue_names_is_known() {
        for code in [
            "UTC", "NO", "SE", "DK", "FI", "DE", "NL", "GB", "FR", "ES", "IT", "PL", "US-NY", "US-CHI", "US-DEN",
            "US-LA", "AU-ACT", "CA-QC",
        ] {
            assert!(parse_zone(code).is_some(), "{code}");
        }
        for (id, zone) in
            [(1, Tz::UTC), (36, Tz::Australia__Sydney), (140, Tz::Europe__Copenhagen), (460, Tz::America__New_York)]
        {
            assert_eq!(parse_zone(&id.to_string()), Some(zone));
        }
        assert_eq!(parse_zone("999"), None);
        let mut codes: Vec<&str> = CODES.iter().map(|c| c.0).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), CODES.len(), "codes are unique");
    }
}
