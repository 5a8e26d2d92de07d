//! Authentication: of clients calling promfed (bearer tokens from files,
//! basic auth against bcrypt hashes) and of promfed calling its backends
//! (bearer-token file, basic auth). Secrets are held in [`Secret`], whose
//! `Debug` never shows them.

pub mod throttle;

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// A secret string: compared in constant time, never printed.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// Byte equality whose time does not depend on where the inputs differ
/// (`subtle`; unequal lengths are unequal at once).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

/// `auth:`: what clients must send. Either kind of credential is accepted.
/// `/-/healthy` and `/-/ready` stay open for probes.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Files each holding one bearer token (surrounding whitespace is
    /// ignored); a request may send any of them as `Authorization: Bearer`.
    #[serde(default)]
    pub bearer_token_files: Vec<PathBuf>,
    /// Users for basic auth: user name to bcrypt hash of the password
    /// (`promfed hash-password` prints one).
    #[serde(default)]
    pub basic_auth_users: BTreeMap<String, Secret>,
    /// Failed basic-auth attempts allowed at once per client address, and
    /// per user name (default 10). Past them, attempts are refused with 429
    /// without checking the password until the allowance refills at
    /// `failed_logins_per_minute`. Clients whose credentials already passed
    /// are not held up.
    #[serde(default = "default_failed_login_burst")]
    pub failed_login_burst: u32,
    /// How fast the allowance of failed attempts refills, per minute
    /// (default 10).
    #[serde(default = "default_failed_logins_per_minute")]
    pub failed_logins_per_minute: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            bearer_token_files: Vec::new(),
            basic_auth_users: BTreeMap::new(),
            failed_login_burst: default_failed_login_burst(),
            failed_logins_per_minute: default_failed_logins_per_minute(),
        }
    }
}

fn default_failed_login_burst() -> u32 {
    10
}

fn default_failed_logins_per_minute() -> u32 {
    10
}

impl AuthConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.bearer_token_files.is_empty() && self.basic_auth_users.is_empty() {
            problems.push(
                "auth: set bearer_token_files or basic_auth_users (or leave auth out)".to_string(),
            );
        }
        for (user, hash) in &self.basic_auth_users {
            if user.is_empty() || user.contains(':') {
                problems.push(format!(
                    "auth.basic_auth_users: {user:?} is not a valid user name"
                ));
            }
            if hash.expose().parse::<bcrypt::HashParts>().is_err() {
                problems.push(format!(
                    "auth.basic_auth_users.{user}: not a bcrypt hash (see `promfed hash-password`)"
                ));
            }
        }
        problems
    }
}

/// Checks clients' credentials.
pub struct Authenticator {
    tokens: Vec<Secret>,
    users: BTreeMap<String, Secret>,
    /// Credentials that passed bcrypt, so that a client's every request
    /// does not pay for it again (bounded).
    verified: Mutex<HashSet<(String, Secret)>>,
    /// Bounds the bcrypt checks run at once, so that a flood of wrong
    /// passwords cannot take every core.
    bcrypt_slots: tokio::sync::Semaphore,
    /// Checks waiting for a slot.
    bcrypt_waiting: std::sync::atomic::AtomicUsize,
    /// One permit: checks of suspect attempts queue here first.
    suspect_gate: tokio::sync::Semaphore,
    /// A hash of the users' cost that no password matches: unknown users
    /// are checked against it, so that they take as long as known ones.
    dummy_hash: Option<Secret>,
    /// Limits on failed attempts per client and per user.
    throttle: throttle::Throttle,
}

/// Most checks waiting for a bcrypt slot; more are refused with 429.
const MAX_BCRYPT_WAITING: usize = 32;

/// Bcrypt checks run at once: a quarter of the cores, at least one (each
/// takes a core for a quarter second at cost 12; queries need the rest).
fn bcrypt_slots() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 4).max(1))
}

/// What a request's credentials are worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied,
    /// Refused unchecked: too many failures of this client or user, or too
    /// many checks waiting (`busy`).
    Throttled(&'static str),
}

/// Most verified basic-auth credentials remembered.
const VERIFIED_CACHE: usize = 256;

