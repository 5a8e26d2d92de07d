//! Guards one backend against promfed and promfed against it: a cap on the
//! requests (so connections) in flight to it, and redaction of the
//! credentials promfed sends it from anything it answers.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::Semaphore;

use super::{ApiData, MetaOutput, MetaQuery, Select, SelectOutput, Source, SourceError};
use crate::model::Labels;

/// Longest backend text (error message or warning) passed on, bytes.
pub const MAX_BACKEND_TEXT: usize = 512;

/// What replaces a secret in backend text.
const REDACTED: &str = "<redacted>";

/// Removes known secrets from text a backend sent and bounds its length.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so that a secret containing another is replaced whole.
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    /// A redactor of `secrets` (short ones, under 4 bytes, are ignored:
    /// replacing them would mangle ordinary text and hides nothing).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 4).collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// The secrets of an `Authorization` header value: the value, its
    /// credentials part and, for basic auth, the decoded `user:password`
    /// and password.
    pub fn for_authorization(value: &str) -> Self {
        let mut secrets = vec![value.to_string()];
        if let Some((scheme, rest)) = value.split_once(' ') {
            let rest = rest.trim();
            secrets.push(rest.to_string());
            if scheme.eq_ignore_ascii_case("basic") {
                if let Some((user_pass, password)) = crate::auth::decode_basic_pair(rest) {
                    secrets.push(user_pass);
                    secrets.push(password);
                }
            }
        }
        Redactor::new(secrets)
    }

    /// `text` without any secret, cut to [`MAX_BACKEND_TEXT`] bytes.
    pub fn clean(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
            // A quote cut inside a secret ends with its beginning.
            if let Some(n) = (6..s.len())
                .rev()
                .find(|&n| s.is_char_boundary(n) && out.ends_with(&s[..n]))
            {
                out.truncate(out.len() - n);
                out.push_str(REDACTED);
            }
        }
        truncate(out, MAX_BACKEND_TEXT)
    }

    fn clean_error(&self, e: SourceError) -> SourceError {
        match e {
            SourceError::Backend { backend, message } => SourceError::Backend {
                backend,
                message: self.clean(&message),
            },
            SourceError::BadSelect(m) => SourceError::BadSelect(self.clean(&m)),
            SourceError::Limit(m) => SourceError::Limit(self.clean(&m)),
            e @ SourceError::Timeout { .. } => e,
        }
    }

    fn clean_all(&self, warnings: Vec<String>) -> Vec<String> {
        warnings.iter().map(|w| self.clean(w)).collect()
    }

    /// Every string inside `v`, cleaned (for API answers passed on whole).
    fn clean_json(&self, v: &mut serde_json::Value) {
        if self.secrets.is_empty() {
            return;
        }
        match v {
            serde_json::Value::String(s) if self.secrets.iter().any(|x| s.contains(x.as_str())) => {
                let mut t = s.clone();
                for x in &self.secrets {
                    t = t.replace(x.as_str(), REDACTED);
                }
                *s = t;
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| self.clean_json(x)),
            serde_json::Value::Object(m) => m.values_mut().for_each(|x| self.clean_json(x)),
            _ => {}
        }
    }
}

/// `s` cut to at most `max` bytes on a character boundary, marked when cut.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str("… (truncated)");
    s
}

/// A backend's source behind its connection cap and redactor.
pub struct Guarded {
    pub inner: Arc<dyn Source>,
    /// One permit per request in flight to the backend.
    pub gate: Arc<Semaphore>,
    /// Most of the gate's permits one query may hold at once.
    pub per_query: usize,
    pub redactor: Redactor,
}

impl Guarded {
    pub fn new(inner: Arc<dyn Source>, max_connections: usize, redactor: Redactor) -> Self {
        Guarded {
            inner,
            gate: Arc::new(Semaphore::new(max_connections.max(1))),
            per_query: crate::limits::shares::share_of(max_connections),
            redactor,
        }
    }

    /// Runs `fut` once a connection slot is free, and cleans its answer.
    async fn gated<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, SourceError>>,
        clean: impl FnOnce(&Redactor, T) -> T,
    ) -> Result<T, SourceError> {
        // A query first waits for its own share, so that at most that many
        // of its requests stand in the backend's line at once.
        let share = crate::limits::current()
            .map(|ctx| ctx.backend_shares.for_gate(&self.gate, self.per_query));
        let _share = match &share {
            Some(s) => s.acquire().await.ok(),
            None => None,
        };
        // The semaphores are never closed; if they were, run unguarded.
        let _permit = self.gate.acquire().await.ok();
        match fut.await {
            Ok(v) => Ok(clean(&self.redactor, v)),
            Err(e) => Err(self.redactor.clean_error(e)),
        }
    }
}

