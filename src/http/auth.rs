//! Who is calling. The [`Authenticated`] extractor (and [`Caller`], which wraps it) reads the
//! `Authorization` header (`Basic`, `SOTicket`, `Bearer`) or, when there is none, the session
//! cookie; the [`Authenticator`] verifies it. This is the HTTP side only: hashing, secrets and
//! the rules about credentials are the identity service's (`src/identity.rs`).
//!
//! Speed: a verified credential is cached under a keyed hash of what it is (not of how the
//! header spells it), so argon2 (Basic) or a database lookup (tickets, tokens, sessions) is paid
//! once per credential per cache period, not per request. Tickets, tokens and sessions are looked
//! up by the SHA-256 of the secret; nothing is hashed slowly per request. Password checks are
//! bounded per client address and in number at once; the cache is bounded and forgets the least
//! recently used entries first.
//!
//! Freshness: every change that ends or narrows a credential (password, role, active flag,
//! removal, revocation) drops the associate's cache entries at once in this process, and is
//! logged in the store; a watcher polls that log (`[auth] change_poll_millis`, default 1 s), so
//! changes made by the CLI, another process, take effect within one poll interval.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
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
use crate::domain::lockout::{Bucket, Standing};
use crate::domain::{Associate, Caller};
use crate::i18n::{Key, Msg};
use crate::identity::{Authenticated, ChangeListener, Via, hash_secret, off_thread, random_bytes, verify_password};
use crate::store::Store;
use crate::store::access::CredentialKind;
use crate::store::feed::Notice;

use super::AppState;
use super::clock::Clock;
use super::error::ApiError;
use super::ratelimit::RateLimiter;

const LIMITER_KEYS: usize = 10_000;
/// (name, address) pairs remembered as known clients; a full table forgets unused ones first.
pub const KNOWN_ADDRESSES: usize = 10_000;
/// Password checks that may wait for a free core; more at once are answered 429. Each waiting
/// request costs little, but every one of them adds tens of milliseconds to the wait of the next.
pub const MAX_WAITING_CHECKS: usize = 256;
/// Longest associate name a throttle key keeps (names are at most 100 characters).
const NAME_KEY_MAX: usize = 128;

pub const SESSION_COOKIE: &str = "batchd_session";
pub const XSRF_COOKIE: &str = "XSRF-TOKEN";
pub const XSRF_HEADER: &str = "x-xsrf-token";
pub const APP_TOKEN_HEADER: &str = "so-apptoken";
/// Set at a password login: marks the browser or client as one that logged in as that name.
pub const DEVICE_COOKIE: &str = "batchd_device";

/// What an operation asks of its caller. Handlers that extract a [`Caller`] or an
/// [`Authenticated`] are `Credentials`; the OpenAPI document takes each operation's `security`
/// and its authentication statuses from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials (probes, the version, the document).
    Open,
    /// A login: a name and password in the body (or Basic), checked and throttled like Basic.
    Login,
    /// Any credential: Basic, SOTicket, Bearer or the session cookie.
    Credentials,
}

impl Access {
    /// What authentication may answer instead of the operation: 401 for a missing or wrong
    /// credential, 403 for a token scope too narrow, 429 when failed logins or password checks
    /// from the client are throttled (see [`Authenticator::login`]).
    pub fn statuses(self) -> &'static [u16] {
        match self {
            Access::Open => &[],
            Access::Login => &[401, 429],
            Access::Credentials => &[401, 403, 429],
        }
    }
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

