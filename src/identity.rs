//! Identity and access without HTTP: password hashing, secrets, and the credential rules (who may
//! create and end which tickets, tokens and sessions, how associates change, which scope a token
//! may have, when credentials expire). The REST handlers (`src/http/routes/identity.rs`) and the
//! CLI (`src/main.rs`) both go through [`IdentityService`], so they apply the same rules; the
//! authenticator (`src/http/auth.rs`) verifies with the hashing here.

use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use chrono::Utc;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::config::AccessConfig;
use crate::domain::access::Scope;
use crate::domain::associate::valid_associate_name;
use crate::domain::{Associate, Caller, DomainError, Field, Role};
use crate::store::access::{AssociateChange, CredentialKind, CredentialRow, NewCredential, RevokeTarget};
use crate::store::{NewAssociate, Store, StoreError};

type Result<T> = std::result::Result<T, IdentityError>;

// ---------------------------------------------------------------------------------------------
// Hashing and secrets

/// Hashes a password with argon2id (the crate's default parameters).
pub fn hash_password(password: &str) -> std::result::Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt)?.to_string())
}

/// Runs argon2 work (a hash or a check takes 19 MiB) on a thread of its own that ends with it:
/// the allocator gives a thread's freed memory back to the OS when the thread ends, while a
/// pooled blocking thread would hold the 19 MiB until it idles out, seconds later. A thread
/// costs microseconds; argon2 tens of milliseconds. `None` if no thread could be started.
pub async fn off_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("batchd-argon2".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .ok()?;
    rx.await.ok()
}

/// Does `password` match the stored argon2 `hash`? A hash that cannot be read matches nothing.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// Hex SHA-256: how tickets, tokens and sessions are stored and looked up.
pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// 256 bits from the OS generator.
pub fn random_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// A new SOTicket: `7T:` and 256 random bits in base64, the shape SuperOffice tickets have.
pub fn new_ticket_secret() -> String {
    format!("7T:{}", base64::engine::general_purpose::STANDARD.encode(random_bytes()))
}

/// A new API token; the prefix lets secret scanners recognise a leaked one.
pub fn new_token_secret() -> String {
    format!("batchd_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes()))
}

pub fn new_session_secret() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes())
}

// ---------------------------------------------------------------------------------------------
// Who asks

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq)]
pub enum Via {
    Basic,
    /// `secret_hash`: hex SHA-256 of the ticket, so logout can revoke exactly this one.
    Ticket {
        secret_hash: String,
    },
    Token {
        id: i64,
        scope: Scope,
    },
    Session {
        secret_hash: String,
    },
}

impl Via {
    /// May this credential create or revoke tickets and tokens?
    pub fn may_manage_credentials(&self) -> bool {
        match self {
            Via::Token { scope, .. } => scope.may_manage_credentials(),
            _ => true,
        }
    }
}

/// The caller of a request and how it proved it.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub caller: Caller,
    pub via: Via,
}

/// Who asks for a change: a request's caller, held to every rule below, or the operator at the
/// command line, who has the database in hand anyway (so no rule about callers applies).
#[derive(Debug, Clone, Copy)]
pub enum Principal<'a> {
    Operator,
    Request(&'a Authenticated),
}

// ---------------------------------------------------------------------------------------------
// Rules

/// Longest password accepted: argon2 reads all of it, so the bound keeps a login cheap to refuse.
pub const MAX_PASSWORD_CHARS: usize = 1024;
/// Longest token label (`Name`).
pub const MAX_TOKEN_LABEL_CHARS: usize = 254;

/// Associate names: see [`valid_associate_name`].
pub fn check_name(name: &str) -> Result<()> {
    if valid_associate_name(name) { Ok(()) } else { Err(IdentityError::NameInvalid { name: name.to_owned() }) }
}

pub fn check_password(password: &str) -> Result<()> {
    let field = Field::Param("Password");
    if password.is_empty() {
        return Err(DomainError::Required { field }.into());
    }
    let actual = password.chars().count();
    if actual > MAX_PASSWORD_CHARS {
        return Err(DomainError::TooLong { field, max: MAX_PASSWORD_CHARS, actual }.into());
    }
    Ok(())
}

pub fn check_label(label: &str) -> Result<()> {
    Ok(crate::domain::task::check_length(Field::Param("Name"), label, MAX_TOKEN_LABEL_CHARS)?)
}