fn clean_meta<T>(r: &Redactor, mut out: MetaOutput<T>) -> MetaOutput<T> {
    out.warnings = r.clean_all(std::mem::take(&mut out.warnings));
    out
}

fn clean_select(r: &Redactor, mut out: SelectOutput) -> SelectOutput {
    out.warnings = r.clean_all(std::mem::take(&mut out.warnings));
    out
}

impl Source for Guarded {
    fn select<'a>(&'a self, sel: &'a Select) -> BoxFuture<'a, Result<SelectOutput, SourceError>> {
        Box::pin(self.gated(self.inner.select(sel), clean_select))
    }

    /// Each request the inner source makes (a batch of at most its
    /// `batch_limit` selects; one select for sources that do not batch)
    /// takes one connection slot, as a single select does.
    fn select_many<'a>(
        &'a self,
        sels: &'a [Select],
    ) -> BoxFuture<'a, Vec<Result<SelectOutput, SourceError>>> {
        let size = self.inner.batch_limit().max(1);
        Box::pin(async move {
            let batches = sels.chunks(size).map(|batch| async move {
                let outs = self
                    .gated(
                        async { Ok(self.inner.select_many(batch).await) },
                        |_, outs| outs,
                    )
                    .await
                    .unwrap_or_else(|e| batch.iter().map(|_| Err(e.clone())).collect());
                outs.into_iter()
                    .map(|out| match out {
                        Ok(out) => Ok(clean_select(&self.redactor, out)),
                        Err(e) => Err(self.redactor.clean_error(e)),
                    })
                    .collect::<Vec<_>>()
            });
            futures::future::join_all(batches)
                .await
                .into_iter()
                .flatten()
                .collect()
        })
    }

    fn batch_limit(&self) -> usize {
        self.inner.batch_limit()
    }

    fn series<'a>(
        &'a self,
        q: &'a MetaQuery,
    ) -> BoxFuture<'a, Result<MetaOutput<Labels>, SourceError>> {
        Box::pin(self.gated(self.inner.series(q), clean_meta))
    }

    fn label_names<'a>(
        &'a self,
        q: &'a MetaQuery,
    ) -> BoxFuture<'a, Result<MetaOutput<String>, SourceError>> {
        Box::pin(self.gated(self.inner.label_names(q), clean_meta))
    }

    fn label_values<'a>(
        &'a self,
        name: &'a str,
        q: &'a MetaQuery,
    ) -> BoxFuture<'a, Result<MetaOutput<String>, SourceError>> {
        Box::pin(self.gated(self.inner.label_values(name, q), clean_meta))
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), SourceError>> {
        Box::pin(self.gated(self.inner.probe(), |_, v| v))
    }

    fn store_info(&self) -> Option<super::StoreInfo> {
        self.inner.store_info()
    }

    fn api_get<'a>(
        &'a self,
        path: &'a str,
        params: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<Option<ApiData>, SourceError>> {
        Box::pin(
            self.gated(self.inner.api_get(path, params), |r, d: Option<ApiData>| {
                d.map(|mut d| {
                    r.clean_json(&mut d.data);
                    d.warnings = r.clean_all(std::mem::take(&mut d.warnings));
                    d.infos = r.clean_all(std::mem::take(&mut d.infos));
                    d
                })
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_secrets_are_redacted_in_every_form() {
        let header = format!(
            "Basic {}",
            crate::auth::base64_encode(b"promfed:hunter2-pass")
        );
        let r = Redactor::for_authorization(&header);
        let echoed = format!(
            "bad request: Authorization: {header}; creds promfed:hunter2-pass; pw hunter2-pass"
        );
        let clean = r.clean(&echoed);
        assert!(!clean.contains("hunter2"), "{clean}");
        assert!(!clean.contains(&header[6..]), "{clean}");
        assert!(clean.contains("<redacted>"), "{clean}");
    }

    #[test]
    fn bearer_tokens_are_redacted_and_long_text_cut() {
        let r = Redactor::for_authorization("Bearer tok-123456");
        let clean = r.clean(&format!("{}tok-123456", "x".repeat(2000)));
        assert!(!clean.contains("tok-123456"));
        assert!(clean.len() <= MAX_BACKEND_TEXT + 20, "{}", clean.len());
        assert_eq!(truncate("héllo".into(), 2), "h… (truncated)");
        // A quote cut inside the token keeps none of it.
        assert_eq!(r.clean("token: tok-1234"), "token: <redacted>");
    }
}
