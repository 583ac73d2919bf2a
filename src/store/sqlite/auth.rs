//! SQLite side of identity and access: free functions the `Store` impl calls, each on
//! the writer's connection (writes) or a pooled reader (reads). Plain SQL that PostgreSQL also
//! takes, apart from the `?` placeholders.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::domain::access::Scope;
use crate::domain::{Associate, Role};
use crate::store::StoreError;
use crate::store::access::{
    AssociateChange, CredentialKind, CredentialMatch, CredentialRow, NewCredential, RevokeTarget,
};

use super::{associate_from_row, backend, from_micros, micros};

fn log_change(conn: &Connection, associate_id: i32, now: DateTime<Utc>) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO credential_change (associate_id, registered) VALUES (?, ?)")
        .and_then(|mut s| s.execute(params![associate_id, micros(now)]))
        .map_err(backend)?;
    Ok(())
}

pub fn get_associate(conn: &Connection, id: i32) -> rusqlite::Result<Option<Associate>> {
    conn.prepare_cached("SELECT associate_id, name, role, active FROM associate WHERE associate_id = ?")?
        .query_row([id], associate_from_row)
        .optional()
}

/// Would this change leave no active admin?
fn removes_last_admin(conn: &Connection, current: &Associate, still_admin: bool) -> Result<bool, StoreError> {
    if current.role != Role::Admin || !current.active || still_admin {
        return Ok(false);
    }
    let others: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM associate WHERE role = 'admin' AND active = 1 AND associate_id <> ?",
            [current.id],
            |r| r.get(0),
        )
        .map_err(backend)?;
    Ok(others == 0)
}

pub fn update_associate(
    conn: &Connection,
    id: i32,
    change: AssociateChange,
    now: DateTime<Utc>,
) -> Result<Associate, StoreError> {
    let current = get_associate(conn, id).map_err(backend)?.ok_or(StoreError::NotFound)?;
    let role = change.role.unwrap_or(current.role);
    let active = change.active.unwrap_or(current.active);
    if removes_last_admin(conn, &current, role == Role::Admin && active)? {
        return Err(StoreError::LastAdmin);
    }
    let name = change.name.unwrap_or_else(|| current.name.clone());
    conn.prepare_cached(
        "UPDATE associate SET name = ?, role = ?, active = ?, password_hash = COALESCE(?, password_hash), updated = ? \
         WHERE associate_id = ?",
    )
    .and_then(|mut s| s.execute(params![name, role.as_str(), active, change.password_hash, micros(now), id]))
    .map_err(backend)?;
    if change.password_hash.is_some() {
        // Tickets and sessions were bought with the old password.
        for kind in [CredentialKind::Ticket, CredentialKind::Session] {
            revoke(conn, kind, &RevokeTarget::AllOf(id), now)?;
        }
    }
    if change.password_hash.is_some() || role != current.role || active != current.active {
        log_change(conn, id, now)?;
    }
    Ok(Associate { id, name, role, active })
}

pub fn delete_associate(conn: &Connection, id: i32, now: DateTime<Utc>) -> Result<(), StoreError> {
    let current = get_associate(conn, id).map_err(backend)?.ok_or(StoreError::NotFound)?;
    if removes_last_admin(conn, &current, false)? {
        return Err(StoreError::LastAdmin);
    }
    // Credentials go with it (ON DELETE CASCADE); deleted explicitly too, in case foreign keys are off.
    for kind in [CredentialKind::Ticket, CredentialKind::Token, CredentialKind::Session] {
        let (table, _) = kind.table();
        conn.execute(&format!("DELETE FROM {table} WHERE associate_id = ?"), [id]).map_err(backend)?;
    }
    conn.execute("DELETE FROM associate WHERE associate_id = ?", [id]).map_err(backend)?;
    log_change(conn, id, now)
}

pub fn create_credential(
    conn: &Connection,
    new: NewCredential,
    now: DateTime<Utc>,
) -> Result<CredentialRow, StoreError> {
    let associate = get_associate(conn, new.associate_id).map_err(backend)?.ok_or(StoreError::NotFound)?;
    let (table, _) = new.kind.table();
    match new.kind {
        CredentialKind::Token => conn.execute(
            "INSERT INTO api_token (associate_id, name, scope, secret_hash, registered, expires) VALUES (?, ?, ?, ?, ?, ?)",
            params![
                new.associate_id,
                new.name,
                new.scope.unwrap_or(Scope::Read).as_str(),
                new.secret_hash,
                micros(now),
                new.expires.map(micros)
            ],
        ),
        _ => conn.execute(
            &format!("INSERT INTO {table} (associate_id, secret_hash, registered, expires) VALUES (?, ?, ?, ?)"),
            params![new.associate_id, new.secret_hash, micros(now), micros(new.expires.unwrap_or(now))],
        ),
    }
    .map_err(backend)?;
    // What is stored: tickets and sessions keep no label, and expire `now` when given no expiry.
    let token = new.kind == CredentialKind::Token;
    let expires = if token { new.expires } else { Some(new.expires.unwrap_or(now)) };
    Ok(CredentialRow {
        kind: new.kind,
        id: conn.last_insert_rowid(),
        associate_id: associate.id,
        associate_name: associate.name,
        scope: if token { new.scope.or(Some(Scope::Read)) } else { None },
        name: if token { new.name } else { None },
        created: from_micros(micros(now)),
        expires: expires.map(|e| from_micros(micros(e))),
        revoked: None,
    })
}

