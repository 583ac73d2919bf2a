//! Turns an OData list query into SQL text plus bound values. Shared by both engines: only the
//! placeholder style and the case-insensitive LIKE differ. Values are never pasted into the text.

use crate::domain::BatchTaskState;
use crate::domain::query::{Column, CompareOp, Expr, Literal, TextOp};

use super::ListQuery;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A value to bind. Times are microseconds on SQLite and `timestamptz` on Postgres; the engine
/// binds them accordingly.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Int(i64),
    Text(String),
    Time(chrono::DateTime<chrono::Utc>),
    Bool(bool),
    /// A whole list as one bound value (`json_each` on SQLite, an `int4[]` on PostgreSQL), so a
    /// list of any length is one placeholder: no expression-depth or bound-variable limit applies.
    Ints(Vec<i32>),
    Null,
}

pub struct SqlQuery {
    pub where_clause: String,
    pub order_clause: String,
    pub values: Vec<SqlValue>,
}

/// The SQL expression for a column, given the task table as `t` and the definition as `d`.
pub fn column_sql(c: Column) -> &'static str {
    match c {
        Column::Id => "t.batchtask_id",
        Column::DefinitionId => "t.batchtaskdefinition_id",
        Column::DefinitionName => "t.name",
        Column::DefinitionDescription => "d.description",
        Column::DefinitionTimeOut => "d.timeout",
        Column::Description => "t.description",
        Column::DbTag => "t.dbtag",
        Column::State => "t.state",
        Column::DetailsTable => "t.detailstable",
        Column::DetailsRecord => "t.detailsrecord",
        Column::Request => "t.request",
        Column::Response => "t.response",
        Column::StartCount => "t.startcount",
        Column::LastStarted => "t.laststarted",
        Column::ProgressPercent => "t.progresspercent",
        Column::ProgressDescription => "t.progressdescription",
        Column::UpdatedBy => "t.updated_associate_id",
        Column::UpdatedDate => "t.updated",
        Column::RegisteredBy => "t.registered_associate_id",
        Column::RegisteredDate => "t.registered",
    }
}

struct Builder {
    dialect: Dialect,
    sql: String,
    values: Vec<SqlValue>,
}

impl Builder {
    fn bind(&mut self, v: SqlValue) {
        self.values.push(v);
        match self.dialect {
            Dialect::Sqlite => self.sql.push('?'),
            Dialect::Postgres => {
                self.sql.push('$');
                self.sql.push_str(&self.values.len().to_string());
            }
        }
    }

    /// `column IN (the list)`, the list bound as one value.
    fn in_list(&mut self, column: &str, ids: Vec<i32>) {
        self.sql.push_str(column);
        match self.dialect {
            Dialect::Sqlite => {
                self.sql.push_str(" IN (SELECT value FROM json_each(");
                self.bind(SqlValue::Ints(ids));
                self.sql.push_str("))");
            }
            Dialect::Postgres => {
                self.sql.push_str(" = ANY(");
                self.bind(SqlValue::Ints(ids));
                self.sql.push(')');
            }
        }
    }

    fn literal(v: &Literal) -> SqlValue {
        match v {
            Literal::Int(i) => SqlValue::Int(*i),
            Literal::Text(s) => SqlValue::Text(s.clone()),
            Literal::Date(d) => SqlValue::Time(*d),
            Literal::Null => SqlValue::Null,
        }
    }

