//! Identity and access rules that need no I/O: API-token scopes, the role a credential acts
//! with, which requests only read, and the duration syntax of the CLI and the config.

use std::time::Duration;

use super::associate::Role;

/// What an API token may do. A token never does more than its associate's role allows.
///
/// | scope    | methods                                  | acts as                          |
/// |----------|------------------------------------------|----------------------------------|
/// | `read`   | GET/HEAD and the read-only agent methods | the associate's role, read-only  |
/// | `write`  | every task operation                     | `user` (own tasks only)          |
/// | `worker` | + claim/heartbeat/finish any task        | at most `worker`                 |
/// | `admin`  | everything, including /Associate, /Token | at most `admin`                  |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Read,
    Write,
    Worker,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Write, Scope::Worker, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Worker => "worker",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// The least role an associate needs to hold a token of this scope.
    pub fn required_role(self) -> Role {
        match self {
            Scope::Read | Scope::Write => Role::User,
            Scope::Worker => Role::Worker,
            Scope::Admin => Role::Admin,
        }
    }

    /// The role a request made with this token acts with, for an associate whose role is `role`
    /// now (a role lowered after the token was made lowers the token too).
    pub fn effective_role(self, role: Role) -> Role {
        match self {
            Scope::Read => role,
            Scope::Write => Role::User,
            Scope::Worker => role.min(Role::Worker),
            Scope::Admin => role,
        }
    }

    /// Read tokens change nothing.
    pub fn read_only(self) -> bool {
        self == Scope::Read
    }

    /// Token endpoints need a password-grade credential or an admin token: a narrow token must
    /// not mint itself wider or longer-lived siblings.
    pub fn may_manage_credentials(self) -> bool {
        self == Scope::Admin
    }
}

/// Does this request only read? GET and HEAD (and OPTIONS) do, and so do the agent methods whose
/// names start with `Get` (`POST /api/v1/Agents/Batch/GetBatchTaskInfo`). `path` is the
/// normalised path (prefix removed, fixed segments canonical).
pub fn is_read_request(method: &str, path: &str) -> bool {
    if matches!(method, "GET" | "HEAD" | "OPTIONS") {
        return true;
    }
    if method != "POST" {
        return false;
    }
    match path.strip_prefix("/api/v1/Agents/Batch/") {
        Some(name) => !name.contains('/') && name.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("get")),
        None => false,
    }
}

/// Methods that change state: cookie-authenticated requests must prove them with `X-XSRF-TOKEN`.
pub fn is_safe_method(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
}

/// A credential lifetime (`30d`, `8h`, `2w`, plain seconds: the grammar of
/// [`super::duration`]); at least one second, since a lifetime of zero is a typo.
pub fn parse_duration(text: &str) -> Option<Duration> {
    super::duration::parse_duration(text).ok().filter(|d| *d >= Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("8h"), Some(Duration::from_secs(8 * 3600)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration(" 2 w "), Some(Duration::from_secs(2 * 604_800)));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("5y"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("99999999999999999d"), None);
    }

    #[test]
    fn scopes_never_widen_a_role() {
        for scope in Scope::ALL {
            for role in [Role::User, Role::Worker, Role::Admin] {
                assert!(scope.effective_role(role) <= role, "{scope:?} {role:?}");
            }
        }
        assert_eq!(Scope::Write.effective_role(Role::Admin), Role::User);
        assert_eq!(Scope::Worker.effective_role(Role::Admin), Role::Worker);
        assert_eq!(Scope::Worker.effective_role(Role::User), Role::User);
    }

    #[test]
    fn read_requests() {
        assert!(is_read_request("GET", "/api/v1/BatchTask/7"));
        assert!(is_read_request("POST", "/api/v1/Agents/Batch/GetBatchTaskInfo"));
        assert!(is_read_request("POST", "/api/v1/Agents/Batch/getallbatchtaskinfosbyname"));
        assert!(!is_read_request("POST", "/api/v1/Agents/Batch/StartBatchJob"));
        assert!(!is_read_request("POST", "/api/v1/BatchTask"));
        assert!(!is_read_request("PUT", "/api/v1/BatchTask/7"));
        assert!(!is_read_request("DELETE", "/api/v1/BatchTask/7"));
        assert!(!is_read_request("POST", "/api/v1/Agents/Batch/Get/x"));
    }
}
