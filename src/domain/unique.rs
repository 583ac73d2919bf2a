//! Unique tasks (`unique = ["Param", ...]` on a definition): at most one task per definition and
//! combination of the named ParameterObject values is live (`New`, `Aquired`, `Started`) at once.
//!
//! The domain decides what "the same combination" is: [`key`] turns the definition's name and
//! the chosen values into one canonical digest. The stores keep it in `batchtask.unique_key`
//! under a partial unique index over the live states, so the database enforces the rule across
//! nodes and racing creates.

use sha2::{Digest, Sha256};

use super::task::{BatchTaskState, Parameters, limits};

/// The most parameters one `unique` list may name.
pub const MAX_NAMES: usize = 16;
/// The longest parameter name a `unique` list may hold (a ParameterObject key's limit).
pub const MAX_NAME_LEN: usize = limits::PARAMETER_KEY;

/// The states in which a task holds its key: the partial index's `state IN (1, 2, 3)` (on SQLite
/// `state BETWEEN 1 AND 3`).
pub const LIVE: [BatchTaskState; 3] = [BatchTaskState::New, BatchTaskState::Aquired, BatchTaskState::Started];

/// Whether a move from `from` to `to` brings a task back into the live states, where its key
/// must be free (a retry, or an update from a finished state to `New`).
pub fn revives(from: BatchTaskState, to: BatchTaskState) -> bool {
    !LIVE.contains(&from) && LIVE.contains(&to)
}

/// A definition's `unique` list, checked: 1 to [`MAX_NAMES`] distinct, non-blank names of at
/// most [`MAX_NAME_LEN`] characters, in the order the config gave them (how they are shown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unique(Vec<String>);

impl Unique {
    pub fn parse(names: Vec<String>) -> Result<Unique, String> {
        if names.is_empty() {
            return Err("an empty list: name at least one ParameterObject key, or leave the key out".into());
        }
        if names.len() > MAX_NAMES {
            return Err(format!("{} names: at most {MAX_NAMES}", names.len()));
        }
        for (i, n) in names.iter().enumerate() {
            if n.trim().is_empty() {
                return Err("a blank name: each must be a ParameterObject key".into());
            }
            if n.chars().count() > MAX_NAME_LEN {
                return Err(format!("{n:.40?}… is longer than {MAX_NAME_LEN} characters"));
            }
            if n.contains('\0') {
                return Err("a name holds U+0000".into());
            }
            if names[..i].contains(n) {
                return Err(format!("{n:?} is named twice"));
            }
        }
        Ok(Unique(names))
    }

    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// The key of a new task of definition `name` with these parameters.
    pub fn key(&self, name: &str, params: Option<&Parameters>) -> String {
        key(name, &self.0, params)
    }
}

