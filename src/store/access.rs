//! Store types for identity and access: tickets, API tokens, browser sessions and
//! associate changes. Secrets never reach the store: only the hex SHA-256 of each.

use chrono::{DateTime, Utc};

use crate::domain::access::Scope;
use crate::domain::{Associate, Role};

/// Which table a stored credential lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    /// `SOTicket 7T:...` (table `ticket`).
    Ticket,
    /// `Bearer ...` API tokens (table `api_token`).
    Token,
    /// Browser sessions (table `browser_session`).
    Session,
}

impl CredentialKind {
    /// Table and id column; fixed strings, never input.
    pub fn table(self) -> (&'static str, &'static str) {
        match self {
            CredentialKind::Ticket => ("ticket", "ticket_id"),
            CredentialKind::Token => ("api_token", "api_token_id"),
            CredentialKind::Session => ("browser_session", "browser_session_id"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewCredential {
    pub kind: CredentialKind,
    pub associate_id: i32,
    /// Hex SHA-256 of the secret.
    pub secret_hash: String,
    /// Required for tickets and sessions; `None` = a token that never expires.
    pub expires: Option<DateTime<Utc>>,
    /// Tokens only.
    pub scope: Option<Scope>,
    /// Tokens only: a label to tell them apart.
    pub name: Option<String>,
}

/// A stored credential, without its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialRow {
    pub kind: CredentialKind,
    pub id: i64,
    pub associate_id: i32,
    pub associate_name: String,
    pub scope: Option<Scope>,
    pub name: Option<String>,
    pub created: DateTime<Utc>,
    pub expires: Option<DateTime<Utc>>,
    pub revoked: Option<DateTime<Utc>>,
}

impl CredentialRow {
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked.is_none() && self.expires.is_none_or(|e| e > now)
    }
}

/// A credential found by its hash, with its associate as stored now.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialMatch {
    pub row: CredentialRow,
    pub associate: Associate,
}

/// What to revoke.
#[derive(Debug, Clone, PartialEq)]
pub enum RevokeTarget {
    /// One credential by id; `owner` restricts it to that associate's (others count as absent).
    Id { id: i64, owner: Option<i32> },
    /// The one whose secret hashes to this.
    Hash(String),
    /// Every live one of an associate.
    AllOf(i32),
}

/// An associate change; `None` keeps the value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssociateChange {
    pub name: Option<String>,
    pub password_hash: Option<String>,
    pub role: Option<Role>,
    pub active: Option<bool>,
}
