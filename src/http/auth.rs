//! Who is calling. The [`Authenticated`] extractor (and [`Caller`], which wraps it) reads the
//! `Authorization` header (`Basic`, `SOTicket`, `Bearer`) or, when there is none, the session
//! cookie; the [`Authenticator`] verifies it.
//!
//! Speed: a verified credential is cached under the SHA-256 of what the client sent, so argon2
//! (Basic) or a database lookup (tickets, tokens, sessions) is paid once per credential per cache
//! period, not per request. Tickets, tokens and sessions are looked up by the SHA-256 of the
//! secret; nothing is hashed slowly per request.
//!
//! Freshness: every change that ends or narrows a credential (password, role, active flag,
//! removal, revocation) drops the associate's cache entries at once in this process, and is
//! logged in the store; a watcher polls that log (`[auth] change_poll_millis`, default 1 s), so
//! changes made by the CLI, another process, take effect within one poll interval.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::AccessConfig;
use crate::domain::access::{Scope, is_read_request, is_safe_method};
use crate::domain::{Associate, Caller};
use crate::i18n::{Key, Msg};
use crate::store::Store;
use crate::store::access::{CredentialKind, CredentialRow, NewCredential};

use super::AppState;
use super::error::ApiError;
use super::ratelimit::RateLimiter;

const CACHE_CAPACITY: usize = 10_000;
const LIMITER_KEYS: usize = 10_000;
/// Longest associate name a throttle key keeps (names are at most 100 characters).
const NAME_KEY_MAX: usize = 128;

pub const SESSION_COOKIE: &str = "batchd_session";
pub const XSRF_COOKIE: &str = "XSRF-TOKEN";
pub const XSRF_HEADER: &str = "x-xsrf-token";
pub const APP_TOKEN_HEADER: &str = "so-apptoken";

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

/// An authentication failure: the error, and for 429 how long to wait.
#[derive(Debug, Clone)]
pub struct AuthError {
    pub error: ApiError,
    pub retry_after: Option<u64>,
}

impl From<ApiError> for AuthError {
    fn from(error: ApiError) -> AuthError {
        AuthError { error, retry_after: None }
    }
}