impl From<crate::identity::IdentityError> for AuthError {
    fn from(e: crate::identity::IdentityError) -> AuthError {
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

fn throttled(key: Key, wait: Duration) -> AuthError {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    AuthError {
        error: ApiError::new(StatusCode::TOO_MANY_REQUESTS, Msg::new(key).arg("seconds", secs)),
        retry_after: Some(secs),
    }
}

/// Too many failed logins.
fn too_many(wait: Duration) -> AuthError {
    throttled(Key::TooManyAttempts, wait)
}

/// Too many password checks (from this address, or waiting at once).
fn too_busy(wait: Duration) -> AuthError {
    throttled(Key::PasswordChecksBusy, wait)
}

/// The throttle key of an associate name: ASCII lower case, as the store compares names.
fn name_key(name: &str) -> String {
    name.chars().take(NAME_KEY_MAX).collect::<String>().to_ascii_lowercase()
}

/// The scheme and the credential of an `Authorization` value, whatever white space separates or
/// surrounds them.
/// Counts a request waiting for a password-check slot for as long as it lives (a request
/// dropped while waiting is uncounted too).
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a std::sync::atomic::AtomicUsize) -> (Waiting<'a>, usize) {
        (Waiting(count), count.fetch_add(1, Ordering::SeqCst) + 1)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
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

/// HMAC-SHA256 (RFC 2104) of the concatenated `parts`.
fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn unix_now() -> u64 {
    Utc::now().timestamp().max(0) as u64
}

/// A device cookie: a random nonce and an expiry (Unix seconds), signed together with the name
/// (HMAC-SHA256), base64url. Nothing is stored: the signature is the proof.
fn sign_device(key: &[u8; 32], nonce: [u8; 16], expires: u64, name_key: &str) -> String {
    let expires = expires.to_be_bytes();
    let mac = hmac_sha256(key, &[&nonce, &expires, name_key.as_bytes()]);
    let mut raw = Vec::with_capacity(56);
    raw.extend_from_slice(&nonce);
    raw.extend_from_slice(&expires);
    raw.extend_from_slice(&mac);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// The nonce of a device cookie signed with `key` for `name_key` and not expired at `now`.
fn open_device(key: &[u8; 32], cookie: &str, name_key: &str, now: u64) -> Option<[u8; 16]> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cookie).ok()?;
    if raw.len() != 56 {
        return None;
    }
    let (nonce, rest) = raw.split_at(16);
    let (expires, mac) = rest.split_at(8);
    if u64::from_be_bytes(expires.try_into().ok()?) <= now {
        return None;
    }
    let want = hmac_sha256(key, &[nonce, expires, name_key.as_bytes()]);
    if bool::from(want.ct_eq(mac)) { nonce.try_into().ok() } else { None }
}

/// Who is trying to log in: the client address and the device cookie it sent, if any.
#[derive(Debug, Clone)]
pub struct Client {
    pub addr: IpAddr,
    pub device: Option<String>,
}

impl Client {
    pub fn from_headers(addr: IpAddr, headers: &HeaderMap) -> Client {
        Client { addr, device: cookie(headers, DEVICE_COOKIE).map(str::to_owned) }
    }
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
    /// [`Authenticator::cache_key`] of a credential → who it is.
    cache: Mutex<Clock<[u8; 32], CacheEntry>>,
    /// Random per process: cache keys are useless outside it, and a memory dump does not give
    /// plain SHA-256 of passwords to test guesses against.
    key_salt: [u8; 32],
    /// Credentials being verified right now (see `verify_once`).
    inflight: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>,
    /// Bumped whenever entries are dropped, so a verification that raced a change does not
    /// cache its stale answer.
    generation: AtomicU64,
    /// Newest `credential_change` row seen.
    last_change: AtomicI64,
    /// Bounds argon2 verifications running at once: each takes ~19 MiB and a core for tens of
    /// milliseconds, so a burst of logins would otherwise cost memory it never gives back.
    hashing: tokio::sync::Semaphore,
    /// Requests waiting for `hashing` (at most [`MAX_WAITING_CHECKS`]).
    waiting: std::sync::atomic::AtomicUsize,
    /// Password verifications done (argon2 runs, the decoy for unknown names included).
    password_checks: AtomicU64,
    by_address: RateLimiter<IpAddr>,
    by_name: RateLimiter<String>,
    /// Failures of a known address for a name (see `domain::lockout`).
    by_pair: RateLimiter<(String, IpAddr)>,
    /// Failures of a device cookie, by its nonce.
    by_device: RateLimiter<[u8; 16]>,
    /// (name key, address) that logged in → when it last did.
    known: Mutex<Clock<(String, IpAddr), Instant>>,
    /// Signs device cookies; random per process, so a restart forgets the devices (the known
    /// addresses too).
    device_key: [u8; 32],
    /// Password checks per client address, right or wrong.
    checks_by_address: RateLimiter<IpAddr>,
}

/// Verified against when the user is unknown, so both failures cost the same time: a hash with
/// the parameters of [`crate::identity::hash_password`] (checked by a test) of a random password
/// nobody kept. A constant, so that start-up does not spend 19 MiB and a core on making one.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$R98g1M2kuBOfLm0j0k0jbw$kCYVb0EK3sDiWb1vOYwstiMipKi7o4T2Rwa2k5IcJPA";

impl Authenticator {
    pub fn new(store: Arc<dyn Store>, ttl: Duration, access: AccessConfig) -> Authenticator {
        let window = access.failed_login_window;
        Authenticator {
            store,
            ttl,
            by_address: RateLimiter::new(access.failed_logins_per_address, window, LIMITER_KEYS),
            by_name: RateLimiter::new(access.failed_logins_per_name, window, LIMITER_KEYS),
            by_pair: RateLimiter::new(access.failed_logins_per_name, window, LIMITER_KEYS),
            by_device: RateLimiter::new(access.failed_logins_per_name, window, LIMITER_KEYS),
            known: Mutex::new(Clock::new(KNOWN_ADDRESSES)),
            device_key: random_bytes(),
            checks_by_address: RateLimiter::new(access.password_checks_per_address, window, LIMITER_KEYS),
            cache: Mutex::new(Clock::new(access.credential_cache_entries)),
            key_salt: random_bytes(),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            access,
            inflight: Mutex::new(HashMap::new()),
            hashing: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get).max(1),
            ),
            generation: AtomicU64::new(0),
            password_checks: AtomicU64::new(0),
            last_change: AtomicI64::new(0),
        }
    }

    pub fn access(&self) -> &AccessConfig {
        &self.access
    }

    /// How many passwords have been verified (argon2 runs) since start.
    pub fn password_checks(&self) -> u64 {
        self.password_checks.load(Ordering::Relaxed)
    }

    /// The cache key of a credential: a keyed SHA-256 of its kind and what identifies it (for
    /// Basic the name in ASCII lower case, as the store compares names, and the password), so
    /// every spelling of one credential shares one entry and the cache holds no secret in clear.
    fn cache_key(&self, kind: &str, fields: &[&[u8]]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key_salt);
        h.update(kind.as_bytes());
        for f in fields {
            h.update((f.len() as u64).to_le_bytes());
            h.update(f);
        }
        h.finalize().into()
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Authenticated> {
        let mut cache = self.cache.lock().expect("auth cache");
        match cache.get(key) {
            Some(e) if e.until > Instant::now() => Some(e.auth.clone()),
            Some(_) => {
                cache.remove(key);
                None
            }
            None => None,
        }
    }

    fn remember(&self, key: [u8; 32], auth: &Authenticated, until: Instant, generation: u64) {
        let mut cache = self.cache.lock().expect("auth cache");
        // Checked under the lock that `forget_associate` also takes: no stale entry slips in.
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        // A full cache evicts one entry not used lately (see `Clock`), never all of them.
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
        // Changes announced on the change feed (another node's, on PostgreSQL) are read at once.
        let weak = Arc::downgrade(self);
        let mut feed = self.store.feed().subscribe();
        tokio::spawn(async move {
            while let Some(notice) = feed.next().await {
                if matches!(notice, Notice::Credentials | Notice::Resync) {
                    let Some(me) = weak.upgrade() else { break };
                    me.poll_changes().await;
                }
            }
        });
    }

    /// Checks a name and password. Throttled as `domain::lockout` says: clients that logged in as
    /// the name before (known address, device cookie) are counted on their own, others per
    /// address and per name. Unknown names cost the same argon2 verification as wrong passwords;
    /// a throttled attempt costs neither.
    pub async fn login(&self, name: &str, password: &str, client: &Client) -> Result<Associate, AuthError> {
        let name_key = name_key(name);
        let nonce = client.device.as_deref().and_then(|d| self.device_nonce(d, &name_key));
        let pair = (name_key.clone(), client.addr);
        let standing = match nonce {
            Some(_) => Standing::Device,
            None if self.is_known(&pair) => Standing::KnownAddress,
            None => Standing::Unknown,
        };
        for bucket in standing.gates() {
            match (bucket, &nonce) {
                (Bucket::Address, _) => self.by_address.check(&client.addr),
                (Bucket::Name, _) => self.by_name.check(&name_key),
                (Bucket::Pair, _) => self.by_pair.check(&pair),
                (Bucket::Device, Some(n)) => self.by_device.check(n),
                (Bucket::Device, None) => Ok(()),
            }
            .map_err(too_many)?;
        }
        let found = self.store.associate_credentials(name).await?;
        // Counted only once the hash is really to be checked: a lookup the store could not answer
        // (an outage, retried by the client) costs no argon2 and must not use the address's share.
        if standing.checks_bounded() {
            self.checks_by_address.try_take(&client.addr).map_err(too_busy)?;
        }
        let hash = found.as_ref().map_or_else(|| DECOY_HASH.to_owned(), |c| c.password_hash.clone());
        let ok = self.check_password(password.to_owned(), hash).await?;
        match found {
            Some(c) if ok && c.associate.active => {
                self.known.lock().expect("known clients").insert(pair, Instant::now());
                Ok(c.associate)
            }
            _ => {
                for bucket in standing.charged() {
                    match (bucket, &nonce) {
                        (Bucket::Address, _) => self.by_address.fail(&client.addr),
                        (Bucket::Name, _) => self.by_name.fail(&name_key),
                        (Bucket::Pair, _) => self.by_pair.fail(&pair),
                        (Bucket::Device, Some(n)) => self.by_device.fail(n),
                        (Bucket::Device, None) => {}
                    }
                }
                Err(unauthorized(Key::AuthFailed))
            }
        }
    }

    /// Has this address logged in as this name within the device lifetime?
    fn is_known(&self, pair: &(String, IpAddr)) -> bool {
        let mut known = self.known.lock().expect("known clients");
        known.get(pair).is_some_and(|at| at.elapsed() < self.access.device_lifetime)
    }

    /// A device cookie for a client that has just logged in as `name`.
    pub fn device_cookie(&self, name: &str) -> String {
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let expires = unix_now().saturating_add(self.access.device_lifetime.as_secs());
        sign_device(&self.device_key, nonce, expires, &name_key(name))
    }

    /// The nonce of a device cookie this process issued for `name_key`, unexpired.
    fn device_nonce(&self, cookie: &str, name_key: &str) -> Option<[u8; 16]> {
        open_device(&self.device_key, cookie, name_key, unix_now())
    }

    /// Runs argon2 on a blocking thread, at most one per core at once; beyond
    /// [`MAX_WAITING_CHECKS`] waiting, 429 at once instead of a longer queue.
    async fn check_password(&self, password: String, hash: String) -> Result<bool, AuthError> {
        let _slot = match self.hashing.try_acquire() {
            Ok(slot) => slot,
            Err(_) => {
                let (_waiting, count) = Waiting::enter(&self.waiting);
                if count > MAX_WAITING_CHECKS {
                    return Err(too_busy(Duration::from_secs(1)));
                }
                self.hashing.acquire().await.map_err(|_| unauthorized(Key::AuthFailed))?
            }
        };
        self.password_checks.fetch_add(1, Ordering::Relaxed);
        Ok(off_thread(move || verify_password(&password, &hash)).await.unwrap_or(false))
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
            let Some(kind) = kind else {
                let decoded = decode_basic(rest).ok_or_else(|| unauthorized(Key::AuthFailed))?;
                let (name, password) = decoded.split();
                let key = self.cache_key("basic", &[decoded.name_key().as_bytes(), password.as_bytes()]);
                if let Some(auth) = self.cached(&key) {
                    return Ok(auth);
                }
                return self
                    .verify_once(key, || async {
                        let a = self.login(name, password, &Client::from_headers(client, headers)).await?;
                        let caller = Caller::new(a.id, a.name, a.role);
                        Ok((Authenticated { caller, via: Via::Basic }, self.until(None)))
                    })
                    .await;
            };
            let tag = if kind == CredentialKind::Ticket { "ticket" } else { "token" };
            let key = self.cache_key(tag, &[rest.as_bytes()]);
            if let Some(auth) = self.cached(&key) {
                return Ok(auth);
            }
            return self.verify_once(key, || self.verify_secret(kind, rest, client)).await;
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
        let key = self.cache_key("session", &[secret.as_bytes()]);
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
}

