//! The `Authorization` header parser and the Basic decoder: any text names one of the three
//! schemes with trimmed credentials taken from it, or is the unsupported-scheme refusal.
#![no_main]

use batchd::http::auth;
use batchd::i18n::Key;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match auth::parse_authorization(text) {
        Ok((kind, rest)) => {
            assert_eq!(rest, rest.trim());
            assert!(text.contains(rest));
            let scheme = text.trim().split(' ').next().unwrap_or("");
            assert!(["basic", "soticket", "bearer"].iter().any(|s| s.eq_ignore_ascii_case(scheme)), "{scheme}");
            if kind.is_none() {
                if let Some((name, password)) = auth::decode_basic(rest) {
                    assert!(!name.contains(':'), "the name ends at the first colon");
                    assert!(name.len() + 1 + password.len() <= rest.len(), "base64 only shrinks");
                }
            }
        }
        Err(key) => assert_eq!(key, Key::AuthUnsupportedScheme),
    }
});
