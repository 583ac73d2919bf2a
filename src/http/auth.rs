//! Who is calling. One extractor, [`Caller`], reads the `Authorization` header; the
//! [`Authenticator`] verifies it and caches verified credentials briefly, so argon2 is paid
//! once per credential per cache period, not per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::domain::Caller;
use crate::i18n::Key;
use crate::store::Store;

use super::AppState;
use super::error::ApiError;

const CACHE_CAPACITY: usize = 10_000;

pub struct Authenticator {
    store: Arc<dyn Store>,
    ttl: Duration,
    /// SHA-256 of the whole `Authorization` value → the caller it proved, and until when.
    cache: Mutex<HashMap<[u8; 32], (Caller, Instant)>>,
    /// Verified against when the user is unknown, so both failures cost the same time.
    dummy_hash: String,
}

/// Hashes a password with argon2id (the crate's default parameters).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| anyhow::anyhow!("{e}"))?.to_string())
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Authenticator {
        let dummy_hash = hash_password("not a real password, only a timing decoy").expect("argon2 works");
        Authenticator { store, ttl, cache: Mutex::new(HashMap::new()), dummy_hash }
    }

    /// Checks an `Authorization` header value.
    pub async fn authenticate(&self, authorization: &str) -> Result<Caller, ApiError> {
        let key: [u8; 32] = Sha256::digest(authorization.as_bytes()).into();
        if let Some((caller, until)) = self.cache.lock().expect("auth cache").get(&key) {
            if *until > Instant::now() {
                return Ok(caller.clone());
            }
        }
        let (scheme, rest) = authorization.trim().split_once(' ').unwrap_or((authorization.trim(), ""));
        let caller = if scheme.eq_ignore_ascii_case("basic") {
            self.basic(rest.trim()).await?
        } else {
            return Err(ApiError::unauthorized(Key::AuthRequired));
        };
        let mut cache = self.cache.lock().expect("auth cache");
        if cache.len() >= CACHE_CAPACITY {
            let now = Instant::now();
            cache.retain(|_, (_, until)| *until > now);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(key, (caller.clone(), Instant::now() + self.ttl));
        Ok(caller)
    }

    async fn basic(&self, encoded: &str) -> Result<Caller, ApiError> {
        let failed = || ApiError::unauthorized(Key::AuthFailed);
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| failed())?;
        let text = String::from_utf8(decoded).map_err(|_| failed())?;
        let (name, password) = text.split_once(':').ok_or_else(failed)?;
        let found = self.store.associate_credentials(name).await.map_err(ApiError::from)?;
        let hash = found.as_ref().map_or_else(|| self.dummy_hash.clone(), |c| c.password_hash.clone());
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash)).await.unwrap_or(false);
        match found {
            Some(c) if ok && c.associate.active => {
                Ok(Caller { associate_id: c.associate.id, name: c.associate.name, role: c.associate.role })
            }
            _ => Err(failed()),
        }
    }

    /// Forgets cached credentials (after a password or role change).
    pub fn forget_all(&self) {
        self.cache.lock().expect("auth cache").clear();
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(Key::AuthRequired));
        };
        let value = value.to_str().map_err(|_| ApiError::unauthorized(Key::AuthFailed))?;
        state.auth.authenticate(value).await
    }
}