impl From<crate::store::StoreError> for AuthError {
    fn from(e: crate::store::StoreError) -> AuthError {
        ApiError::from(e).into()
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let mut res = self.error.into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

fn unauthorized(key: Key) -> AuthError {
    ApiError::unauthorized(key).into()
}

fn too_many(wait: Duration) -> AuthError {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    AuthError {
        error: ApiError::new(StatusCode::TOO_MANY_REQUESTS, Msg::new(Key::TooManyAttempts).arg("seconds", secs)),
        retry_after: Some(secs),
    }
}

/// Hashes a password with argon2id (the crate's default parameters).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| anyhow::anyhow!("{e}"))?.to_string())
}

fn verify_password(password: &str, hash: &str) -> bool {
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

fn random_bytes() -> [u8; 32] {
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

/// The XSRF token of a session: derived from the session secret, so it needs no storage, and
/// knowing it (it is readable by page scripts) does not reveal the session secret.
pub fn xsrf_token(session_secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"batchd-xsrf\0");
    h.update(session_secret.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize())
}

/// A cookie's value from the `Cookie` header(s).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
        .filter(|v| !v.is_empty())
}

/// Constant-time equality of two strings (their SHA-256, so lengths leak nothing either).
fn ct_eq_str(a: &str, b: &str) -> bool {
    let a = Sha256::digest(a.as_bytes());
    let b = Sha256::digest(b.as_bytes());
    bool::from(a.ct_eq(&b))
}

struct CacheEntry {
    auth: Authenticated,
    until: Instant,
}

pub struct Authenticator {
    store: Arc<dyn Store>,
    ttl: Duration,
    access: AccessConfig,
    /// SHA-256 of what the client sent (Authorization value, or the session cookie) → who it is.
    cache: Mutex<HashMap<[u8; 32], CacheEntry>>,
    /// Credentials being verified right now (see `verify_once`).
    inflight: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>,
    /// Bumped whenever entries are dropped, so a verification that raced a change does not
    /// cache its stale answer.
    generation: AtomicU64,
    /// Newest `credential_change` row seen.
    last_change: AtomicI64,
    /// Verified against when the user is unknown, so both failures cost the same time.
    dummy_hash: String,
    /// Bounds argon2 verifications running at once: each takes ~19 MiB and a core for tens of
    /// milliseconds, so a burst of logins would otherwise cost memory it never gives back.
    hashing: tokio::sync::Semaphore,
    by_address: RateLimiter<IpAddr>,
    by_name: RateLimiter<String>,
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>, ttl: Duration, access: AccessConfig) -> Authenticator {
        let dummy_hash = hash_password("not a real password, only a timing decoy").expect("argon2 works");
        let window = access.failed_login_window;
        Authenticator {
            store,
            ttl,
            by_address: RateLimiter::new(access.failed_logins_per_address, window, LIMITER_KEYS),
            by_name: RateLimiter::new(access.failed_logins_per_name, window, LIMITER_KEYS),
            access,
            cache: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            hashing: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get).max(1),
            ),
            generation: AtomicU64::new(0),
            last_change: AtomicI64::new(0),
            dummy_hash,
        }
    }

    pub fn access(&self) -> &AccessConfig {
        &self.access
    }

    /// The client address the throttle counts: the peer, or behind a trusted proxy the last
    /// `X-Forwarded-For` entry (the one that proxy added).
    pub fn client_address(&self, parts: &Parts) -> IpAddr {
        if self.access.trust_forwarded_for
            && let Some(ip) = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .next_back()
                .and_then(|s| s.trim().parse::<IpAddr>().ok())
        {
            return ip;
        }
        parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Authenticated> {
        let cache = self.cache.lock().expect("auth cache");
        cache.get(key).filter(|e| e.until > Instant::now()).map(|e| e.auth.clone())
    }

    fn remember(&self, key: [u8; 32], auth: &Authenticated, until: Instant, generation: u64) {
        let mut cache = self.cache.lock().expect("auth cache");
        // Checked under the lock that `forget_associate` also takes: no stale entry slips in.
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if cache.len() >= CACHE_CAPACITY {
            let now = Instant::now();
            cache.retain(|_, e| e.until > now);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(key, CacheEntry { auth: auth.clone(), until });
    }

    /// Drops every cached credential of these associates (after a change to them).
    pub fn forget_associates(&self, ids: &[i32]) {
        let mut cache = self.cache.lock().expect("auth cache");
        self.generation.fetch_add(1, Ordering::SeqCst);
        cache.retain(|_, e| !ids.contains(&e.auth.caller.associate_id));
    }

    /// Forgets all cached credentials.
    pub fn forget_all(&self) {
        let mut cache = self.cache.lock().expect("auth cache");
        self.generation.fetch_add(1, Ordering::SeqCst);
        cache.clear();
    }

    /// Reads the change log and drops the cache entries of every associate changed since the
    /// last look (changes made by another process, such as the CLI).
    pub async fn poll_changes(&self) {
        let after = self.last_change.load(Ordering::SeqCst);
        match self.store.credential_changes(after).await {
            Ok((latest, who)) => {
                if !who.is_empty() {
                    self.forget_associates(&who);
                }
                self.last_change.store(latest, Ordering::SeqCst);
            }
            Err(e) => {
                // Unknown state: trust nothing cached until the store answers again.
                tracing::warn!(error = %e, "cannot read credential changes");
                self.forget_all();
            }
        }
    }

    /// Polls the change log until the authenticator is dropped; purges dead credentials hourly.
    pub fn spawn_watcher(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let every = self.access.change_poll;
        tokio::spawn(async move {
            let mut last_purge: Option<Instant> = None;
            loop {
                let Some(me) = weak.upgrade() else { break };
                me.poll_changes().await;
                if last_purge.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
                    last_purge = Some(Instant::now());
                    let before = Utc::now() - chrono::Duration::days(1);
                    if let Err(e) = me.store.purge_credentials(before).await {
                        tracing::warn!(error = %e, "cannot purge old credentials");
                    }
                }
                drop(me);
                tokio::time::sleep(every).await;
            }
        });
    }

    /// Checks a name and password, throttled per address and per name. Unknown names cost the
    /// same argon2 verification as wrong passwords; a throttled attempt costs neither.
    pub async fn login(&self, name: &str, password: &str, client: IpAddr) -> Result<Associate, AuthError> {
        let name_key: String = name.to_lowercase().chars().take(NAME_KEY_MAX).collect();
        self.by_address.check(&client).map_err(too_many)?;
        self.by_name.check(&name_key).map_err(too_many)?;
        let found = self.store.associate_credentials(name).await?;
        let hash = found.as_ref().map_or_else(|| self.dummy_hash.clone(), |c| c.password_hash.clone());
        let password = password.to_owned();
        let ok = {
            let _slot = self.hashing.acquire().await.map_err(|_| unauthorized(Key::AuthFailed))?;
            tokio::task::spawn_blocking(move || verify_password(&password, &hash)).await.unwrap_or(false)
        };
        match found {
            Some(c) if ok && c.associate.active => Ok(c.associate),
            _ => {
                self.by_address.fail(&client);
                self.by_name.fail(&name_key);
                Err(unauthorized(Key::AuthFailed))
            }
        }
    }

    /// Looks a ticket, token or session secret up by its SHA-256. Failures count against the
    /// client address (guessing secrets is a login attempt too).
    async fn verify_secret(
        &self,
        kind: CredentialKind,
        secret: &str,
        client: IpAddr,
    ) -> Result<(Authenticated, Instant), AuthError> {
        self.by_address.check(&client).map_err(too_many)?;
        let secret_hash = hash_secret(secret);
        let found = self.store.find_credential(kind, &secret_hash).await?;
        let now = Utc::now();
        let m = match found {
            Some(m) if m.row.revoked.is_none() && m.associate.active => m,
            _ => {
                self.by_address.fail(&client);
                return Err(unauthorized(Key::AuthFailed));
            }
        };
        if m.row.expires.is_some_and(|e| e <= now) {
            self.by_address.fail(&client);
            return Err(unauthorized(Key::AuthExpired));
        }
        let a = m.associate;
        let (caller, via) = match kind {
            CredentialKind::Token => {
                let scope = m.row.scope.unwrap_or(Scope::Read);
                let caller = Caller {
                    associate_id: a.id,
                    name: a.name,
                    role: scope.effective_role(a.role),
                    read_only: scope.read_only(),
                };
                (caller, Via::Token { id: m.row.id, scope })
            }
            CredentialKind::Ticket => (Caller::new(a.id, a.name, a.role), Via::Ticket { secret_hash }),
            CredentialKind::Session => (Caller::new(a.id, a.name, a.role), Via::Session { secret_hash }),
        };
        Ok((Authenticated { caller, via }, self.until(m.row.expires)))
    }

    /// Cache lifetime: the configured period, never past the credential's expiry.
    fn until(&self, expires: Option<DateTime<Utc>>) -> Instant {
        let mut until = Instant::now() + self.ttl;
        if let Some(e) = expires {
            let left = (e - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            until = until.min(Instant::now() + left);
        }
        until
    }

    fn app_token_ok(&self, headers: &HeaderMap) -> bool {
        if self.access.app_tokens.is_empty() {
            return true;
        }
        let Some(given) = headers.get(APP_TOKEN_HEADER).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let given = given.trim();
        // Every entry is compared, so the time taken does not say which one matched.
        self.access.app_tokens.iter().fold(false, |ok, t| ct_eq_str(given, t) | ok)
    }

    /// Authenticates a request from its headers: `Authorization`, else the session cookie.
    pub async fn authenticate(
        &self,
        method: &str,
        headers: &HeaderMap,
        client: IpAddr,
    ) -> Result<Authenticated, AuthError> {
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let value = value.to_str().map_err(|_| unauthorized(Key::AuthFailed))?.trim();
            let (kind, rest) = parse_authorization(value).map_err(unauthorized)?;
            if kind.is_some() && !self.app_token_ok(headers) {
                return Err(unauthorized(Key::AuthAppToken));
            }
            if rest.is_empty() {
                return Err(unauthorized(Key::AuthFailed));
            }
            let key: [u8; 32] = Sha256::digest(value.as_bytes()).into();
            if let Some(auth) = self.cached(&key) {
                return Ok(auth);
            }
            return self
                .verify_once(key, || async {
                    match kind {
                        None => {
                            let (name, password) = decode_basic(rest).ok_or_else(|| unauthorized(Key::AuthFailed))?;
                            let a = self.login(&name, &password, client).await?;
                            let caller = Caller::new(a.id, a.name, a.role);
                            Ok((Authenticated { caller, via: Via::Basic }, self.until(None)))
                        }
                        Some(kind) => self.verify_secret(kind, rest, client).await,
                    }
                })
                .await;
        }
        let Some(secret) = cookie(headers, SESSION_COOKIE) else {
            return Err(unauthorized(Key::AuthRequired));
        };
        if !is_safe_method(method) {
            let Some(given) = headers.get(XSRF_HEADER).and_then(|v| v.to_str().ok()).map(str::trim) else {
                let msg = Msg::new(Key::AuthXsrfMissing).arg("method", method);
                return Err(ApiError::new(StatusCode::UNAUTHORIZED, msg).into());
            };
            if !ct_eq_str(given, &xsrf_token(secret)) {
                return Err(unauthorized(Key::AuthXsrfMismatch));
            }
        }
        let mut h = Sha256::new();
        h.update(b"session\0");
        h.update(secret.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        if let Some(auth) = self.cached(&key) {
            return Ok(auth);
        }
        self.verify_once(key, || self.verify_secret(CredentialKind::Session, secret, client)).await
    }

    /// Verifies a credential that is not cached, once: concurrent requests with the same
    /// credential wait for the first one's answer instead of each paying argon2 (a cache entry
    /// expiring under load would otherwise start a stampede).
    async fn verify_once<F, Fut>(&self, key: [u8; 32], verify: F) -> Result<Authenticated, AuthError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(Authenticated, Instant), AuthError>>,
    {
        let lock = self.inflight.lock().expect("inflight").entry(key).or_default().clone();
        let guard = lock.lock().await;
        let result = match self.cached(&key) {
            Some(auth) => Ok(auth),
            None => {
                let generation = self.generation.load(Ordering::SeqCst);
                verify().await.map(|(auth, until)| {
                    self.remember(key, &auth, until, generation);
                    auth
                })
            }
        };
        drop(guard);
        let mut inflight = self.inflight.lock().expect("inflight");
        // Ours and the map's: nobody else waits, so the entry can go.
        if inflight.get(&key).is_some_and(|l| Arc::ptr_eq(l, &lock)) && Arc::strong_count(&lock) == 2 {
            inflight.remove(&key);
        }
        result
    }

    /// Stores a new ticket, session or token for `associate` and returns the secret (shown once).
    pub async fn issue(
        &self,
        kind: CredentialKind,
        associate_id: i32,
        lifetime: Option<Duration>,
        scope: Option<Scope>,
        name: Option<String>,
    ) -> Result<(String, CredentialRow), AuthError> {
        let secret = match kind {
            CredentialKind::Ticket => new_ticket_secret(),
            CredentialKind::Token => new_token_secret(),
            CredentialKind::Session => new_session_secret(),
        };
        let now = Utc::now();
        let expires = lifetime.and_then(|l| chrono::Duration::from_std(l).ok()).map(|l| now + l);
        let row = self
            .store
            .create_credential(
                NewCredential { kind, associate_id, secret_hash: hash_secret(&secret), expires, scope, name },
                now,
            )
            .await?;
        Ok((secret, row))
    }
}

/// An `Authorization` value split into its scheme (`None` for Basic, else the kind of secret
/// it carries) and its credentials, trimmed and possibly empty. Schemes match in any case.
pub fn parse_authorization(value: &str) -> Result<(Option<CredentialKind>, &str), Key> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let kind = if scheme.eq_ignore_ascii_case("basic") {
        None
    } else if scheme.eq_ignore_ascii_case("soticket") {
        Some(CredentialKind::Ticket)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(CredentialKind::Token)
    } else {
        return Err(Key::AuthUnsupportedScheme);
    };
    Ok((kind, rest.trim()))
}

