//! The `$filter` parser and the SQL it becomes: any text parses or fails with a position inside
//! it, and an accepted filter's SQL binds every value (no quote from the input reaches the text).
#![no_main]

use batchd::domain::filter;
use batchd::store::ListQuery;
use batchd::store::sql::{Dialect, build_list};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match filter::parse(text, chrono_tz::Tz::Europe__Oslo) {
        Err(e) => assert!(e.position <= text.len(), "position {} past the end", e.position),
        Ok(expr) => {
            let query = ListQuery { filter: Some(expr), order_by: Vec::new(), top: 10, skip: 0, owner: Some(3) };
            for dialect in [Dialect::Sqlite, Dialect::Postgres] {
                let q = build_list(&query, dialect);
                let placeholders = match dialect {
                    Dialect::Sqlite => q.where_clause.matches('?').count(),
                    Dialect::Postgres => q.where_clause.matches('$').count(),
                };
                assert_eq!(placeholders, q.values.len(), "every value is bound: {}", q.where_clause);
                // The only quotes in the SQL are the builder's own constants.
                let rest = q.where_clause.replace("ESCAPE '\\'", "").replace(", '')", ")");
                assert!(!rest.contains('\''), "a quote reached the SQL text: {}", q.where_clause);
            }
        }
    }
});