impl std::hash::Hash for Secret {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl Authenticator {
    /// Reads the token files of `cfg`.
    pub fn load(cfg: &AuthConfig) -> Result<Self, AuthError> {
        let mut tokens = Vec::new();
        for path in &cfg.bearer_token_files {
            let t = std::fs::read_to_string(path)
                .map_err(|e| format!("reading auth bearer token file {}: {e}", path.display()))?;
            let t = t.trim();
            if t.is_empty() {
                return Err(format!("auth bearer token file {} is empty", path.display()).into());
            }
            tokens.push(Secret::new(t));
        }
        // The dummy hash has the highest cost among the users' hashes.
        let cost = cfg
            .basic_auth_users
            .values()
            .filter_map(|h| h.expose().parse::<bcrypt::HashParts>().ok())
            .map(|p| p.get_cost())
            .max();
        let dummy_hash = match cost {
            Some(cost) => {
                use rand::RngCore;
                let mut password = [0u8; 24];
                rand::thread_rng().fill_bytes(&mut password);
                Some(Secret::new(hash_password(&base64_encode(&password), cost)?))
            }
            None => None,
        };
        Ok(Authenticator {
            tokens,
            users: cfg.basic_auth_users.clone(),
            verified: Mutex::new(HashSet::new()),
            bcrypt_slots: tokio::sync::Semaphore::new(bcrypt_slots()),
            bcrypt_waiting: std::sync::atomic::AtomicUsize::new(0),
            suspect_gate: tokio::sync::Semaphore::new(1),
            dummy_hash,
            throttle: throttle::Throttle::new(cfg.failed_login_burst, cfg.failed_logins_per_minute),
        })
    }

    /// True when `headers` carry valid credentials.
    pub async fn allows(&self, headers: &HeaderMap) -> bool {
        self.check(headers, None).await == Verdict::Allowed
    }

    /// What the credentials in `headers`, sent from `client`, are worth.
    pub async fn check(&self, headers: &HeaderMap, client: Option<IpAddr>) -> Verdict {
        let denied = |ok: bool| {
            if ok {
                Verdict::Allowed
            } else {
                Verdict::Denied
            }
        };
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Verdict::Denied;
        };
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            // Check every token so the time does not tell which one matched.
            return denied(self.tokens.iter().fold(false, |ok, t| {
                ok | constant_time_eq(t.expose().as_bytes(), rest.as_bytes())
            }));
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return Verdict::Denied;
        }
        let Some((user, password)) = decode_basic(rest) else {
            return Verdict::Denied;
        };
        let key = (user, Secret::new(password));
        if self.verified.lock().is_ok_and(|v| v.contains(&key)) {
            return Verdict::Allowed;
        }
        let clean = match self.throttle.begin(client, &key.0) {
            Ok(clean) => clean,
            Err(t) => return Verdict::Throttled(t.as_str()),
        };
        // An unknown user is checked against the dummy hash: the same work,
        // the same time, always refused.
        let known = self.users.get(&key.0);
        let Some(hash) = known.or(self.dummy_hash.as_ref()).cloned() else {
            return Verdict::Denied;
        };
        let password = key.1.clone();
        let ok = {
            use std::sync::atomic::Ordering;
            let waiting = self.bcrypt_waiting.fetch_add(1, Ordering::AcqRel);
            let slot = if waiting >= MAX_BCRYPT_WAITING {
                None
            } else {
                // Attempts of clients or users with recent failures line up
                // one at a time before the slots: a clean login waits for
                // at most one of them.
                let _suspect = match clean {
                    true => None,
                    false => self.suspect_gate.acquire().await.ok(),
                };
                self.bcrypt_slots.acquire().await.ok()
            };
            self.bcrypt_waiting.fetch_sub(1, Ordering::AcqRel);
            let Some(_slot) = slot else {
                return Verdict::Throttled("busy");
            };
            tokio::task::spawn_blocking(move || {
                bcrypt::verify(password.expose(), hash.expose()).unwrap_or(false)
            })
            .await
            .unwrap_or(false)
        } && known.is_some();
        if ok {
            self.throttle.succeeded(client, &key.0);
            if let Ok(mut v) = self.verified.lock() {
                if v.len() >= VERIFIED_CACHE {
                    v.clear();
                }
                v.insert(key);
            }
        }
        denied(ok)
    }
}