/// The service's changes drop this process's cache entries at once.
impl ChangeListener for Authenticator {
    fn associates_changed(&self, ids: &[i32]) {
        self.forget_associates(ids);
    }
}

/// An `Authorization` value split into its scheme (`None` for Basic, else the kind of secret
/// it carries) and its credentials, trimmed and possibly empty. Schemes match in any case.
pub fn parse_authorization(value: &str) -> Result<(Option<CredentialKind>, &str), Key> {
    let value = value.trim_matches(|c: char| c.is_ascii_whitespace());
    let (scheme, rest) = match value.find(|c: char| c.is_ascii_whitespace()) {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, ""),
    };
    let kind = if scheme.eq_ignore_ascii_case("basic") {
        None
    } else if scheme.eq_ignore_ascii_case("soticket") {
        Some(CredentialKind::Ticket)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(CredentialKind::Token)
    } else {
        return Err(Key::AuthUnsupportedScheme);
    };
    Ok((kind, rest.trim_matches(|c: char| c.is_ascii_whitespace())))
}

/// Basic credentials decoded: `name:password` in one string (one allocation per request).
pub struct BasicCredentials {
    text: String,
    colon: usize,
}

impl BasicCredentials {
    /// The name and the password.
    pub fn split(&self) -> (&str, &str) {
        (&self.text[..self.colon], &self.text[self.colon + 1..])
    }

