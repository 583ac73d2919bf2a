//! Login throttling: a token bucket per key (client address, associate name), in memory, with a
//! bounded number of keys. Failures take tokens ([`RateLimiter::fail`]); bounds on every attempt,
//! such as password checks per address, take them with [`RateLimiter::try_take`].
//!
//! An attempt is let through while its keys have a token left; each failure takes one. A key
//! with none left is answered 429 before any lookup or hashing happens, whether or not the name
//! exists and whether or not the password is right, so the throttle tells nothing. Successful
//! logins take nothing, so many clients logging in at once as one service account are not
//! throttled.

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

    /// May this key try now? `Err` says how long until it may. Reads only: keys that never fail
    /// never take a place in the table.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let map = self.buckets.lock().expect("rate limiter");
        match map.get(key) {
            Some(b) => {
                let level = self.level(b, Instant::now());
                if level >= 1.0 { Ok(()) } else { Err(Duration::from_secs_f64((1.0 - level) / self.per_sec)) }
            }
            None => Ok(()),
        }
    }

    /// Takes a token if there is one (check and take at once, so parallel callers cannot
    /// overshoot); `Err` says how long until there is. For bounds on every attempt, not only
    /// failures.
    pub fn try_take(&self, key: &K) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let now = Instant::now();
        let mut map = self.buckets.lock().expect("rate limiter");
        if let Some(b) = map.get_mut(key) {
            let level = self.level(b, now);
            if level < 1.0 {
                return Err(Duration::from_secs_f64((1.0 - level) / self.per_sec));
            }
            b.tokens = level - 1.0;
            b.at = now;
            return Ok(());
        }
        if map.len() >= self.max_keys {
            self.make_room(&mut map, now);
        }
        map.insert(key.clone(), Bucket { tokens: self.capacity - 1.0, at: now });
        Ok(())
    }

    /// Counts a failure. Parallel attempts that all passed `check` may take the level below
    /// zero (down to minus the capacity): they then wait that much longer, so the long-run rate
    /// of guesses stays bounded by the refill rate.
    pub fn fail(&self, key: &K) {
        if !self.enabled() {
            return;
        }
        let now = Instant::now();
        let mut map = self.buckets.lock().expect("rate limiter");
        if !map.contains_key(key) && map.len() >= self.max_keys {
            self.make_room(&mut map, now);
        }
        let bucket = map.entry(key.clone()).or_insert(Bucket { tokens: self.capacity, at: now });
        bucket.tokens = (self.level(bucket, now) - 1.0).max(-self.capacity);
        bucket.at = now;
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
            assert!(rl.check(&"a").is_ok());
            rl.fail(&"a");
        }
        let wait = rl.check(&"a").unwrap_err();
        assert!(wait > Duration::from_secs(10) && wait <= Duration::from_secs(20), "{wait:?}");
        assert!(rl.check(&"b").is_ok(), "keys are independent");
        // Overshoot by parallel attempts means a longer wait, bounded by the capacity.
        for _ in 0..100 {
            rl.fail(&"a");
        }
        let wait = rl.check(&"a").unwrap_err();
        assert!(wait > Duration::from_secs(70) && wait <= Duration::from_secs(80), "{wait:?}");
    }

    #[test]
    fn try_take_checks_and_takes_at_once() {
        let rl = RateLimiter::new(2, Duration::from_secs(60), 10);
        assert!(rl.try_take(&"a").is_ok());
        assert!(rl.try_take(&"a").is_ok());
        let wait = rl.try_take(&"a").unwrap_err();
        assert!(wait > Duration::from_secs(20) && wait <= Duration::from_secs(30), "{wait:?}");
        assert!(rl.try_take(&"b").is_ok());
    }

    #[test]
    fn stays_bounded() {
        let rl = RateLimiter::new(2, Duration::from_secs(60), 100);
        for i in 0..1000 {
            rl.fail(&i);
        }
        assert!(rl.len() <= 100);
    }

    #[test]
    fn zero_disables() {
        let rl = RateLimiter::new(0, Duration::from_secs(60), 10);
        for _ in 0..100 {
            rl.fail(&1);
            assert!(rl.check(&1).is_ok());
        }
    }
}
