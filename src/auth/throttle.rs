//! Rate limits on failed logins, per client address and per user name:
//! each has a bucket of attempts that failures empty and time refills;
//! while a bucket is empty, attempts are refused without checking.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Most clients (and user names) remembered; past it, those whose bucket
/// has refilled are forgotten (and, if that is not enough, all).
const MAX_KEYS: usize = 10_000;

/// Longest user name kept as a key (longer names share their prefix's).
const MAX_USER_KEY: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets by key.
#[derive(Debug)]
struct Buckets<K> {
    map: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    fn new() -> Self {
        Buckets {
            map: Mutex::new(HashMap::new()),
        }
    }

    fn level(b: &Bucket, burst: f64, per_sec: f64, now: Instant) -> f64 {
        (b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec).min(burst)
    }

    /// The attempts `key` has left (`burst` when unknown).
    fn left(&self, key: &K, burst: f64, per_sec: f64) -> f64 {
        let now = Instant::now();
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .map_or(burst, |b| Self::level(b, burst, per_sec, now))
    }

    /// Gives one attempt back to `key`'s bucket.
    fn refund(&self, key: &K, burst: f64) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get_mut(key) {
            b.tokens = (b.tokens + 1.0).min(burst);
        }
    }

    /// Takes one attempt from `key`'s bucket.
    fn take(&self, key: &K, burst: f64, per_sec: f64) {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            map.retain(|_, b| Self::level(b, burst, per_sec, now) < burst);
            if map.len() >= MAX_KEYS {
                map.clear();
            }
        }
        let b = map.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (Self::level(b, burst, per_sec, now) - 1.0).max(0.0);
        b.at = now;
    }
}

/// Failed-login limits.
#[derive(Debug)]
pub struct Throttle {
    burst: f64,
    per_sec: f64,
    clients: Buckets<IpAddr>,
    users: Buckets<String>,
}

/// Why an attempt is refused unchecked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    Client,
    User,
}

impl Throttled {
    pub fn as_str(self) -> &'static str {
        match self {
            Throttled::Client => "client",
            Throttled::User => "user",
        }
    }
}

fn user_key(user: &str) -> String {
    let mut end = user.len().min(MAX_USER_KEY);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    user[..end].to_string()
}

impl Throttle {
    /// `burst` failures allowed at once per client and per user, refilled
    /// at `per_minute`.
    pub fn new(burst: u32, per_minute: u32) -> Self {
        Throttle {
            burst: f64::from(burst.max(1)),
            per_sec: f64::from(per_minute) / 60.0,
            clients: Buckets::new(),
            users: Buckets::new(),
        }
    }

    /// Starts an attempt by `client` as `user`: refused unchecked while
    /// either has no attempt left, else counted as failed until
    /// [`succeeded`](Self::succeeded) says otherwise (so that attempts
    /// still being checked count too). `Ok(true)` when neither had a
    /// recent failure (a clean attempt).
    pub fn begin(&self, client: Option<IpAddr>, user: &str) -> Result<bool, Throttled> {
        let user = user_key(user);
        let client_left = client.map_or(self.burst, |c| {
            self.clients.left(&c, self.burst, self.per_sec)
        });
        if client_left < 1.0 {
            return Err(Throttled::Client);
        }
        let user_left = self.users.left(&user, self.burst, self.per_sec);
        if user_left < 1.0 {
            return Err(Throttled::User);
        }
        if let Some(c) = client {
            self.clients.take(&c, self.burst, self.per_sec);
        }
        self.users.take(&user, self.burst, self.per_sec);
        Ok(client_left >= self.burst && user_left >= self.burst)
    }

    /// Gives back the attempt of a login that succeeded.
    pub fn succeeded(&self, client: Option<IpAddr>, user: &str) {
        if let Some(c) = client {
            self.clients.refund(&c, self.burst);
        }
        self.users.refund(&user_key(user), self.burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_empty_the_bucket_of_the_client_and_of_the_user() {
        let t = Throttle::new(3, 0);
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        assert_eq!(t.begin(Some(a), "alice"), Ok(true), "clean");
        for _ in 0..2 {
            assert_eq!(t.begin(Some(a), "alice"), Ok(false));
        }
        assert_eq!(t.begin(Some(a), "bob"), Err(Throttled::Client));
        assert_eq!(t.begin(Some(b), "alice"), Err(Throttled::User));
        t.succeeded(Some(b), "alice");
        assert_eq!(t.begin(Some(b), "alice"), Ok(false), "a success gives back");
        assert_eq!(t.begin(Some(b), "bob"), Ok(false), "b failed as alice");
    }

    #[test]
    fn buckets_refill_with_time() {
        let t = Throttle::new(1, 60_000);
        let a: IpAddr = [127, 0, 0, 2].into();
        assert_eq!(t.begin(Some(a), "u"), Ok(true));
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(t.begin(Some(a), "u"), Ok(true));
    }
}