/// The canonical key of a task of definition `name` under the `unique` names: a SHA-256 hex
/// digest of the name and, for each unique name in sorted order, its value.
///
/// - The order of the `unique` list does not matter (the names are sorted).
/// - Values compare by the text the task stores, which is what its runner sees: the create
///   body's JSON `5` and `"5"` are both stored as `"5"`, `true` and `"true"` as `"true"` (so
///   they collide); `5` and `5.0` are different texts (`"5"`, `"5.0"`) and do not.
/// - A parameter the task does not have is distinct from any value, the empty text included.
///   A JSON `null` is stored as the empty text, so `null` and `""` collide.
/// - Parameter names are compared exactly (case matters), as ParameterObject keys are.
///
/// Injective by construction: the parts are a JSON array (strings escaped, absent as `null`),
/// prefixed with a version so a later change of form never matches an old key.
pub fn key(name: &str, unique: &[String], params: Option<&Parameters>) -> String {
    let mut names: Vec<&str> = unique.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    let values: Vec<serde_json::Value> = names
        .iter()
        .map(|n| {
            let v = params.and_then(|p| p.get(n)).map_or(serde_json::Value::Null, |v| v.into());
            serde_json::json!([n, v])
        })
        .collect();
    let canonical = serde_json::json!(["unique/1", name, values]);
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `Warning` header value of a create that answered the live `holder` instead of creating
/// a task (RFC 7234 warn-code 299, "miscellaneous persistent warning"). Characters a header
/// cannot carry (and the quoted string's own `"` and `\`) become `?`.
pub fn warning(holder: i32, name: &str, unique: &[String]) -> String {
    let text = format!("unique: task {holder} of {name} with the same {} is live", unique.join(", "));
    let text: String =
        text.chars().map(|c| if (' '..='~').contains(&c) && c != '"' && c != '\\' { c } else { '?' }).collect();
    format!("299 batchd \"{text}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(pairs: &[(&str, &str)]) -> Parameters {
        Parameters(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }
    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_live_states_are_the_indexed_ones() {
        // The partial index is `state IN (1, 2, 3)` on PostgreSQL, `state BETWEEN 1 AND 3` on SQLite.
        assert_eq!(LIVE.map(|s| s.number()), [1, 2, 3]);
        assert!(revives(BatchTaskState::Failed, BatchTaskState::New));
        assert!(!revives(BatchTaskState::Started, BatchTaskState::New), "a restart keeps its key");
        assert!(!revives(BatchTaskState::New, BatchTaskState::Failed));
    }

    #[test]
    fn the_list_is_checked() {
        assert!(Unique::parse(vec![]).unwrap_err().contains("empty"));
        assert!(Unique::parse(names(&["A", "B", "A"])).unwrap_err().contains("twice"));
        assert!(Unique::parse(names(&[" "])).unwrap_err().contains("blank"));
        assert!(Unique::parse(vec!["x".repeat(MAX_NAME_LEN + 1)]).unwrap_err().contains("longer than 254"));
        let many: Vec<String> = (0..=MAX_NAMES).map(|i| format!("P{i}")).collect();
        assert!(Unique::parse(many.clone()).unwrap_err().contains("at most 16"));
        assert_eq!(Unique::parse(many[..MAX_NAMES].to_vec()).unwrap().names().len(), MAX_NAMES);
        assert_eq!(
            Unique::parse(names(&["B", "A"])).unwrap().names(),
            &names(&["B", "A"])[..],
            "the config's order kept"
        );
    }

    #[test]
    fn what_collides_and_what_does_not() {
        let u = names(&["Customer", "Month"]);
        let k = |p: &Parameters| key("export", &u, Some(p));
        let base = params(&[("Customer", "42"), ("Month", "2026-12"), ("Other", "x")]);
        // Other parameters and their order do not matter.
        assert_eq!(k(&base), k(&params(&[("Month", "2026-12"), ("Customer", "42")])));
        // The order of the unique list does not matter.
        assert_eq!(k(&base), key("export", &names(&["Month", "Customer"]), Some(&base)));
        // Another value, another definition: another key.
        assert_ne!(k(&base), k(&params(&[("Customer", "43"), ("Month", "2026-12")])));
        assert_ne!(k(&base), key("import", &u, Some(&base)));
        // Missing is not the empty text; no ParameterObject is the same as none of the keys.
        let missing = params(&[("Customer", "42")]);
        let empty = params(&[("Customer", "42"), ("Month", "")]);
        assert_ne!(k(&missing), k(&empty));
        assert_eq!(key("export", &u, None), k(&params(&[])));
        // Values cannot run into each other or into names.
        assert_ne!(k(&params(&[("Customer", "4"), ("Month", "2")])), k(&params(&[("Customer", "42"), ("Month", "")])));
        assert_ne!(
            key("a", &names(&["x"]), Some(&params(&[("x", "\",\"y")]))),
            key("a", &names(&["x", "y"]), Some(&params(&[("x", ""), ("y", "")])))
        );
        assert_eq!(k(&base).len(), 64);
    }

    #[test]
    fn the_warning_is_a_header_value() {
        assert_eq!(
            warning(123, "export", &names(&["Customer", "Month"])),
            "299 batchd \"unique: task 123 of export with the same Customer, Month is live\""
        );
        let w = warning(7, "rapport-\u{e6}\"x\\", &names(&["K"]));
        assert!(w.bytes().all(|b| (0x20..0x7f).contains(&b)), "{w}");
        assert!(w.ends_with("of rapport-??x? with the same K is live\""), "{w}");
    }

    fn arb_params() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::vec(("[A-D]", "[a-c0-9\"\\\\,]{0,3}"), 0..6)
    }

    proptest! {
        /// The key is a function of exactly (name, set of unique names, their values, present or not).
        #[test]
        fn the_key_depends_on_the_chosen_values_only(
            pairs in arb_params(),
            other in arb_params(),
            mut unique in proptest::collection::vec("[A-D]", 1..4),
            shuffle in any::<u64>(),
        ) {
            // A ParameterObject has each key once (a JSON object).
            let dedup = |v: Vec<(String, String)>| {
                let mut seen = std::collections::HashSet::new();
                Parameters(v.into_iter().filter(|(k, _)| seen.insert(k.clone())).collect())
            };
            let (a, b) = (dedup(pairs), dedup(other));
            let ka = key("d", &unique, Some(&a));
            let same = unique.iter().all(|n| a.get(n) == b.get(n));
            prop_assert_eq!(ka == key("d", &unique, Some(&b)), same);
            let n = unique.len();
            unique.rotate_left((shuffle as usize) % n);
            prop_assert_eq!(&ka, &key("d", &unique, Some(&a)));
            let mut reversed = a.0.clone();
            reversed.reverse();
            prop_assert_eq!(&ka, &key("d", &unique, Some(&Parameters(reversed))));
        }
    }
}
