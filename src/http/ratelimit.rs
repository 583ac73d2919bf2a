//! Failed-login throttling: a token bucket per key (client address, associate name), in memory,
//! with a bounded number of keys.
//!
//! A login attempt *reserves* one token before the password is checked and gives it back when
//! the login succeeds, so a burst of parallel guesses cannot all slip past the check. A key with
//! no token left is answered 429 before any lookup or hashing happens, whether or not the name
//! exists, so the throttle itself tells nothing about which names exist.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct RateLimiter<K> {
    capacity: f64,
    per_sec: f64,
    max_keys: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `capacity` failures per `window`, refilled evenly; 0 disables the limiter.
    pub fn new(capacity: u32, window: Duration, max_keys: usize) -> RateLimiter<K> {
        let capacity = f64::from(capacity);
        RateLimiter {
            capacity,
            per_sec: capacity / window.as_secs_f64().max(0.001),
            max_keys: max_keys.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0.0
    }

    fn level(&self, b: &Bucket, now: Instant) -> f64 {
        (b.tokens + now.duration_since(b.at).as_secs_f64() * self.per_sec).min(self.capacity)
    }

    /// Takes one token, or says how long until one is back.
    pub fn reserve(&self, key: &K) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let now = Instant::now();
        let mut map = self.buckets.lock().expect("rate limiter");
        if !map.contains_key(key) && map.len() >= self.max_keys {
            self.make_room(&mut map, now);
        }
        let bucket = map.entry(key.clone()).or_insert(Bucket { tokens: self.capacity, at: now });
        let level = self.level(bucket, now);
        if level < 1.0 {
            bucket.tokens = level;
            bucket.at = now;
            return Err(Duration::from_secs_f64((1.0 - level) / self.per_sec));
        }
        bucket.tokens = level - 1.0;
        bucket.at = now;
        Ok(())
    }

    /// Gives back a reserved token (the login succeeded).
    pub fn refund(&self, key: &K) {
        if !self.enabled() {
            return;
        }
        let now = Instant::now();
        let mut map = self.buckets.lock().expect("rate limiter");
        if let Some(b) = map.get_mut(key) {
            b.tokens = (self.level(b, now) + 1.0).min(self.capacity);
            b.at = now;
        }
    }

    /// Drops buckets that have refilled; if none has, the one closest to full. A full table thus
    /// forgets the least suspicious key first, and its size stays bounded.
    fn make_room(&self, map: &mut HashMap<K, Bucket>, now: Instant) {
        map.retain(|_, b| self.level(b, now) < self.capacity);
        if map.len() >= self.max_keys {
            let fullest =
                map.iter().max_by(|a, b| self.level(a.1, now).total_cmp(&self.level(b.1, now))).map(|(k, _)| k.clone());
            if let Some(k) = fullest {
                map.remove(&k);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_capacity_then_refuses_with_a_wait() {
        let rl = RateLimiter::new(3, Duration::from_secs(60), 10);
        for _ in 0..3 {
            assert!(rl.reserve(&"a").is_ok());
        }
        let wait = rl.reserve(&"a").unwrap_err();
        assert!(wait > Duration::from_secs(10) && wait <= Duration::from_secs(20), "{wait:?}");
        assert!(rl.reserve(&"b").is_ok(), "keys are independent");
        rl.refund(&"a");
        assert!(rl.reserve(&"a").is_ok(), "a refund gives the token back");
    }

    #[test]
    fn stays_bounded() {
        let rl = RateLimiter::new(2, Duration::from_secs(60), 100);
        for i in 0..1000 {
            let _ = rl.reserve(&i);
        }
        assert!(rl.len() <= 100);
    }

    #[test]
    fn zero_disables() {
        let rl = RateLimiter::new(0, Duration::from_secs(60), 10);
        for _ in 0..100 {
            assert!(rl.reserve(&1).is_ok());
        }
    }
}