    fn expr(&mut self, e: &Expr) {
        match e {
            Expr::And(a, b) | Expr::Or(a, b) => {
                self.sql.push('(');
                self.expr(a);
                self.sql.push_str(if matches!(e, Expr::And(..)) { " AND " } else { " OR " });
                self.expr(b);
                self.sql.push(')');
            }
            Expr::Not(a) => {
                self.sql.push_str("NOT (");
                self.expr(a);
                self.sql.push(')');
            }
            Expr::Compare { column, op, value } => {
                let col = column_sql(*column);
                if *value == Literal::Null {
                    self.sql.push_str(col);
                    self.sql.push_str(match op {
                        CompareOp::Ne => " IS NOT NULL",
                        _ => " IS NULL",
                    });
                    return;
                }
                self.sql.push_str(col);
                self.sql.push_str(match op {
                    CompareOp::Eq => " = ",
                    CompareOp::Ne => " <> ",
                    CompareOp::Lt => " < ",
                    CompareOp::Le => " <= ",
                    CompareOp::Gt => " > ",
                    CompareOp::Ge => " >= ",
                });
                self.bind(Self::literal(value));
            }
            Expr::Text { column, op, value } => {
                let escaped = value.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
                let pattern = match op {
                    TextOp::Contains | TextOp::NotContains => format!("%{escaped}%"),
                    TextOp::Begins | TextOp::NotBegins => format!("{escaped}%"),
                    TextOp::Ends => format!("%{escaped}"),
                };
                let negated = matches!(op, TextOp::NotContains | TextOp::NotBegins);
                if value.is_empty() {
                    // Every text contains and begins with "": all rows, or none when negated.
                    self.sql.push_str(if negated { "1=0" } else { "1=1" });
                    return;
                }
                if negated {
                    // A missing text does not contain the value: NULL must count as "".
                    self.sql.push_str("COALESCE(");
                    self.sql.push_str(column_sql(*column));
                    self.sql.push_str(", '') NOT");
                } else {
                    // NULL never matches a non-empty pattern, and the bare column lets SQLite
                    // use an index for `begins` (the LIKE optimisation).
                    self.sql.push_str(column_sql(*column));
                }
                self.sql.push_str(match self.dialect {
                    Dialect::Sqlite => " LIKE ",
                    Dialect::Postgres => " ILIKE ",
                });
                self.bind(SqlValue::Text(pattern));
                self.sql.push_str(" ESCAPE '\\'");
            }
            Expr::OneOf { column, values, negated } => {
                if values.is_empty() {
                    self.sql.push_str(if *negated { "1=1" } else { "1=0" });
                    return;
                }
                self.sql.push_str(column_sql(*column));
                self.sql.push_str(if *negated { " NOT IN (" } else { " IN (" });
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        self.sql.push_str(", ");
                    }
                    self.bind(Self::literal(v));
                }
                self.sql.push(')');
            }
        }
    }
}

/// WHERE and ORDER BY for a list query. The caller appends LIMIT/OFFSET (bound too).
pub fn build_list(query: &ListQuery, dialect: Dialect) -> SqlQuery {
    let mut b = Builder { dialect, sql: String::new(), values: Vec::new() };
    b.sql.push_str(" WHERE t.state <> ");
    b.bind(SqlValue::Int(i64::from(BatchTaskState::All.number())));
    if let Some(owner) = query.owner {
        b.sql.push_str(" AND t.is_system = ");
        b.bind(SqlValue::Bool(false));
        b.sql.push_str(" AND t.associate_id = ");
        b.bind(SqlValue::Int(i64::from(owner)));
    }
    if let Some(f) = &query.filter {
        b.sql.push_str(" AND ");
        b.expr(f);
    }
    let where_clause = std::mem::take(&mut b.sql);
    let mut order = String::from(" ORDER BY ");
    for (column, desc) in &query.order_by {
        order.push_str(column_sql(*column));
        // SQLite sorts NULL lowest; PostgreSQL highest unless told. Both sort as SQLite does.
        order.push_str(match (dialect, *desc) {
            (Dialect::Sqlite, false) => " ASC, ",
            (Dialect::Sqlite, true) => " DESC, ",
            (Dialect::Postgres, false) => " ASC NULLS FIRST, ",
            (Dialect::Postgres, true) => " DESC NULLS LAST, ",
        });
    }
    order.push_str("t.batchtask_id ASC");
    SqlQuery { where_clause, order_clause: order, values: b.values }
}

/// Does the query filter or sort on a column of the task definition (`d`)? Only then does the
/// page query need the join: with it SQLite scans tasks in definition order and fetches each row,
/// ten times slower for an unfiltered sort over 100,000 tasks.
pub fn uses_definition(query: &ListQuery) -> bool {
    fn in_expr(e: &Expr) -> bool {
        match e {
            Expr::And(a, b) | Expr::Or(a, b) => in_expr(a) || in_expr(b),
            Expr::Not(a) => in_expr(a),
            Expr::Compare { column, .. } | Expr::Text { column, .. } | Expr::OneOf { column, .. } => {
                column_sql(*column).starts_with("d.")
            }
        }
    }
    query.order_by.iter().any(|(c, _)| column_sql(*c).starts_with("d.")) || query.filter.as_ref().is_some_and(in_expr)
}

