//! Keeping the database password out of everything batchd prints: error messages, logs and
//! `{:?}` of the configuration. Every place that shows a database URL goes through
//! [`redact_url`]; text that may quote parts of it (a driver's error) goes through [`scrub`].

/// What a password is replaced with.
pub const MASK: &str = "***";

/// The URL with its password replaced by [`MASK`]: the one of the userinfo
/// (`postgres://u:***@host/db`) and any `password=` parameter (`?password=***`, or
/// `password=*** host=…` in the keyword form). Everything else is kept, so the message still says
/// which database was meant.
///
/// The userinfo is taken to end at the *last* `@`: a password written without percent-encoding
/// may itself hold `@`, `/` or `?`, and masking a little too much is better than too little.
pub fn redact_url(url: &str) -> String {
    let masked = match userinfo_password(url) {
        Some((start, end)) => format!("{}{MASK}{}", &url[..start], &url[end..]),
        None => url.to_owned(),
    };
    let mut out = String::with_capacity(masked.len());
    let mut rest = masked.as_str();
    while let Some((before, value_len)) = password_param(rest) {
        out.push_str(&rest[..before]);
        out.push_str(MASK);
        rest = &rest[before + value_len..];
    }
    out.push_str(rest);
    out
}

/// `text` with every password of `url` replaced by [`MASK`] (as written and percent-decoded),
/// and the URL itself redacted: for messages of a driver that may quote either.
pub fn scrub(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &redact_url(url));
    let mut secrets: Vec<String> = Vec::new();
    if let Some((start, end)) = userinfo_password(url) {
        secrets.push(url[start..end].to_owned());
    }
    let mut rest = url;
    while let Some((at, len)) = password_param(rest) {
        secrets.push(unquote(&rest[at..at + len]).to_owned());
        rest = &rest[at + len..];
    }
    let decoded: Vec<String> =
        secrets.iter().map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()).collect();
    secrets.extend(decoded);
    // Longest first, so a password that contains another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in secrets.iter().filter(|s| !s.is_empty() && s.as_str() != MASK) {
        out = out.replace(s.as_str(), MASK);
    }
    out
}

/// Byte range of the userinfo password: after `scheme://`, between the first `:` and the last `@`.
fn userinfo_password(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let at = start + url[start..].rfind('@')?;
    let colon = start + url[start..at].find(':')?;
    (colon < at).then_some((colon + 1, at))
}

/// The first `password=` parameter in `s`: where its value starts and how long it is. A key
/// counts only at the start or after `?`, `&`, `;` or white space (so `old_password=` does not).
fn password_param(s: &str) -> Option<(usize, usize)> {
    const KEY: &str = "password=";
    let lower = s.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(KEY) {
        let at = from + i;
        let boundary = at == 0 || matches!(s.as_bytes()[at - 1], b'?' | b'&' | b';' | b' ' | b'\t' | b'\n');
        let value = at + KEY.len();
        if boundary {
            let rest = &s[value..];
            let len = if let Some(quoted) = rest.strip_prefix('\'') {
                // The keyword form quotes values with spaces: 'se cret', with \' inside.
                let mut end = quoted.len();
                let mut escaped = false;
                for (j, c) in quoted.char_indices() {
                    match c {
                        '\\' if !escaped => escaped = true,
                        '\'' if !escaped => {
                            end = j + 1;
                            break;
                        }
                        _ => escaped = false,
                    }
                }
                end + 1
            } else {
                rest.find(['&', ';', ' ', '\t', '\n', '#']).unwrap_or(rest.len())
            };
            return Some((value, len));
        }
        from = value;
    }
    None
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')).unwrap_or(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn passwords_are_masked_and_the_rest_kept() {
        for (url, want) in [
            ("postgres://u:SECRET@127.0.0.1:1/x", "postgres://u:***@127.0.0.1:1/x"),
            ("postgresql://batchd:p%40ss@db.internal:5432/batchd", "postgresql://batchd:***@db.internal:5432/batchd"),
            ("postgres://u:pa@ss/w?rd@host/db", "postgres://u:***@host/db"),
            (
                "postgres://u@host/db?sslmode=disable&password=SECRET",
                "postgres://u@host/db?sslmode=disable&password=***",
            ),
            ("postgres://host/db?PASSWORD=SECRET&x=1", "postgres://host/db?PASSWORD=***&x=1"),
            ("host=db user=u password='se cret' dbname=x", "host=db user=u password=*** dbname=x"),
            ("postgres://u@host/db", "postgres://u@host/db"),
            ("postgres://host/db?old_password=x", "postgres://host/db?old_password=x"),
            ("sqlite:batchd.db", "sqlite:batchd.db"),
            ("", ""),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn scrub_masks_the_password_however_a_message_quotes_it() {
        let url = "postgres://u:p%40SECRET@h/x?password=OTHER";
        let msg = format!("opening {url}: auth failed for password p@SECRET (also OTHER)");
        let out = scrub(&msg, url);
        assert!(!out.contains("SECRET") && !out.contains("OTHER"), "{out}");
        assert!(out.contains("postgres://u:***@h/x?password=***"), "{out}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the password holds (`@`, `/`, `?`, `:` unencoded included), it is masked and
        /// the user, host and database stay.
        #[test]
        fn no_password_survives(
            user in "[a-z][a-z0-9_]{0,8}",
            password in "[A-Z0-9!#$%&'()*+,/:;=?@\\[\\]~ -]{1,20}",
            host in "[a-z][a-z0-9.-]{0,15}",
            db in "[a-z][a-z0-9_]{0,8}",
        ) {
            let want = format!("postgres://{user}:***@{host}:5432/{db}");
            let raw = format!("postgres://{user}:{password}@{host}:5432/{db}");
            prop_assert_eq!(redact_url(&raw), want.clone());
            let encoded: String =
                percent_encoding::utf8_percent_encode(&password, percent_encoding::NON_ALPHANUMERIC).to_string();
            prop_assert_eq!(redact_url(&format!("postgres://{user}:{encoded}@{host}:5432/{db}")), want);
            let query = format!("postgres://{user}@{host}/{db}?password={encoded}&sslmode=disable");
            prop_assert_eq!(redact_url(&query), format!("postgres://{user}@{host}/{db}?password=***&sslmode=disable"));
            if !password.contains('*') {
                let message = format!("failed: {password} / {raw}");
                prop_assert!(!scrub(&message, &raw).contains(&password));
            }
        }

        /// Text without a userinfo password or `password=` comes out unchanged, and redacting twice
        /// is redacting once.
        #[test]
        fn harmless_text_is_unchanged_and_redaction_idempotent(s in "[ -~]{0,60}") {
            if !s.contains("://") && !s.to_ascii_lowercase().contains("password=") {
                prop_assert_eq!(redact_url(&s), s.clone());
            }
            let once = redact_url(&s);
            prop_assert_eq!(redact_url(&once), once.clone());
        }
    }
}
