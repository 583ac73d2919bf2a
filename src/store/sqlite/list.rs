//! The OData list query on SQLite, in two steps: first the page's task ids (filter, sort, limit,
//! offset on narrow rows, joining the definition only when a definition column is used), then
//! the full rows of that page, sorted again by the same order.

use rusqlite::{Connection, params_from_iter};

use crate::store::sql::{self, Dialect};
use crate::store::{ListQuery, ListRow, StoreError};

use super::{TASK_COLUMN_COUNT, TASK_COLUMNS, backend, task_from_row, to_sql};

const DEFINITION_JOIN: &str = " LEFT JOIN batchtaskdefinition d ON d.batchtaskdefinition_id = t.batchtaskdefinition_id";

pub(super) fn list_tasks(conn: &Connection, query: &ListQuery) -> Result<Vec<ListRow>, StoreError> {
    let q = sql::build_list(query, Dialect::Sqlite);
    let mut values: Vec<_> = q.values.iter().map(to_sql).collect();
    values.push(rusqlite::types::Value::Integer(i64::from(query.top)));
    values.push(rusqlite::types::Value::Integer(i64::from(query.skip)));
    let page_join = if sql::uses_definition(query) { DEFINITION_JOIN } else { "" };
    let sql = format!(
        "SELECT {TASK_COLUMNS}, t.batchtaskdefinition_id, d.description, d.timeout, t.registered_associate_id, \
         t.updated_associate_id FROM (SELECT t.batchtask_id AS pk FROM batchtask t{page_join}{}{} LIMIT ? OFFSET ?) page \
         JOIN batchtask t ON t.batchtask_id = page.pk{DEFINITION_JOIN}{}",
        q.where_clause, q.order_clause, q.order_clause
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
    let rows = stmt
        .query_map(params_from_iter(values), |r| {
            Ok(ListRow {
                task: task_from_row(r)?,
                definition_id: r.get(TASK_COLUMN_COUNT)?,
                definition_description: r.get(TASK_COLUMN_COUNT + 1)?,
                definition_timeout: r.get(TASK_COLUMN_COUNT + 2)?,
                registered_by: r.get(TASK_COLUMN_COUNT + 3)?,
                updated_by: r.get(TASK_COLUMN_COUNT + 4)?,
            })
        })
        .map_err(backend)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
}