/// `base64(name:password)` → name and password.
pub fn decode_basic(encoded: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, password) = text.split_once(':')?;
    Some((name.to_owned(), password.to_owned()))
}

/// The client address the failed-login throttle counts (see [`Authenticator::client_address`]).
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(state.auth.client_address(parts)))
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(done) = parts.extensions.get::<Authenticated>() {
            return Ok(done.clone());
        }
        let client = state.auth.client_address(parts);
        let auth = state.auth.authenticate(parts.method.as_str(), &parts.headers, client).await?;
        // A read-scope token reads only; other scopes are narrowed through the caller's role.
        if let Via::Token { scope, .. } = &auth.via
            && scope.read_only()
            && !is_read_request(parts.method.as_str(), parts.uri.path())
        {
            let msg = Msg::new(Key::ScopeDenied).arg("scope", scope.as_str());
            return Err(ApiError::new(StatusCode::FORBIDDEN, msg).into());
        }
        parts.extensions.insert(auth.clone());
        Ok(auth)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Authenticated::from_request_parts(parts, state).await?.caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; batchd_session=abc; XSRF-TOKEN=x"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, XSRF_COOKIE), Some("x"));
        assert_eq!(cookie(&h, "nope"), None);
    }

    #[test]
    fn secrets_are_random_and_hashes_hex() {
        let a = new_ticket_secret();
        assert!(a.starts_with("7T:") && a.len() == 47, "{a}");
        assert_ne!(a, new_ticket_secret());
        assert!(new_token_secret().starts_with("batchd_"));
        let h = hash_secret("x");
        assert_eq!(h.len(), 64);
        assert!(h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(xsrf_token("s1"), xsrf_token("s2"));
    }

    #[test]
    fn authorization_schemes() {
        assert_eq!(parse_authorization("basic  YTpi "), Ok((None, "YTpi")));
        assert_eq!(parse_authorization("SOTicket 7T:x"), Ok((Some(CredentialKind::Ticket), "7T:x")));
        assert_eq!(parse_authorization("Bearer"), Ok((Some(CredentialKind::Token), "")));
        assert_eq!(parse_authorization("Digest x"), Err(Key::AuthUnsupportedScheme));
    }

    #[test]
    fn basic_decoding() {
        assert_eq!(decode_basic("YTpiOmM="), Some(("a".into(), "b:c".into())));
        assert_eq!(decode_basic("!!!"), None);
        assert_eq!(decode_basic("YWJj"), None, "no colon");
    }
}
