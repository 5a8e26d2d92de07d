//! Authentication: of clients calling promfed (bearer tokens from files,
//! basic auth against bcrypt hashes) and of promfed calling its backends
//! (bearer-token file, basic auth). Secrets are held in [`Secret`], whose
//! `Debug` never shows them.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

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

/// Byte equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `auth:`: what clients must send. Either kind of credential is accepted.
/// `/-/healthy` and `/-/ready` stay open for probes.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
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
}

/// Most bcrypt checks run at once.
const BCRYPT_SLOTS: usize = 2;

/// Most verified basic-auth credentials remembered.
const VERIFIED_CACHE: usize = 256;

impl std::hash::Hash for Secret {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl Authenticator {
    /// Reads the token files of `cfg`.
    pub fn load(cfg: &AuthConfig) -> Result<Self, String> {
        let mut tokens = Vec::new();
        for path in &cfg.bearer_token_files {
            let t = std::fs::read_to_string(path)
                .map_err(|e| format!("reading auth bearer token file {}: {e}", path.display()))?;
            let t = t.trim();
            if t.is_empty() {
                return Err(format!(
                    "auth bearer token file {} is empty",
                    path.display()
                ));
            }
            tokens.push(Secret::new(t));
        }
        Ok(Authenticator {
            tokens,
            users: cfg.basic_auth_users.clone(),
            verified: Mutex::new(HashSet::new()),
            bcrypt_slots: tokio::sync::Semaphore::new(BCRYPT_SLOTS),
        })
    }

    /// True when `headers` carry valid credentials.
    pub async fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            // Check every token so the time does not tell which one matched.
            return self.tokens.iter().fold(false, |ok, t| {
                ok | constant_time_eq(t.expose().as_bytes(), rest.as_bytes())
            });
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        let Some((user, password)) = decode_basic(rest) else {
            return false;
        };
        let Some(hash) = self.users.get(&user) else {
            return false;
        };
        let key = (user, Secret::new(password));
        if self.verified.lock().is_ok_and(|v| v.contains(&key)) {
            return true;
        }
        let hash = hash.clone();
        let password = key.1.clone();
        let Ok(_slot) = self.bcrypt_slots.acquire().await else {
            return false;
        };
        let ok = tokio::task::spawn_blocking(move || {
            bcrypt::verify(password.expose(), hash.expose()).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if ok {
            if let Ok(mut v) = self.verified.lock() {
                if v.len() >= VERIFIED_CACHE {
                    v.clear();
                }
                v.insert(key);
            }
        }
        ok
    }
}

/// Decodes a basic-auth `user:password` from base64.
fn decode_basic(b64: &str) -> Option<(String, String)> {
    let bytes = base64_decode(b64)?;
    let text = String::from_utf8(bytes).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Standard base64 (with or without padding).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Paths served without credentials (Kubernetes probes).
fn is_open(path: &str) -> bool {
    matches!(path, "/-/healthy" | "/-/ready")
}

/// Middleware: refuses requests without valid credentials with 401.
pub async fn require(State(auth): State<Arc<Authenticator>>, req: Request, next: Next) -> Response {
    if is_open(req.uri().path()) || auth.allows(req.headers()).await {
        return next.run(req).await;
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
pub fn protect(router: axum::Router, cfg: Option<&AuthConfig>) -> Result<axum::Router, String> {
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
) -> Result<Option<HeaderValue>, String> {
    let value = if let Some(path) = bearer_token_file {
        let t = std::fs::read_to_string(path)
            .map_err(|e| format!("reading bearer_token_file {}: {e}", path.display()))?;
        let t = t.trim();
        if t.is_empty() {
            return Err(format!("bearer_token_file {} is empty", path.display()));
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
pub fn hash_password(password: &str, cost: u32) -> Result<String, String> {
    use rand::RngCore;
    let mut salt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    bcrypt::hash_with_salt(password, cost, salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in ["", "a", "ab", "abc", "abcd", "user:pässword", "x:y:z"] {
            assert_eq!(
                base64_decode(&base64_encode(s.as_bytes())).as_deref(),
                Some(s.as_bytes()),
                "{s}"
            );
        }
        assert_eq!(
            base64_encode(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert!(base64_decode("not base64!").is_none());
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let cfg: BasicAuthConfig =
            serde_yaml_ng::from_str("username: u\npassword: hunter2\n").expect("parses");
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("<secret>"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn bearer_and_basic_credentials() {
        let dir = std::env::temp_dir().join(format!("promfed-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let token = dir.join("token");
        std::fs::write(&token, "s3cret-token\n").expect("write");
        let hash = bcrypt::hash_with_salt("pw", 4, [7u8; 16])
            .expect("hash")
            .to_string();
        let cfg = AuthConfig {
            bearer_token_files: vec![token],
            basic_auth_users: [("grafana".to_string(), Secret::new(hash))].into(),
        };
        assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
        let a = Authenticator::load(&cfg).expect("load");
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(v).expect("header"),
            );
            m
        };
        assert!(a.allows(&h("Bearer s3cret-token")).await);
        assert!(!a.allows(&h("Bearer s3cret-tokeN")).await);
        assert!(!a.allows(&h("Bearer ")).await);
        let basic = |u: &str, p: &str| {
            h(&format!(
                "Basic {}",
                base64_encode(format!("{u}:{p}").as_bytes())
            ))
        };
        assert!(a.allows(&basic("grafana", "pw")).await);
        // A second time comes from the cache, and still only for the right password.
        assert!(a.allows(&basic("grafana", "pw")).await);
        assert!(!a.allows(&basic("grafana", "pw2")).await);
        assert!(!a.allows(&basic("nobody", "pw")).await);
        assert!(!a.allows(&HeaderMap::new()).await);
        assert!(!a.allows(&h("Digest abc")).await);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_hashes_are_refused() {
        let cfg = AuthConfig {
            bearer_token_files: vec![],
            basic_auth_users: [("u".to_string(), Secret::new("plaintext"))].into(),
        };
        assert_eq!(cfg.validate().len(), 1, "{:?}", cfg.validate());
    }
}
