//! PostgreSQL side of identity and access: free functions the `Store` impl calls, the
//! twins of `src/store/sqlite/auth.rs`. Writers get a connection inside a transaction that the
//! caller commits; SQLite gets the same atomicity from its single writer.
//!
//! Two things SQLite's single writer gives for free need locks here:
//!
//! - **The last active admin.** `update_associate` and `delete_associate` lock the target row
//!   and every active admin row (`FOR NO KEY UPDATE`, in id order, in one statement) before
//!   counting the other admins. Two transactions each removing one of two admins therefore
//!   queue: the second re-reads the locked rows after the first commits (READ COMMITTED
//!   re-checks a locked row's new version) and finds no other admin. Row locks rather than
//!   SERIALIZABLE: no retry loop for serialization failures, and only changes to associates
//!   wait on each other (ticket and token inserts take `FOR KEY SHARE`, which does not conflict).
//!   An admin made concurrently is missed, which can only refuse a change, never allow one.
//! - **The order of `credential_change` ids.** Identity values are handed out at INSERT and
//!   committed in any order, so a poller remembering "the last id I saw" could skip a row that
//!   commits late. Every insert into that table takes one transaction-level advisory lock first,
//!   as the transaction's last statement, held to COMMIT: the ids become visible in id order, and
//!   `credential_changes(after)` means exactly what it means on SQLite. The lock is taken after
//!   every row lock of the transaction, and its holders wait for nothing else, so it adds no
//!   deadlock; it serialises only the commits of credential changes (logouts, revocations,
//!   associate changes), which are rare next to task traffic.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, Row};

use crate::domain::access::Scope;
use crate::domain::{Associate, Role};
use crate::store::StoreError;
use crate::store::access::{
    AssociateChange, CredentialKind, CredentialMatch, CredentialRow, NewCredential, RevokeTarget,
};

use super::{associate_from_row, backend};

/// Advisory lock key that orders `credential_change` inserts (ASCII "batchdCC").
pub const CHANGE_LOG_LOCK: i64 = 0x6261_7463_6864_4343;

/// Writes the change-log rows a transaction collected, as its last statement (see the module doc).
async fn log_changes(conn: &mut PgConnection, who: &[i32], now: DateTime<Utc>) -> Result<(), StoreError> {
    if who.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CHANGE_LOG_LOCK).execute(&mut *conn).await.map_err(backend)?;
    sqlx::query(
        "INSERT INTO credential_change (associate_id, registered) \
         SELECT u.a, $2 FROM unnest($1::integer[]) WITH ORDINALITY AS u (a, n) ORDER BY u.n",
    )
    .bind(who)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