/// WHERE clause for an agent-style [`super::TaskFilter`].
pub fn build_filter(filter: &super::TaskFilter, dialect: Dialect) -> (String, Vec<SqlValue>) {
    let mut b = Builder { dialect, sql: String::from(" WHERE 1=1"), values: Vec::new() };
    if let Some(states) = &filter.states {
        if states.is_empty() {
            b.sql.push_str(" AND 1=0");
        } else {
            b.sql.push_str(" AND t.state IN (");
            for (i, s) in states.iter().enumerate() {
                if i > 0 {
                    b.sql.push_str(", ");
                }
                b.bind(SqlValue::Int(i64::from(s.number())));
            }
            b.sql.push(')');
        }
    }
    if let Some(system) = filter.system {
        b.sql.push_str(" AND t.is_system = ");
        b.bind(SqlValue::Bool(system));
    }
    if let Some(name) = &filter.name {
        b.sql.push_str(" AND t.name = ");
        b.bind(SqlValue::Text(name.clone()));
    }
    if let Some(sel) = &filter.associates {
        b.sql.push_str(" AND (1=0");
        if sel.system {
            b.sql.push_str(" OR t.is_system = ");
            b.bind(SqlValue::Bool(true));
        }
        if sel.all_users {
            b.sql.push_str(" OR t.is_system = ");
            b.bind(SqlValue::Bool(false));
        }
        if !sel.ids.is_empty() {
            b.sql.push_str(" OR (t.is_system = ");
            b.bind(SqlValue::Bool(false));
            b.sql.push_str(" AND ");
            b.in_list("t.associate_id", sel.ids.clone());
            b.sql.push(')');
        }
        b.sql.push(')');
    }
    if let Some(owner) = filter.owner {
        b.sql.push_str(" AND t.is_system = ");
        b.bind(SqlValue::Bool(false));
        b.sql.push_str(" AND t.associate_id = ");
        b.bind(SqlValue::Int(i64::from(owner)));
    }
    (b.sql, b.values)
}

/// `(state number, count)` rows as states; a number no state has counts as `Unknown`.
pub(crate) fn states_with_counts(
    rows: impl IntoIterator<Item = (i64, i64)>,
) -> Vec<(crate::domain::BatchTaskState, i64)> {
    use crate::domain::BatchTaskState;
    let mut out: Vec<(BatchTaskState, i64)> = Vec::new();
    for (number, count) in rows {
        let state = BatchTaskState::from_number(number).unwrap_or(BatchTaskState::Unknown);
        match out.iter_mut().find(|(s, _)| *s == state) {
            Some((_, n)) => *n += count,
            None => out.push((state, count)),
        }
    }
    out
}

/// The stored numbers of the end states, in the order `task_stats` binds them.
pub(crate) fn finished_state_numbers() -> [i32; 3] {
    let mut out = [0; 3];
    let finished = crate::domain::BatchTaskState::STORED.into_iter().filter(|s| s.is_finished());
    for (slot, state) in out.iter_mut().zip(finished) {
        *slot = state.number();
    }
    out
}

/// One grouped row of `task_stats` (epoch minute, state number, finished, started, wait total and
/// max, run total and max; times in microseconds) as the store's answer (milliseconds).
pub(crate) fn minute_stats(row: [i64; 8]) -> super::MinuteStats {
    let [minute, state, finished, started, wait_total, wait_max, run_total, run_max] = row;
    super::MinuteStats {
        minute: super::MinuteStats::minute_start(minute),
        state: crate::domain::BatchTaskState::from_number(state).unwrap_or(crate::domain::BatchTaskState::Unknown),
        finished,
        started,
        wait_ms_total: wait_total / 1000,
        wait_ms_max: wait_max / 1000,
        run_ms_total: run_total / 1000,
        run_ms_max: run_max / 1000,
    }
}
