//! Associates (users) and the caller of a request.

/// Ordered: `User < Worker < Admin`, so a scope can cap a role with `min`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Sees and acts on its own tasks only.
    User,
    /// Claims, heartbeats and finishes any task, system tasks included.
    Worker,
    /// Everything.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::User, Role::Worker, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Worker => "worker",
            Role::Admin => "admin",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s.trim().to_ascii_lowercase().as_str() {
            "user" => Some(Role::User),
            "worker" => Some(Role::Worker),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Associate {
    pub id: i32,
    pub name: String,
    pub role: Role,
    pub active: bool,
}

/// Who is asking. Built by the auth layer, consulted by the rights rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub associate_id: i32,
    pub name: String,
    /// The role this request acts with: the associate's role, capped by a token's scope.
    pub role: Role,
    /// A `read`-scope token: sees what its role sees, changes nothing.
    pub read_only: bool,
}

impl Caller {
    /// A caller with the associate's full role (password, ticket or session credentials).
    pub fn new(associate_id: i32, name: impl Into<String>, role: Role) -> Caller {
        Caller { associate_id, name: name.into(), role, read_only: false }
    }
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
    /// Workers and admins see every task; users see their own.
    pub fn sees_all(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Worker)
    }
}

/// Associate names: 1 to 100 characters, no control characters, no `:` (it would break Basic auth).
pub fn valid_associate_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=100).contains(&n) && !name.chars().any(|c| c.is_control() || c == ':') && name.trim() == name
}
