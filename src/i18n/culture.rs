//! `SO-Culture`: validated and accepted. SuperOffice uses it to format values it returns *as
//! strings*; batchd returns no such values (numbers and dates are JSON numbers and ISO 8601 text in
//! every culture), so a valid culture changes nothing and an unknown one is a 400.
//!
//! A culture is `language[-Script][-REGION]` as .NET names them (`nb-NO`, `en-US`, `sv`,
//! `zh-Hans`, `sr-Latn-RS`), matched case-insensitively, with `_` accepted for `-`. The language
//! must be an ISO 639-1 code .NET has a culture for, the region an ISO 3166-1 alpha-2 code or the
//! UN M.49 code 419 (Latin America). An empty value is the invariant culture.

const LANGUAGES: &str = "af am ar as az ba be bg bn bo br bs ca co cs cy da de dv dz el en es et eu fa fi fo fr fy ga gd \
     gl gu ha he hi hr hu hy id ig ii is it iu ja ka kk kl km kn ko ky lb lo lt lv mi mk ml mn mr ms mt my nb ne nl nn no \
     oc om or pa pl ps pt rm ro ru rw sa se si sk sl so sq sr sv sw ta te tg th ti tk tn tr tt ug uk ur uz vi wo xh yo zh zu";

const SCRIPTS: [&str; 6] = ["Latn", "Cyrl", "Hans", "Hant", "Arab", "Mong"];

const REGIONS: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS \
     BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ \
     FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT \
     JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP \
     MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE \
     RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV \
     TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW 419";

fn listed(list: &str, item: &str) -> bool {
    list.split_ascii_whitespace().any(|x| x.eq_ignore_ascii_case(item))
}

/// Is `tag` a culture name batchd accepts in `SO-Culture`?
pub fn is_known(tag: &str) -> bool {
    let tag = tag.trim();
    if tag.is_empty() {
        return true; // the invariant culture
    }
    let mut parts = tag.split(['-', '_']);
    let Some(lang) = parts.next() else { return false };
    if lang.len() != 2 || !listed(LANGUAGES, lang) {
        return false;
    }
    let mut rest: Vec<&str> = parts.collect();
    if rest.first().is_some_and(|s| SCRIPTS.iter().any(|x| x.eq_ignore_ascii_case(s))) {
        rest.remove(0);
    }
    match rest.as_slice() {
        [] => true,
        [region] => listed(REGIONS, region),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_known;

    #[test]
    fn accepts_dotnet_culture_names_and_refuses_the_rest() {
        for ok in ["nb-NO", "en-US", "sv", "SV-se", "de_DE", "zh-Hans", "sr-Latn-RS", "es-419", "", "fr-CA"] {
            assert!(is_known(ok), "{ok}");
        }
        for bad in ["xx", "english", "en-XX", "nb-NO-extra", "en-", "-US", "e", "en-Latn-US-x", "'; drop"] {
            assert!(!is_known(bad), "{bad}");
        }
    }
}