pub async fn get_associate(conn: &mut PgConnection, id: i32) -> Result<Option<Associate>, StoreError> {
    let row = sqlx::query("SELECT associate_id, name, role, active FROM associate WHERE associate_id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(backend)?;
    row.as_ref().map(associate_from_row).transpose().map_err(backend)
}

/// Locks associate `id` and every active admin, in id order (one statement, so two callers
/// lock in the same order and cannot deadlock). Answers the associate as locked and how many
/// other active admins there are.
async fn lock_for_change(conn: &mut PgConnection, id: i32) -> Result<(Option<Associate>, usize), StoreError> {
    let rows = sqlx::query(
        "SELECT associate_id, name, role, active FROM associate \
         WHERE associate_id = $1 OR (role = 'admin' AND active) ORDER BY associate_id FOR NO KEY UPDATE",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let mut current = None;
    let mut other_admins = 0;
    for r in &rows {
        let a = associate_from_row(r).map_err(backend)?;
        if a.id == id {
            current = Some(a);
        } else if a.role == Role::Admin && a.active {
            other_admins += 1;
        }
    }
    Ok((current, other_admins))
}

/// Would this change leave no active admin?
fn removes_last_admin(current: &Associate, still_admin: bool, other_admins: usize) -> bool {
    current.role == Role::Admin && current.active && !still_admin && other_admins == 0
}

pub async fn update_associate(
    conn: &mut PgConnection,
    id: i32,
    change: AssociateChange,
    now: DateTime<Utc>,
) -> Result<Associate, StoreError> {
    let (current, other_admins) = lock_for_change(conn, id).await?;
    let current = current.ok_or(StoreError::NotFound)?;
    let role = change.role.unwrap_or(current.role);
    let active = change.active.unwrap_or(current.active);
    if removes_last_admin(&current, role == Role::Admin && active, other_admins) {
        return Err(StoreError::LastAdmin);
    }
    let name = change.name.unwrap_or_else(|| current.name.clone());
    sqlx::query(
        "UPDATE associate SET name = $1, role = $2, active = $3, password_hash = COALESCE($4, password_hash), \
         updated = $5 WHERE associate_id = $6",
    )
    .bind(&name)
    .bind(role.as_str())
    .bind(active)
    .bind(&change.password_hash)
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    let mut log = Vec::new();
    if change.password_hash.is_some() {
        // Tickets and sessions were bought with the old password.
        for kind in [CredentialKind::Ticket, CredentialKind::Session] {
            revoke(conn, kind, &RevokeTarget::AllOf(id), now, &mut log).await?;
        }
    }
    if change.password_hash.is_some() || role != current.role || active != current.active {
        log.push(id);
    }
    log_changes(conn, &log, now).await?;
    Ok(Associate { id, name, role, active })
}

pub async fn delete_associate(conn: &mut PgConnection, id: i32, now: DateTime<Utc>) -> Result<(), StoreError> {
    let (current, other_admins) = lock_for_change(conn, id).await?;
    let current = current.ok_or(StoreError::NotFound)?;
    if removes_last_admin(&current, false, other_admins) {
        return Err(StoreError::LastAdmin);
    }
    // Tickets, tokens and sessions go with it (ON DELETE CASCADE); tasks stay.
    sqlx::query("DELETE FROM associate WHERE associate_id = $1").bind(id).execute(&mut *conn).await.map_err(backend)?;
    log_changes(conn, &[id], now).await
}

pub async fn create_credential(
    conn: &mut PgConnection,
    new: NewCredential,
    now: DateTime<Utc>,
) -> Result<CredentialRow, StoreError> {
    // KEY SHARE: a concurrent removal waits for this insert (and then takes the row with it),
    // while changes to name, role or password do not.
    let associate_name: String = sqlx::query_scalar("SELECT name FROM associate WHERE associate_id = $1 FOR KEY SHARE")
        .bind(new.associate_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?
        .ok_or(StoreError::NotFound)?;
    let token = new.kind == CredentialKind::Token;
    let scope = token.then(|| new.scope.unwrap_or(Scope::Read));
    let label = if token { new.name } else { None };
    // Tickets and sessions always expire; SQLite stores `now` when none is given, and so do we.
    let expires = if token { new.expires } else { Some(new.expires.unwrap_or(now)) };
    let row = if token {
        sqlx::query(
            "INSERT INTO api_token (associate_id, name, scope, secret_hash, registered, expires) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING api_token_id, registered, expires",
        )
        .bind(new.associate_id)
        .bind(&label)
        .bind(scope.map(Scope::as_str))
        .bind(&new.secret_hash)
        .bind(now)
        .bind(expires)
        .fetch_one(&mut *conn)
        .await
    } else {
        let (table, id_col) = new.kind.table();
        // Table and column names are fixed strings from `CredentialKind::table`; values are bound.
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {table} (associate_id, secret_hash, registered, expires) VALUES ($1, $2, $3, $4) \
             RETURNING {id_col}, registered, expires"
        )))
        .bind(new.associate_id)
        .bind(&new.secret_hash)
        .bind(now)
        .bind(expires)
        .fetch_one(&mut *conn)
        .await
    }
    .map_err(backend)?;
    Ok(CredentialRow {
        kind: new.kind,
        id: row.try_get(0).map_err(backend)?,
        associate_id: new.associate_id,
        associate_name,
        scope,
        name: label,
        created: row.try_get(1).map_err(backend)?,
        expires: row.try_get(2).map_err(backend)?,
        revoked: None,
    })
}

/// `SELECT` list shared by the readers: credential columns, then the associate's.
fn select_sql(kind: CredentialKind) -> String {
    let (table, id) = kind.table();
    let (scope, name) =
        if kind == CredentialKind::Token { ("c.scope", "c.name") } else { ("NULL::text", "NULL::text") };
    format!(
        "SELECT c.{id}, c.associate_id, a.name, {scope}, {name}, c.registered, c.expires, c.revoked, \
         a.role, a.active FROM {table} c JOIN associate a ON a.associate_id = c.associate_id"
    )
}

fn row_from(kind: CredentialKind, r: &PgRow) -> Result<CredentialMatch, sqlx::Error> {
    let scope: Option<String> = r.try_get(3)?;
    let role: String = r.try_get(8)?;
    let row = CredentialRow {
        kind,
        id: r.try_get(0)?,
        associate_id: r.try_get(1)?,
        associate_name: r.try_get(2)?,
        scope: scope.as_deref().and_then(Scope::parse),
        name: r.try_get(4)?,
        created: r.try_get(5)?,
        expires: r.try_get(6)?,
        revoked: r.try_get(7)?,
    };
    let associate = Associate {
        id: row.associate_id,
        name: row.associate_name.clone(),
        role: Role::parse(&role).unwrap_or(Role::User),
        active: r.try_get(9)?,
    };
    Ok(CredentialMatch { row, associate })
}

