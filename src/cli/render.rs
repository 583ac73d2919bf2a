//! Output: the API's JSON as it came, or tables that fit the terminal.

use std::io::{IsTerminal, Write};

use comfy_table::{ColumnConstraint, ContentArrangement, Table, Width, presets};
use serde_json::Value;

use crate::cli::client::Answer;

/// The body as the server sent it, ending with one newline (for jq and friends).
pub fn raw(answer: &Answer) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&answer.body);
    if !answer.body.ends_with(b"\n") {
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
}

/// Columns of the terminal on stdout; `COLUMNS` when stdout is not one; none (no wrapping,
/// so pipes to grep see whole lines) otherwise.
fn width() -> Option<u16> {
    let out = std::io::stdout();
    if out.is_terminal() {
        // SAFETY: TIOCGWINSZ writes a winsize into the struct we pass, nothing else.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        if unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_col > 0 {
            return Some(ws.ws_col);
        }
    }
    std::env::var("COLUMNS").ok().and_then(|c| c.trim().parse().ok()).filter(|&c: &u16| c > 0)
}

fn table(header: Option<&[&str]>) -> Table {
    let mut t = Table::new();
    // Borderless: easy to read, and to cut with awk.
    t.load_style(presets::NOTHING);
    match width() {
        Some(w) => {
            t.set_width(w).set_content_arrangement(ContentArrangement::Dynamic);
        }
        None => {
            t.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    if let Some(h) = header {
        t.set_header(h.iter().copied());
    }
    t
}

/// Prints `t`; the columns in `keep` (ids, states) are never wrapped, the others not below ten (plus padding)
/// characters: on a very narrow terminal an overlong line beats a column one letter wide.
fn print(t: &mut Table, keep: &[usize]) {
    let widths = t.column_max_content_widths();
    for (i, c) in t.column_iter_mut().enumerate() {
        // Flush left, two blanks between columns.
        c.set_padding((0, 2));
        // A bound wider than the content would pad the column even when all fits.
        let least = widths.get(i).copied().unwrap_or(0).min(10) + 2;
        c.set_constraint(if keep.contains(&i) {
            ColumnConstraint::ContentWidth
        } else {
            ColumnConstraint::LowerBoundary(Width::Fixed(least))
        });
    }
    let mut out = std::io::stdout().lock();
    // Trimmed: comfy-table pads the last column, and trailing blanks get in the way of diff.
    let _ = writeln!(out, "{}", t.trim_fmt());
    let _ = out.flush();
}

/// A JSON value as table text: strings bare, null empty.
pub fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// A date as the server wrote it (RFC 3339, 100 ns ticks), to the second: `2024-05-01
/// 10:00:00+02:00`. The offset stays: it is the zone the server was asked for.
fn date(v: Option<&Value>) -> String {
    let t = text(v);
    match chrono::DateTime::parse_from_rfc3339(&t) {
        Ok(d) => d.format("%Y-%m-%d %H:%M:%S%:z").to_string(),
        Err(_) => t,
    }
}

/// `40% slept 2 of 5 s`.
fn progress(percent: Option<&Value>, description: Option<&Value>) -> String {
    let p = percent.and_then(Value::as_i64).filter(|p| *p > 0).map(|p| format!("{p}%"));
    let d = text(description);
    match (p, d.is_empty()) {
        (Some(p), false) => format!("{p} {d}"),
        (Some(p), true) => p,
        (None, _) => d,
    }
}

/// The archive gives State as its number.
fn state_name(v: Option<&Value>) -> String {
    match v.and_then(Value::as_i64).and_then(batchd::domain::BatchTaskState::from_number) {
        Some(s) => s.name().to_owned(),
        None => text(v),
    }
}

/// `batchd task get`: one property a line.
pub fn task(t: &Value) {
    let mut tbl = table(None);
    let mut row = |k: &str, v: String| {
        if !v.is_empty() {
            tbl.add_row(vec![k.to_owned(), v]);
        }
    };
    row("Id", text(t.get("Id")));
    row("Name", text(t.get("Name")));
    row("State", text(t.get("State")));
    row("Description", text(t.get("Description")));
    row("Owner", text(t.get("AssociateId")));
    row("Created", date(t.get("Created")));
    row("LastStarted", date(t.get("LastStarted")));
    row("StartCount", text(t.get("StartCount")));
    row("Progress", progress(t.get("ProgressPercent"), t.get("ProgressDescription")));
    if let Some(Value::Object(params)) = t.get("ParameterObject") {
        let list: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", text(Some(v)))).collect();
        row("Parameters", list.join(", "));
    }
    row("Cancellation", text(t.get("CancellationBehaviour")));
    row("FileName", text(t.get("FileName")));
    row("Result", text(t.get("Result")));
    print(&mut tbl, &[0]);
}

/// `batchd task list`: rows of the OData list.
pub fn task_list(list: &Value) {
    let mut tbl = table(Some(&["ID", "NAME", "STATE", "PROGRESS", "OWNER", "REGISTERED", "DESCRIPTION"]));
    for r in list.get("value").and_then(Value::as_array).into_iter().flatten() {
        tbl.add_row(vec![
            text(r.get("batchTaskId")),
            text(r.get("DefinitionName")),
            state_name(r.get("State")),
            progress(r.get("ProgressPercent"), r.get("ProgressDescription")),
            text(r.get("registeredBy")),
            date(r.get("registeredDate")),
            text(r.get("Description")),
        ]);
    }
    print(&mut tbl, &[0, 2, 4]);
}

/// `batchd task events`.
pub fn events(list: &Value) {
    let mut tbl = table(Some(&["TIME", "FROM", "TO", "BY", "NODE", "REASON"]));
    for e in list.as_array().into_iter().flatten() {
        let by = match (text(e.get("Associate")), text(e.get("AssociateId"))) {
            (name, _) if !name.is_empty() => name,
            (_, id) => id,
        };
        tbl.add_row(vec![
            date(e.get("Time")),
            text(e.get("From")),
            text(e.get("To")),
            by,
            text(e.get("Node")),
            text(e.get("Reason")),
        ]);
    }
    print(&mut tbl, &[1, 2]);
}

/// `batchd task deps`: one row per task, which way it goes first.
pub fn dependencies(d: &Value) {
    let mut tbl = table(Some(&["WAY", "ID", "NAME", "STATE", "SATISFIED"]));
    for (way, key) in [("after", "After"), ("before", "Before")] {
        for t in d.get(key).and_then(Value::as_array).into_iter().flatten() {
            let state = match t.get("State") {
                Some(Value::Null) => "(deleted)".to_owned(),
                s => text(s),
            };
            tbl.add_row(vec![way.to_owned(), text(t.get("Id")), text(t.get("Name")), state, text(t.get("Satisfied"))]);
        }
    }
    print(&mut tbl, &[1]);
    if d.get("BeforeMore").and_then(Value::as_bool) == Some(true) {
        eprintln!("(more tasks wait for it: only the first {} are listed)", text(d.get("BeforeMax")));
    }
}

/// `batchd definition list`.
pub fn definitions(list: &Value) {
    let mut tbl = table(Some(&[
        "NAME",
        "RUNNER",
        "TIMEOUT",
        "RESTARTS",
        "CONCURRENCY",
        "PRIORITY",
        "UNIQUE",
        "EVERY",
        "NEXT RUN",
        "PAUSED",
        "NEW",
        "RUNNING",
        "FAILED",
        "DESCRIPTION",
    ]));
    let count = |d: &Value, k: &str| text(d.get("Counts").and_then(|c| c.get(k)));
    let secs = |v: Option<&Value>| {
        v.and_then(Value::as_u64)
            .map(|s| batchd::domain::duration::format_duration(std::time::Duration::from_secs(s)))
            .unwrap_or_default()
    };
    for d in list.as_array().into_iter().flatten() {
        tbl.add_row(vec![
            text(d.get("Name")),
            text(d.get("Runner")),
            secs(d.get("TimeOut")),
            text(d.get("Restarts")),
            text(d.get("Concurrency")),
            text(d.get("Priority")),
            d.get("Unique")
                .and_then(Value::as_array)
                .map(|u| u.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
                .unwrap_or_default(),
            secs(d.get("StartInterval")),
            date(d.get("NextRun")),
            if d.get("Paused").and_then(Value::as_bool) == Some(true) { "paused".into() } else { String::new() },
            count(d, "New"),
            count(d, "Running"),
            count(d, "Failed"),
            text(d.get("Description")),
        ]);
    }
    print(&mut tbl, &[1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12]);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn progress_and_states_read_as_words() {
        assert_eq!(progress(Some(&json!(40)), Some(&json!("half"))), "40% half");
        assert_eq!(progress(Some(&json!(0)), Some(&Value::Null)), "");
        assert_eq!(state_name(Some(&json!(5))), "Failed");
        assert_eq!(state_name(Some(&json!("Started"))), "Started");
        assert_eq!(date(Some(&json!("2026-12-02T17:03:52.2170510+01:00"))), "2026-12-02 17:03:52+01:00");
        assert_eq!(date(Some(&json!("not a date"))), "not a date");
    }
}