/// May `who` create, list or revoke tokens (a token may have a scope too narrow for that)?
pub fn may_manage_credentials(who: Principal<'_>) -> Result<()> {
    match who {
        Principal::Request(auth) if !auth.via.may_manage_credentials() => Err(IdentityError::CredentialsTooNarrow),
        _ => Ok(()),
    }
}

/// May `who` list, add, change and remove associates? Admins only.
pub fn may_manage_associates(who: Principal<'_>) -> Result<()> {
    admin_only(who, "manage associates")
}

/// Does `who` see (and revoke) every associate's tokens, or only its own?
pub fn sees_all_tokens(who: Principal<'_>) -> bool {
    admin_or_operator(who)
}

fn admin_or_operator(who: Principal<'_>) -> bool {
    match who {
        Principal::Operator => true,
        Principal::Request(auth) => auth.caller.is_admin(),
    }
}

fn admin_only(who: Principal<'_>, action: &'static str) -> Result<()> {
    if admin_or_operator(who) { Ok(()) } else { Err(IdentityError::AdminOnly { action }) }
}

/// A refusal of the identity service. Its text is what the CLI prints; HTTP maps it in
/// `src/http/error.rs`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IdentityError {
    #[error("this credential may not manage credentials")]
    CredentialsTooNarrow,
    #[error("only admins may {action}")]
    AdminOnly { action: &'static str },
    #[error("no associate has id {id}")]
    AssociateNotFound { id: i32 },
    #[error("no associate is named {name:?}")]
    NoSuchName { name: String },
    /// The caller's own associate is gone (removed since it authenticated).
    #[error("the calling associate no longer exists")]
    CallerGone,
    #[error("{name:?} is not a valid associate name (1-100 characters, no ':')")]
    NameInvalid { name: String },
    #[error("an associate named {name:?} already exists")]
    NameTaken { name: String },
    #[error("refused: that would leave no active admin; make another admin first")]
    LastAdmin,
    #[error("scope {} needs the {} role, and {name} has the {} role", scope.as_str(), scope.required_role().as_str(), role.as_str())]
    ScopeTooWide { scope: Scope, name: String, role: Role },
    /// `id` as given (text that is not a number names no token either).
    #[error("no live token has id {id}")]
    TokenNotFound { id: String },
    #[error("hashing the password failed: {0}")]
    Hashing(String),
    #[error(transparent)]
    Rejected(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A credential just made, with its secret (shown this once; the store keeps only its hash).
#[derive(Debug, Clone)]
pub struct FreshCredential {
    pub secret: String,
    pub row: CredentialRow,
}

/// A new API token.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub scope: Scope,
    /// `None` = never expires.
    pub lifetime: Option<Duration>,
    pub label: Option<String>,
    /// Whose (any letter case); `None` = the caller's own. Only admins name others.
    pub associate: Option<String>,
}

/// A new associate.
#[derive(Debug, Clone)]
pub struct AssociateRequest {
    pub name: String,
    pub password: String,
    pub role: Role,
    /// `Some(false)` = created disabled.
    pub active: Option<bool>,
}

/// An associate change; `None` keeps the value. A new password ends the associate's tickets and
/// sessions (not its tokens).
#[derive(Debug, Clone, Default)]
pub struct AssociateEdit {
    pub name: Option<String>,
    pub password: Option<String>,
    pub role: Option<Role>,
    pub active: Option<bool>,
}

/// Told at once when a change ends or narrows associates' credentials, so that what this process
/// cached for them goes (other processes read the store's change log).
pub trait ChangeListener: Send + Sync {
    fn associates_changed(&self, ids: &[i32]);
}

#[derive(Clone)]
pub struct IdentityService {
    store: Arc<dyn Store>,
    ticket_lifetime: Duration,
    session_lifetime: Duration,
    listener: Option<Arc<dyn ChangeListener>>,
}

impl IdentityService {
    pub fn new(store: Arc<dyn Store>, access: &AccessConfig) -> IdentityService {
        IdentityService {
            store,
            ticket_lifetime: access.ticket_lifetime,
            session_lifetime: access.session_lifetime,
            listener: None,
        }
    }

    /// Changes are told to `listener` (the authenticator's cache).
    pub fn notifying(mut self, listener: Arc<dyn ChangeListener>) -> IdentityService {
        self.listener = Some(listener);
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn changed(&self, ids: &[i32]) {
        if let Some(l) = &self.listener {
            l.associates_changed(ids);
        }
    }

    // -- tickets and sessions --

    /// A ticket for an associate that has just proved its password; it lives `ticket_lifetime`.
    pub async fn issue_ticket(&self, associate_id: i32) -> Result<FreshCredential> {
        self.issue(CredentialKind::Ticket, associate_id, Some(self.ticket_lifetime), None, None).await
    }

    /// A browser session for an associate that has just proved its password.
    pub async fn issue_session(&self, associate_id: i32) -> Result<FreshCredential> {
        self.issue(CredentialKind::Session, associate_id, Some(self.session_lifetime), None, None).await
    }

    async fn issue(
        &self,
        kind: CredentialKind,
        associate_id: i32,
        lifetime: Option<Duration>,
        scope: Option<Scope>,
        label: Option<String>,
    ) -> Result<FreshCredential> {
        let secret = match kind {
            CredentialKind::Ticket => new_ticket_secret(),
            CredentialKind::Token => new_token_secret(),
            CredentialKind::Session => new_session_secret(),
        };
        let now = Utc::now();
        let expires = lifetime.and_then(|l| chrono::Duration::from_std(l).ok()).map(|l| now + l);
        let new = NewCredential { kind, associate_id, secret_hash: hash_secret(&secret), expires, scope, name: label };
        let row = self.store.create_credential(new, now).await?;
        Ok(FreshCredential { secret, row })
    }

    /// Logout: ends the ticket or session of `kind` the request came with, or, when it came with
    /// another credential that may manage credentials, every one of that kind the caller has.
    pub async fn logout(&self, who: &Authenticated, kind: CredentialKind) -> Result<()> {
        let used = match (&who.via, kind) {
            (Via::Ticket { secret_hash }, CredentialKind::Ticket)
            | (Via::Session { secret_hash }, CredentialKind::Session) => Some(secret_hash.clone()),
            _ => None,
        };
        let target = match used {
            Some(hash) => RevokeTarget::Hash(hash),
            None => {
                may_manage_credentials(Principal::Request(who))?;
                RevokeTarget::AllOf(who.caller.associate_id)
            }
        };
        self.store.revoke_credentials(kind, target, Utc::now()).await?;
        self.changed(&[who.caller.associate_id]);
        Ok(())
    }

    // -- API tokens --

    /// Tokens, newest first: an admin's (or the operator's) of `associate`, or everyone's when
    /// `None`; anyone else's own, whatever `associate` says.
    pub async fn list_tokens(&self, who: Principal<'_>, associate: Option<i32>) -> Result<Vec<CredentialRow>> {
        may_manage_credentials(who)?;
        let owner = match who {
            Principal::Request(auth) if !sees_all_tokens(who) => Some(auth.caller.associate_id),
            _ => associate,
        };
        Ok(self.store.list_credentials(CredentialKind::Token, owner).await?)
    }

    /// A new token. Its scope may not need a higher role than its associate has (a token never
    /// does more than its associate could); only admins make tokens for others.
    pub async fn create_token(&self, who: Principal<'_>, req: TokenRequest) -> Result<FreshCredential> {
        may_manage_credentials(who)?;
        if let Some(l) = &req.label {
            check_label(l)?;
        }
        let target = match (who, &req.associate) {
            (Principal::Request(auth), Some(name)) if name.eq_ignore_ascii_case(&auth.caller.name) => {
                self.stored_self(auth).await?
            }
            (Principal::Request(auth), None) => self.stored_self(auth).await?,
            (_, Some(name)) => {
                admin_only(who, "create tokens for other associates")?;
                self.associate_named(name).await?
            }
            (Principal::Operator, None) => {
                return Err(DomainError::Required { field: Field::Param("Associate") }.into());
            }
        };
        if req.scope.required_role() > target.role {
            return Err(IdentityError::ScopeTooWide { scope: req.scope, name: target.name, role: target.role });
        }
        self.issue(CredentialKind::Token, target.id, req.lifetime, Some(req.scope), req.label).await
    }

    /// The caller's associate as stored now, not as the request sees it (a token's scope may
    /// have narrowed its role).
    async fn stored_self(&self, auth: &Authenticated) -> Result<Associate> {
        self.store.get_associate(auth.caller.associate_id).await?.ok_or(IdentityError::CallerGone)
    }

    /// Revokes a token: one of the caller's, or anyone's for an admin (or the operator).
    pub async fn revoke_token(&self, who: Principal<'_>, id: &str) -> Result<()> {
        may_manage_credentials(who)?;
        let not_found = || IdentityError::TokenNotFound { id: id.to_owned() };
        let n: i64 = id.trim().parse().map_err(|_| not_found())?;
        let owner = match who {
            Principal::Request(auth) if !sees_all_tokens(who) => Some(auth.caller.associate_id),
            _ => None,
        };
        // Whose it was, for the listener: found before revoking (revoked rows are skipped).
        let whose = self.store.list_credentials(CredentialKind::Token, owner).await?.into_iter().find(|r| r.id == n);
        let revoked =
            self.store.revoke_credentials(CredentialKind::Token, RevokeTarget::Id { id: n, owner }, Utc::now()).await?;
        match (revoked, whose) {
            (0, _) | (_, None) => Err(not_found()),
            (_, Some(row)) => {
                self.changed(&[row.associate_id]);
                Ok(())
            }
        }
    }

    // -- associates --

    /// The associate with this name, in any letter case.
    pub async fn associate_named(&self, name: &str) -> Result<Associate> {
        let found = self.store.associate_credentials(name).await?.map(|c| c.associate);
        found.ok_or_else(|| IdentityError::NoSuchName { name: name.to_owned() })
    }

    pub async fn list_associates(&self, who: Principal<'_>) -> Result<Vec<Associate>> {
        may_manage_associates(who)?;
        Ok(self.store.list_associates().await?)
    }

    pub async fn get_associate(&self, who: Principal<'_>, id: i32) -> Result<Associate> {
        may_manage_associates(who)?;
        self.store.get_associate(id).await?.ok_or(IdentityError::AssociateNotFound { id })
    }

    pub async fn create_associate(&self, who: Principal<'_>, req: AssociateRequest) -> Result<Associate> {
        may_manage_associates(who)?;
        check_name(&req.name)?;
        check_password(&req.password)?;
        let new = NewAssociate { name: req.name.clone(), password_hash: hash(req.password).await?, role: req.role };
        let a = self.store.create_associate(new, Utc::now()).await.map_err(|e| associate_error(e, 0, &req.name))?;
        if req.active != Some(false) {
            return Ok(a);
        }
        // Nothing is cached for an associate this new: no one to tell.
        let disable = AssociateChange { active: Some(false), ..Default::default() };
        self.store.update_associate(a.id, disable, Utc::now()).await.map_err(|e| associate_error(e, a.id, &req.name))
    }

    pub async fn update_associate(&self, who: Principal<'_>, id: i32, edit: AssociateEdit) -> Result<Associate> {
        may_manage_associates(who)?;
        if let Some(n) = &edit.name {
            check_name(n)?;
        }
        let password_hash = match edit.password {
            Some(p) => {
                check_password(&p)?;
                Some(hash(p).await?)
            }
            None => None,
        };
        let change = AssociateChange { name: edit.name.clone(), password_hash, role: edit.role, active: edit.active };
        let a = self
            .store
            .update_associate(id, change, Utc::now())
            .await
            .map_err(|e| associate_error(e, id, edit.name.as_deref().unwrap_or("")))?;
        self.changed(&[id]);
        Ok(a)
    }

    /// Removes the associate with its tickets, tokens and sessions; its tasks stay.
    pub async fn delete_associate(&self, who: Principal<'_>, id: i32) -> Result<()> {
        may_manage_associates(who)?;
        self.store.delete_associate(id, Utc::now()).await.map_err(|e| associate_error(e, id, ""))?;
        self.changed(&[id]);
        Ok(())
    }
}

/// argon2 off the async threads: it takes a core for tens of milliseconds.
async fn hash(password: String) -> Result<String> {
    match off_thread(move || hash_password(&password)).await {
        Some(Ok(h)) => Ok(h),
        Some(Err(e)) => Err(IdentityError::Hashing(e.to_string())),
        None => Err(IdentityError::Hashing("no thread for hashing".into())),
    }
}

/// A store refusal of an associate change, in the service's terms.
fn associate_error(e: StoreError, id: i32, name: &str) -> IdentityError {
    match e {
        StoreError::NotFound => IdentityError::AssociateNotFound { id },
        StoreError::DuplicateName => IdentityError::NameTaken { name: name.to_owned() },
        StoreError::LastAdmin => IdentityError::LastAdmin,
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn secrets_are_random_and_hashes_hex() {
        let a = new_ticket_secret();
        assert!(a.starts_with("7T:") && a.len() == 47, "{a}");
        assert_ne!(a, new_ticket_secret());
        assert!(new_token_secret().starts_with("batchd_"));
        assert_ne!(new_session_secret(), new_session_secret());
        let h = hash_secret("x");
        assert_eq!(h.len(), 64);
        assert!(h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }

    #[test]
    fn passwords_verify_against_their_hash_only() {
        let h = hash_password("right").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("right", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("right", "not a hash"));
        assert_ne!(hash_password("right").unwrap(), h, "salted");
    }

    #[test]
    fn input_rules() {
        assert!(check_name("kim").is_ok());
        assert!(matches!(check_name("a:b"), Err(IdentityError::NameInvalid { .. })));
        assert!(matches!(check_password(""), Err(IdentityError::Rejected(DomainError::Required { .. }))));
        assert!(check_password(&"p".repeat(MAX_PASSWORD_CHARS)).is_ok());
        let long = check_password(&"p".repeat(MAX_PASSWORD_CHARS + 1));
        assert!(matches!(long, Err(IdentityError::Rejected(DomainError::TooLong { max: 1024, .. }))), "{long:?}");
        assert!(check_label(&"n".repeat(MAX_TOKEN_LABEL_CHARS)).is_ok());
        assert!(check_label(&"n".repeat(MAX_TOKEN_LABEL_CHARS + 1)).is_err());
    }

    #[derive(Default)]
    struct Heard(Mutex<Vec<i32>>);

    impl ChangeListener for Heard {
        fn associates_changed(&self, ids: &[i32]) {
            self.0.lock().unwrap().extend_from_slice(ids);
        }
    }

    impl Heard {
        fn take(&self) -> Vec<i32> {
            std::mem::take(&mut self.0.lock().unwrap())
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        ids: IdentityService,
        heard: Arc<Heard>,
        admin: Authenticated,
        user: Authenticated,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.db");
        let store: Arc<dyn Store> = Arc::new(crate::store::sqlite::SqliteStore::open(path.to_str().unwrap()).unwrap());
        let heard = Arc::new(Heard::default());
        let ids = IdentityService::new(store, &AccessConfig::default()).notifying(heard.clone());
        let mut made = Vec::new();
        for (name, role) in [("root", Role::Admin), ("uma", Role::User)] {
            let req = AssociateRequest { name: name.into(), password: format!("{name}-pw"), role, active: None };
            let a = ids.create_associate(Principal::Operator, req).await.unwrap();
            made.push(Authenticated { caller: Caller::new(a.id, a.name, a.role), via: Via::Basic });
        }
        let user = made.pop().unwrap();
        let admin = made.pop().unwrap();
        assert_eq!(heard.take(), Vec::<i32>::new(), "creating tells no one");
        Fixture { _dir: dir, ids, heard, admin, user }
    }

    fn token(scope: Scope, associate: Option<&str>) -> TokenRequest {
        TokenRequest { scope, lifetime: None, label: None, associate: associate.map(Into::into) }
    }

    #[tokio::test]
    async fn who_may_make_and_end_which_tokens() {
        let f = fixture().await;
        let (admin, user) = (Principal::Request(&f.admin), Principal::Request(&f.user));
        let read = Authenticated { via: Via::Token { id: 1, scope: Scope::Read }, ..f.user.clone() };
        let narrow = f.ids.create_token(Principal::Request(&read), token(Scope::Read, None)).await;
        assert!(matches!(narrow, Err(IdentityError::CredentialsTooNarrow)), "{narrow:?}");

        // Own tokens, in any letter case of the own name; the stored role bounds the scope.
        let own = f.ids.create_token(user, token(Scope::Write, Some("UMA"))).await.unwrap();
        assert_eq!((own.row.associate_id, own.row.scope), (f.user.caller.associate_id, Some(Scope::Write)));
        assert!(own.secret.starts_with("batchd_") && hash_secret(&own.secret) != own.secret);
        let wide = f.ids.create_token(user, token(Scope::Worker, None)).await;
        assert!(matches!(&wide, Err(IdentityError::ScopeTooWide { scope: Scope::Worker, role: Role::User, .. })));
        assert_eq!(wide.unwrap_err().to_string(), "scope worker needs the worker role, and uma has the user role");
        let narrowed = Authenticated {
            caller: Caller { role: Role::User, ..f.admin.caller.clone() },
            via: Via::Token { id: 2, scope: Scope::Admin },
        };
        let by_stored_role = f.ids.create_token(Principal::Request(&narrowed), token(Scope::Admin, None)).await;
        assert!(by_stored_role.is_ok(), "{by_stored_role:?}");

        // Others' tokens: admins (and the operator) only.
        let other = f.ids.create_token(user, token(Scope::Read, Some("root"))).await;
        assert!(matches!(other, Err(IdentityError::AdminOnly { .. })), "{other:?}");
        let for_uma = f.ids.create_token(admin, token(Scope::Read, Some("uma"))).await.unwrap();
        let nobody = f.ids.create_token(admin, token(Scope::Read, Some("nobody"))).await;
        assert!(matches!(nobody, Err(IdentityError::NoSuchName { .. })), "{nobody:?}");
        let unnamed = f.ids.create_token(Principal::Operator, token(Scope::Read, None)).await;
        assert!(matches!(unnamed, Err(IdentityError::Rejected(DomainError::Required { .. }))), "{unnamed:?}");
        let mut long = token(Scope::Read, None);
        long.label = Some("n".repeat(MAX_TOKEN_LABEL_CHARS + 1));
        assert!(matches!(f.ids.create_token(user, long).await, Err(IdentityError::Rejected(_))));

        // A user lists its own, whatever it asks for; an admin everyone's or one associate's.
        let root_id = f.admin.caller.associate_id;
        let mine = f.ids.list_tokens(user, Some(root_id)).await.unwrap();
        assert_eq!(mine.iter().map(|r| r.id).collect::<Vec<_>>(), vec![for_uma.row.id, own.row.id]);
        assert_eq!(f.ids.list_tokens(admin, None).await.unwrap().len(), 3);
        assert_eq!(f.ids.list_tokens(admin, Some(root_id)).await.unwrap().len(), 1);

        // Revoking: a user's own only; others' and non-numbers are "not found".
        let roots = f.ids.list_tokens(admin, Some(root_id)).await.unwrap()[0].id.to_string();
        let refused = f.ids.revoke_token(user, &roots).await;
        assert!(matches!(&refused, Err(IdentityError::TokenNotFound { id }) if *id == roots), "{refused:?}");
        let junk = f.ids.revoke_token(user, "x1").await;
        assert!(matches!(&junk, Err(IdentityError::TokenNotFound { id }) if id == "x1"), "{junk:?}");
        assert_eq!(f.heard.take(), Vec::<i32>::new());
        f.ids.revoke_token(user, &own.row.id.to_string()).await.unwrap();
        assert_eq!(f.heard.take(), vec![f.user.caller.associate_id]);
        let again = f.ids.revoke_token(user, &own.row.id.to_string()).await;
        assert!(matches!(again, Err(IdentityError::TokenNotFound { .. })), "{again:?}");
        f.ids.revoke_token(Principal::Operator, &roots).await.unwrap();
        assert_eq!(f.heard.take(), vec![root_id]);
    }

    #[tokio::test]
    async fn logout_ends_the_credential_used_or_every_one_of_its_kind() {
        let f = fixture().await;
        let uma = f.user.caller.associate_id;
        let first = f.ids.issue_ticket(uma).await.unwrap();
        let second = f.ids.issue_ticket(uma).await.unwrap();
        let lifetime = AccessConfig::default().ticket_lifetime.as_secs() as i64;
        let expires = first.row.expires.unwrap() - first.row.created;
        assert_eq!(expires.num_seconds(), lifetime, "tickets live ticket_lifetime");
        let live = |ids: &IdentityService, secret: String| {
            let store = ids.store().clone();
            async move {
                let m = store.find_credential(CredentialKind::Ticket, &hash_secret(&secret)).await.unwrap().unwrap();
                m.row.revoked.is_none()
            }
        };
        let with_first =
            Authenticated { via: Via::Ticket { secret_hash: hash_secret(&first.secret) }, ..f.user.clone() };
        f.ids.logout(&with_first, CredentialKind::Ticket).await.unwrap();
        assert_eq!(f.heard.take(), vec![uma]);
        assert!(!live(&f.ids, first.secret.clone()).await);
        assert!(live(&f.ids, second.secret.clone()).await, "only the ticket used");
        let read = Authenticated { via: Via::Token { id: 1, scope: Scope::Read }, ..f.user.clone() };
        let refused = f.ids.logout(&read, CredentialKind::Ticket).await;
        assert!(matches!(refused, Err(IdentityError::CredentialsTooNarrow)), "{refused:?}");
        assert!(live(&f.ids, second.secret.clone()).await);
        f.ids.logout(&f.user, CredentialKind::Ticket).await.unwrap();
        assert!(!live(&f.ids, second.secret).await, "a password ends every ticket");
    }

    #[tokio::test]
    async fn associate_changes_follow_the_rules_and_are_told() {
        let f = fixture().await;
        let (admin, user) = (Principal::Request(&f.admin), Principal::Request(&f.user));
        let root = f.admin.caller.associate_id;
        let refused = f.ids.list_associates(user).await;
        assert!(matches!(refused, Err(IdentityError::AdminOnly { action: "manage associates" })), "{refused:?}");
        assert_eq!(f.ids.list_associates(admin).await.unwrap().len(), 2);

        let req = |name: &str, active| AssociateRequest {
            name: name.into(),
            password: "pw".into(),
            role: Role::Worker,
            active,
        };
        let taken = f.ids.create_associate(admin, req("UMA", None)).await;
        assert!(matches!(&taken, Err(IdentityError::NameTaken { name }) if name == "UMA"), "{taken:?}");
        assert!(matches!(
            f.ids.create_associate(admin, req("a:b", None)).await,
            Err(IdentityError::NameInvalid { .. })
        ));
        let off = f.ids.create_associate(admin, req("wes", Some(false))).await.unwrap();
        assert_eq!((off.role, off.active), (Role::Worker, false));
        assert_eq!(f.ids.get_associate(admin, off.id).await.unwrap(), off);
        let missing = f.ids.get_associate(admin, off.id + 100).await;
        assert!(matches!(missing, Err(IdentityError::AssociateNotFound { .. })), "{missing:?}");

        let last = f.ids.update_associate(admin, root, AssociateEdit { role: Some(Role::User), ..Default::default() });
        assert!(matches!(last.await, Err(IdentityError::LastAdmin)));
        assert!(matches!(f.ids.delete_associate(Principal::Operator, root).await, Err(IdentityError::LastAdmin)));
        let rename = AssociateEdit { name: Some("ROOT".into()), ..Default::default() };
        let dup = f.ids.update_associate(admin, off.id, rename).await;
        assert!(matches!(&dup, Err(IdentityError::NameTaken { name }) if name == "ROOT"), "{dup:?}");
        assert_eq!(f.heard.take(), Vec::<i32>::new(), "refusals tell no one");

        let uma = f.user.caller.associate_id;
        let ticket = f.ids.issue_ticket(uma).await.unwrap();
        let edit = AssociateEdit { password: Some("new-pw".into()), ..Default::default() };
        f.ids.update_associate(admin, uma, edit).await.unwrap();
        assert_eq!(f.heard.take(), vec![uma]);
        let stored = f.ids.store().associate_credentials("uma").await.unwrap().unwrap();
        assert!(verify_password("new-pw", &stored.password_hash));
        let m = f.ids.store().find_credential(CredentialKind::Ticket, &hash_secret(&ticket.secret)).await.unwrap();
        assert!(m.unwrap().row.revoked.is_some(), "a new password ends the tickets");
        f.ids.delete_associate(admin, off.id).await.unwrap();
        assert_eq!(f.heard.take(), vec![off.id]);
        assert!(matches!(f.ids.delete_associate(admin, off.id).await, Err(IdentityError::AssociateNotFound { .. })));
    }
}