pub async fn find_credential(
    conn: &mut PgConnection,
    kind: CredentialKind,
    secret_hash: &str,
) -> Result<Option<CredentialMatch>, StoreError> {
    // PostgreSQL refuses U+0000 in text; no stored hash has one (they are hex).
    if secret_hash.contains('\0') {
        return Ok(None);
    }
    // Only fixed table and column names are pasted (see `select_sql`); the hash is bound.
    let row = sqlx::query(AssertSqlSafe(format!("{} WHERE c.secret_hash = $1", select_sql(kind))))
        .bind(secret_hash)
        .fetch_optional(conn)
        .await
        .map_err(backend)?;
    row.map(|r| row_from(kind, &r)).transpose().map_err(backend)
}

pub async fn list_credentials(
    conn: &mut PgConnection,
    kind: CredentialKind,
    associate_id: Option<i32>,
) -> Result<Vec<CredentialRow>, StoreError> {
    let (_, id) = kind.table();
    let sql = format!("{} WHERE ($1::integer IS NULL OR c.associate_id = $1) ORDER BY c.{id} DESC", select_sql(kind));
    let rows = sqlx::query(AssertSqlSafe(sql)).bind(associate_id).fetch_all(conn).await.map_err(backend)?;
    rows.iter().map(|r| row_from(kind, r).map(|m| m.row)).collect::<Result<_, _>>().map_err(backend)
}

/// Revokes what `target` names (live rows only) and adds each owner to `log` once.
async fn revoke(
    conn: &mut PgConnection,
    kind: CredentialKind,
    target: &RevokeTarget,
    now: DateTime<Utc>,
    log: &mut Vec<i32>,
) -> Result<u64, StoreError> {
    let (table, id_col) = kind.table();
    let update = format!("UPDATE {table} SET revoked = $1 WHERE revoked IS NULL");
    // Fixed table and column names only; every value is bound. A row another transaction is
    // revoking is waited for and then re-checked, so it is counted once.
    let owners: Vec<i32> = match target {
        RevokeTarget::Id { id, owner } => {
            sqlx::query_scalar(AssertSqlSafe(format!(
                "{update} AND {id_col} = $2 AND ($3::integer IS NULL OR associate_id = $3) RETURNING associate_id"
            )))
            .bind(now)
            .bind(id)
            .bind(owner)
            .fetch_all(&mut *conn)
            .await
        }
        RevokeTarget::Hash(hash) if hash.contains('\0') => return Ok(0),
        RevokeTarget::Hash(hash) => {
            sqlx::query_scalar(AssertSqlSafe(format!("{update} AND secret_hash = $2 RETURNING associate_id")))
                .bind(now)
                .bind(hash)
                .fetch_all(&mut *conn)
                .await
        }
        RevokeTarget::AllOf(a) => {
            sqlx::query_scalar(AssertSqlSafe(format!("{update} AND associate_id = $2 RETURNING associate_id")))
                .bind(now)
                .bind(a)
                .fetch_all(&mut *conn)
                .await
        }
    }
    .map_err(backend)?;
    let mut seen: Vec<i32> = Vec::new();
    for a in &owners {
        if !seen.contains(a) {
            seen.push(*a);
        }
    }
    log.extend(seen);
    Ok(owners.len() as u64)
}

pub async fn revoke_credentials(
    conn: &mut PgConnection,
    kind: CredentialKind,
    target: RevokeTarget,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let mut log = Vec::new();
    let n = revoke(conn, kind, &target, now, &mut log).await?;
    log_changes(conn, &log, now).await?;
    Ok(n)
}

pub async fn credential_changes(conn: &mut PgConnection, after: i64) -> Result<(i64, Vec<i32>), StoreError> {
    let rows: Vec<(i64, i32)> = sqlx::query_as(
        "SELECT credential_change_id, associate_id FROM credential_change WHERE credential_change_id > $1 \
         ORDER BY credential_change_id",
    )
    .bind(after)
    .fetch_all(conn)
    .await
    .map_err(backend)?;
    let mut latest = after;
    let mut who = Vec::new();
    for (id, a) in rows {
        latest = latest.max(id);
        if !who.contains(&a) {
            who.push(a);
        }
    }
    Ok((latest, who))
}

pub async fn purge_credentials(conn: &mut PgConnection, before: DateTime<Utc>) -> Result<u64, StoreError> {
    let mut n = 0;
    for kind in [CredentialKind::Ticket, CredentialKind::Token, CredentialKind::Session] {
        let (table, _) = kind.table();
        // Fixed table names only; the time is bound.
        n += sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE revoked < $1 OR expires < $1")))
            .bind(before)
            .execute(&mut *conn)
            .await
            .map_err(backend)?
            .rows_affected();
    }
    sqlx::query("DELETE FROM credential_change WHERE registered < $1")
        .bind(before)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(n)
}