/// Decodes a basic-auth `user:password` from base64.
fn decode_basic(b64: &str) -> Option<(String, String)> {
    let bytes = base64_decode(b64)?;
    let text = String::from_utf8(bytes).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Decodes basic-auth credentials into the `user:password` text and the
/// password (to redact them from what a backend echoes).
pub fn decode_basic_pair(b64: &str) -> Option<(String, String)> {
    let text = String::from_utf8(base64_decode(b64)?).ok()?;
    let password = text.split_once(':')?.1.to_string();
    Some((text, password))
}

/// Standard base64, padding optional (trailing `=` ignored, as before).
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Standard base64 (with or without padding).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    BASE64_LENIENT.decode(s.trim_end_matches('=')).ok()
}

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Paths served without credentials (Kubernetes probes).
fn is_open(path: &str) -> bool {
    matches!(path, "/-/healthy" | "/-/ready")
}

/// Middleware: refuses requests without valid credentials with 401, and
/// with 429 while their client or user has failed too often.
pub async fn require(State(auth): State<Arc<Authenticator>>, req: Request, next: Next) -> Response {
    if is_open(req.uri().path()) {
        return next.run(req).await;
    }
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    match auth.check(req.headers(), client).await {
        Verdict::Allowed => return next.run(req).await,
        Verdict::Denied => {}
        Verdict::Throttled(why) => {
            crate::telemetry::auth_throttled(why);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, HeaderValue::from_static("10"))],
                "Too Many Requests: too many failed logins; try again later\n",
            )
                .into_response();
        }
    }
    crate::telemetry::auth_refused();
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"promfed\", Bearer"),
        )],
        "Unauthorized\n",
    )
        .into_response()
}

/// Wraps `router` so that every request must authenticate, when `cfg` is set.
pub fn protect(router: axum::Router, cfg: Option<&AuthConfig>) -> Result<axum::Router, AuthError> {
    match cfg {
        None => Ok(router),
        Some(cfg) => {
            let auth = Arc::new(Authenticator::load(cfg)?);
            Ok(router.layer(axum::middleware::from_fn_with_state(auth, require)))
        }
    }
}

/// `backends[].basic_auth`: credentials promfed sends to a backend.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// The user name sent.
    pub username: String,
    /// The password inline (prefer `password_file`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// A file holding the password (surrounding whitespace ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// The `Authorization` header for a backend, from its bearer-token file or
/// basic auth; marked sensitive so it is never logged.
pub fn backend_authorization(
    bearer_token_file: Option<&PathBuf>,
    basic: Option<&BasicAuthConfig>,
) -> Result<Option<HeaderValue>, AuthError> {
    let value = if let Some(path) = bearer_token_file {
        let t = std::fs::read_to_string(path)
            .map_err(|e| format!("reading bearer_token_file {}: {e}", path.display()))?;
        let t = t.trim();
        if t.is_empty() {
            return Err(format!("bearer_token_file {} is empty", path.display()).into());
        }
        format!("Bearer {t}")
    } else if let Some(b) = basic {
        let password = match (&b.password, &b.password_file) {
            (Some(p), _) => p.expose().to_string(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("reading basic_auth.password_file {}: {e}", path.display()))?
                .trim()
                .to_string(),
            (None, None) => String::new(),
        };
        format!(
            "Basic {}",
            base64_encode(format!("{}:{password}", b.username).as_bytes())
        )
    } else {
        return Ok(None);
    };
    let mut v = HeaderValue::from_str(&value)
        .map_err(|_| "backend credentials hold characters not allowed in a header".to_string())?;
    v.set_sensitive(true);
    Ok(Some(v))
}

/// Problems with a backend's auth settings, prefixed by `at`.
pub fn validate_backend(
    at: &str,
    bearer_token_file: Option<&PathBuf>,
    basic: Option<&BasicAuthConfig>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if bearer_token_file.is_some() && basic.is_some() {
        problems.push(format!(
            "{at}: bearer_token_file and basic_auth cannot both be set"
        ));
    }
    if let Some(b) = basic {
        if b.password.is_some() && b.password_file.is_some() {
            problems.push(format!(
                "{at}.basic_auth: password and password_file cannot both be set"
            ));
        }
        if b.username.is_empty() || b.username.contains(':') {
            problems.push(format!("{at}.basic_auth.username: not a valid user name"));
        }
    }
    problems
}

/// A bcrypt hash of `password` at `cost` (for `promfed hash-password`).
pub fn hash_password(password: &str, cost: u32) -> Result<String, AuthError> {
    use rand::RngCore;
    let mut salt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    bcrypt::hash_with_salt(password, cost, salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError(format!("hashing: {e}")))
}

/// Credentials that cannot be loaded or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

impl From<String> for AuthError {
    fn from(message: String) -> Self {
        AuthError(message)
    }
}

#[cfg(test)]
mod tests;