/// `SELECT` list shared by the readers: credential columns, then the associate's.
fn select_sql(kind: CredentialKind) -> String {
    let (table, id) = kind.table();
    let (scope, name) = if kind == CredentialKind::Token { ("c.scope", "c.name") } else { ("NULL", "NULL") };
    format!(
        "SELECT c.{id}, c.associate_id, a.name, {scope}, {name}, c.registered, c.expires, c.revoked, \
         a.role, a.active FROM {table} c JOIN associate a ON a.associate_id = c.associate_id"
    )
}

fn row_from(kind: CredentialKind, r: &Row<'_>) -> rusqlite::Result<CredentialMatch> {
    let scope: Option<String> = r.get(3)?;
    let role: String = r.get(8)?;
    let row = CredentialRow {
        kind,
        id: r.get(0)?,
        associate_id: r.get(1)?,
        associate_name: r.get(2)?,
        scope: scope.as_deref().and_then(Scope::parse),
        name: r.get(4)?,
        created: from_micros(r.get(5)?),
        expires: r.get::<_, Option<i64>>(6)?.map(from_micros),
        revoked: r.get::<_, Option<i64>>(7)?.map(from_micros),
    };
    let associate = Associate {
        id: row.associate_id,
        name: row.associate_name.clone(),
        role: Role::parse(&role).unwrap_or(Role::User),
        active: r.get(9)?,
    };
    Ok(CredentialMatch { row, associate })
}

pub fn find_credential(
    conn: &Connection,
    kind: CredentialKind,
    secret_hash: &str,
) -> rusqlite::Result<Option<CredentialMatch>> {
    conn.prepare_cached(&format!("{} WHERE c.secret_hash = ?", select_sql(kind)))?
        .query_row([secret_hash], |r| row_from(kind, r))
        .optional()
}

pub fn list_credentials(
    conn: &Connection,
    kind: CredentialKind,
    associate_id: Option<i32>,
) -> rusqlite::Result<Vec<CredentialRow>> {
    let (_, id) = kind.table();
    let sql = format!("{} WHERE (? IS NULL OR c.associate_id = ?) ORDER BY c.{id} DESC", select_sql(kind));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![associate_id, associate_id], |r| row_from(kind, r).map(|m| m.row))?;
    rows.collect()
}

fn revoke(
    conn: &Connection,
    kind: CredentialKind,
    target: &RevokeTarget,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let (table, id_col) = kind.table();
    // Whose credentials change: the change log names them so other servers drop their caches.
    let (filter, owners): (String, Vec<i32>) = match target {
        RevokeTarget::Id { id, owner } => {
            let found: Option<i32> = conn
                .query_row(
                    &format!("SELECT associate_id FROM {table} WHERE {id_col} = ? AND revoked IS NULL"),
                    [id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            match found {
                Some(a) if owner.is_none_or(|o| o == a) => (format!("{id_col} = {id}"), vec![a]),
                _ => return Ok(0),
            }
        }
        RevokeTarget::Hash(hash) => {
            let found: Option<(i64, i32)> = conn
                .query_row(
                    &format!("SELECT {id_col}, associate_id FROM {table} WHERE secret_hash = ? AND revoked IS NULL"),
                    [hash],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(backend)?;
            match found {
                Some((id, a)) => (format!("{id_col} = {id}"), vec![a]),
                None => return Ok(0),
            }
        }
        RevokeTarget::AllOf(a) => (format!("associate_id = {a}"), vec![*a]),
    };
    let n = conn
        .execute(&format!("UPDATE {table} SET revoked = ? WHERE {filter} AND revoked IS NULL"), [micros(now)])
        .map_err(backend)?;
    if n > 0 {
        for a in owners {
            log_change(conn, a, now)?;
        }
    }
    Ok(n as u64)
}

pub fn revoke_credentials(
    conn: &Connection,
    kind: CredentialKind,
    target: RevokeTarget,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    revoke(conn, kind, &target, now)
}

pub fn credential_changes(conn: &Connection, after: i64) -> rusqlite::Result<(i64, Vec<i32>)> {
    let mut stmt = conn.prepare_cached(
        "SELECT credential_change_id, associate_id FROM credential_change WHERE credential_change_id > ? \
         ORDER BY credential_change_id",
    )?;
    let mut latest = after;
    let mut who = Vec::new();
    for row in stmt.query_map([after], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i32>(1)?)))? {
        let (id, a) = row?;
        latest = latest.max(id);
        if !who.contains(&a) {
            who.push(a);
        }
    }
    Ok((latest, who))
}

pub fn purge_credentials(conn: &Connection, before: DateTime<Utc>) -> Result<u64, StoreError> {
    let t = micros(before);
    let mut n = 0;
    for kind in [CredentialKind::Ticket, CredentialKind::Token, CredentialKind::Session] {
        let (table, _) = kind.table();
        n += conn.execute(&format!("DELETE FROM {table} WHERE revoked < ? OR expires < ?"), [t, t]).map_err(backend)?
            as u64;
    }
    conn.execute("DELETE FROM credential_change WHERE registered < ?", [t]).map_err(backend)?;
    Ok(n)
}