    /// The name in ASCII lower case, as the store compares names: borrowed when it is already.
    fn name_key(&self) -> std::borrow::Cow<'_, str> {
        let name = self.split().0;
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(name.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(name)
        }
    }
}

/// `base64(name:password)` → name and password.
pub fn decode_basic(encoded: &str) -> Option<BasicCredentials> {
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let colon = text.find(':')?;
    Some(BasicCredentials { text, colon })
}

/// The client of a login: its address as the throttles count it (see
/// [`super::forwarded::client_address`]) and its device cookie.
impl FromRequestParts<AppState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let addr = super::forwarded::client_address(parts, &state.config.access);
        Ok(Client::from_headers(addr, &parts.headers))
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(done) = parts.extensions.get::<Authenticated>() {
            return Ok(done.clone());
        }
        let client = super::forwarded::client_address(parts, &state.config.access);
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
    fn the_decoy_costs_what_a_real_check_costs() {
        // Same algorithm, version and parameters as a hash made now: an unknown user's check
        // takes as long as a known one's.
        let real = crate::identity::hash_password("x").unwrap();
        let shape = |h: &str| {
            let parsed = argon2::PasswordHash::new(h).unwrap();
            (parsed.algorithm.to_string(), parsed.version, parsed.params.to_string())
        };
        assert_eq!(shape(DECOY_HASH), shape(&real));
        assert!(!verify_password("", DECOY_HASH));
    }

    #[test]
    fn xsrf_tokens_differ_by_session() {
        assert_ne!(xsrf_token("s1"), xsrf_token("s2"));
    }

    #[test]
    fn device_cookies_hold_for_their_name_key_and_lifetime_only() {
        let key = [7u8; 32];
        let c = sign_device(&key, [1; 16], 1_000, "kim");
        assert_eq!(open_device(&key, &c, "kim", 999), Some([1; 16]));
        assert_eq!(open_device(&key, &c, "kim", 1_000), None, "expired");
        assert_eq!(open_device(&key, &c, "kimberly", 999), None, "another name");
        assert_eq!(open_device(&[8u8; 32], &c, "kim", 999), None, "another process");
        let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&c).unwrap();
        raw[20] ^= 1;
        let longer = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(open_device(&key, &longer, "kim", 999), None, "a changed expiry");
        assert_eq!(open_device(&key, "", "kim", 0), None);
        assert_eq!(open_device(&key, "!!", "kim", 0), None);
        // RFC 4231, test case 2 (a short key is zero-padded, as HMAC itself pads it).
        let mut jefe = [0u8; 32];
        jefe[..4].copy_from_slice(b"Jefe");
        let mac = hmac_sha256(&jefe, &[b"what do ya want ", b"for nothing?"]);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
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
        assert_eq!(decode_basic("YTpiOmM=").unwrap().split(), ("a", "b:c"));
        assert!(decode_basic("!!!").is_none());
        assert!(decode_basic("YWJj").is_none(), "no colon");
        let kim = decode_basic("S2ltOng=").unwrap();
        assert_eq!((kim.split(), kim.name_key().as_ref()), (("Kim", "x"), "kim"));
    }
}
