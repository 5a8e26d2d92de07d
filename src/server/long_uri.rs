//! Request lines longer than the HTTP stack takes. hyper parses the
//! request target into an `http::Uri`, which holds at most 65,534 bytes:
//! longer, hyper answers a bare `414 URI Too Long`. Prometheus (Go) takes
//! GET queries up to its 1 MB header limit, and promfed takes POST bodies
//! up to `limits.max_body_bytes`. So a connection's bytes pass through
//! [`LongUri`]: when a request line is longer than the URI limit, it holds
//! the request's head, hands hyper the same request without the query
//! string and passes the query string to the request as a
//! [`LongTarget::Query`] extension, read with the other parameters. A
//! target longer than `limits.max_body_bytes` at start (or a method other
//! than GET and HEAD, or a path over 8 KiB) becomes
//! [`LongTarget::TooLong`]: a Prometheus-format 400 and the connection
//! closed, never the bare 414.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Bytes;
use tokio::io::{AsyncRead, ReadBuf};

pub use crate::api::params::LongTarget;

/// The longest request target the HTTP stack parses (`http::Uri`).
pub const MAX_URI: usize = 65_534;
/// Room for the method and the version around the target.
const LINE_SLACK: usize = 32;
/// The longest path kept when the target is rewritten.
const MAX_PATH: usize = 8192;
/// The longest header block after a long request line.
const MAX_HEADERS: usize = 64 << 10;
/// Bytes read from the connection at once while a head is held.
const READ_CHUNK: usize = 16 << 10;

/// Where the adapter is in the current request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// At a request's first bytes: reading its request line.
    Line,
    /// The line is too long: holding the head until its end.
    Head,
    /// Passing bytes through until the next request starts.
    Pass,
    /// HTTP/2: nothing to do.
    H2,
    /// A head over every limit was answered: input is dropped.
    Discard,
}

/// A connection's IO whose long request lines are taken apart (see the
/// module's doc). `new_request` tells whether the next bytes start a
/// request (the connection is idle between requests).
pub struct LongUri<T> {
    inner: T,
    phase: Phase,
    /// Bytes held while the request line is read.
    held: Vec<u8>,
    /// How far `held` was searched for the end of the line or head.
    searched: usize,
    /// Bytes to hand on before reading more.
    out: Vec<u8>,
    out_pos: usize,
    max_target: usize,
    handoff: Arc<Mutex<Option<LongTarget>>>,
    new_request: Box<dyn Fn() -> bool + Send + Sync>,
}

impl<T> LongUri<T> {
    /// `inner` with targets up to `max_target` bytes taken; what a
    /// rewritten request lost is left in `handoff` for its service.
    pub fn new(
        inner: T,
        max_target: usize,
        handoff: Arc<Mutex<Option<LongTarget>>>,
        new_request: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Self {
        LongUri {
            inner,
            phase: Phase::Line,
            held: Vec::new(),
            searched: 0,
            out: Vec::new(),
            out_pos: 0,
            max_target: max_target.max(MAX_URI),
            handoff,
            new_request: Box::new(new_request),
        }
    }

    fn hand_on(&mut self, bytes: Vec<u8>) {
        self.out = bytes;
        self.out_pos = 0;
    }

    fn give(&mut self, target: LongTarget) {
        if let Ok(mut h) = self.handoff.lock() {
            *h = Some(target);
        }
    }

    /// Looks at what is held: decides the phase, and what to hand on.
    fn examine(&mut self) {
        match self.phase {
            Phase::Line => {
                let from = self.searched;
                match find(&self.held[from..], b"\n") {
                    Some(i) => {
                        let line = &self.held[..from + i];
                        if line.starts_with(b"PRI * HTTP/2") {
                            self.phase = Phase::H2;
                        } else if line.len() <= MAX_URI + LINE_SLACK {
                            self.phase = Phase::Pass;
                        } else {
                            self.phase = Phase::Head;
                            self.searched = 0;
                            return self.examine();
                        }
                        let held = std::mem::take(&mut self.held);
                        self.hand_on(held);
                        self.searched = 0;
                    }
                    None if self.held.len() > MAX_URI + LINE_SLACK => {
                        self.phase = Phase::Head;
                        self.searched = 0;
                        self.examine();
                    }
                    None => self.searched = self.held.len(),
                }
            }
            Phase::Head => {
                let from = self.searched.saturating_sub(3);
                match find(&self.held[from..], b"\r\n\r\n") {
                    Some(i) => {
                        let end = from + i + 4;
                        let rest = self.held.split_off(end);
                        let head = std::mem::take(&mut self.held);
                        let mut bytes = self.rewrite(&head);
                        bytes.extend_from_slice(&rest);
                        self.hand_on(bytes);
                        self.phase = Phase::Pass;
                        self.searched = 0;
                    }
                    None if self.held.len() > self.max_target + LINE_SLACK + MAX_HEADERS => {
                        let len = self.held.len();
                        self.held = Vec::new();
                        self.give(LongTarget::TooLong {
                            len,
                            max: self.max_target,
                        });
                        self.hand_on(stand_in(b"/"));
                        self.phase = Phase::Discard;
                    }
                    None => self.searched = self.held.len(),
                }
            }
            Phase::Pass | Phase::H2 | Phase::Discard => {}
        }
    }

    /// The request of `head` (a whole head, request line too long) as
    /// hyper can take it: its path, its query string handed off.
    fn rewrite(&mut self, head: &[u8]) -> Vec<u8> {
        let line_end = find(head, b"\n").unwrap_or(head.len());
        let line = head[..line_end]
            .strip_suffix(b"\r")
            .unwrap_or(&head[..line_end]);
        let method_end = find(line, b" ").unwrap_or(0);
        let version_start = line.iter().rposition(|&b| b == b' ').unwrap_or(0);
        let method = &line[..method_end];
        let target = line.get(method_end + 1..version_start).unwrap_or(b"");
        let (path, query) = match find(target, b"?") {
            Some(q) => (&target[..q], &target[q + 1..]),
            None => (target, &b""[..]),
        };
        let too_long = target.len() > self.max_target
            || path.len() > MAX_PATH
            || !(method == b"GET" || method == b"HEAD");
        if too_long {
            self.give(LongTarget::TooLong {
                len: target.len(),
                max: self.max_target,
            });
            let path = if path.len() <= MAX_PATH { path } else { b"/" };
            // The rest of the request is not read: close after answering.
            self.phase = Phase::Discard;
            return stand_in(path);
        }
        self.give(LongTarget::Query(Bytes::copy_from_slice(query)));
        let mut out = Vec::with_capacity(head.len() - query.len());
        out.extend_from_slice(method);
        out.push(b' ');
        out.extend_from_slice(path);
        out.extend_from_slice(&line[version_start..]);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&head[(line_end + 1).min(head.len())..]);
        out
    }
}

/// A GET of `path` that closes its connection: what hyper is given for a
/// request whose head is not read whole.
fn stand_in(path: &[u8]) -> Vec<u8> {
    let mut out = b"GET ".to_vec();
    out.extend_from_slice(if path.starts_with(b"/") { path } else { b"/" });
    out.extend_from_slice(b" HTTP/1.1\r\nconnection: close\r\n\r\n");
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl<T: AsyncRead + Unpin> AsyncRead for LongUri<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = &mut *self;
        loop {
            if me.out_pos < me.out.len() {
                let n = buf.remaining().min(me.out.len() - me.out_pos);
                buf.put_slice(&me.out[me.out_pos..me.out_pos + n]);
                me.out_pos += n;
                if me.out_pos == me.out.len() {
                    me.out = Vec::new();
                    me.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if me.phase == Phase::Pass && (me.new_request)() {
                me.phase = Phase::Line;
            }
            match me.phase {
                Phase::Pass | Phase::H2 => return Pin::new(&mut me.inner).poll_read(cx, buf),
                Phase::Line | Phase::Head | Phase::Discard => {
                    let mut chunk = [0u8; READ_CHUNK];
                    let mut rb = ReadBuf::new(&mut chunk);
                    match Pin::new(&mut me.inner).poll_read(cx, &mut rb) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                            // End of input: hand on whatever is held.
                            if me.held.is_empty() {
                                return Poll::Ready(Ok(()));
                            }
                            let held = std::mem::take(&mut me.held);
                            me.hand_on(held);
                            me.phase = Phase::Pass;
                        }
                        Poll::Ready(Ok(())) => {
                            if me.phase != Phase::Discard {
                                me.held.extend_from_slice(rb.filled());
                                me.examine();
                            }
                        }
                    }
                }
            }
        }
    }
}

super::write_through::write_through!(LongUri);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn through(input: Vec<u8>, max_target: usize) -> (Vec<u8>, Option<LongTarget>) {
        let handoff = Arc::new(Mutex::new(None));
        let mut io = LongUri::new(&input[..], max_target, handoff.clone(), || false);
        let mut out = Vec::new();
        io.read_to_end(&mut out).await.expect("read");
        let h = handoff.lock().expect("lock").take();
        (out, h)
    }

    #[tokio::test]
    async fn short_requests_pass_unchanged() {
        let req = b"GET /api/v1/query?query=up HTTP/1.1\r\nhost: x\r\n\r\n".to_vec();
        let (out, h) = through(req.clone(), 1 << 20).await;
        assert_eq!(out, req);
        assert!(h.is_none());
    }

    #[tokio::test]
    async fn a_long_query_string_is_handed_off() {
        let q = format!("query={}", "a".repeat(100_000));
        let req = format!("GET /api/v1/query?{q} HTTP/1.1\r\nhost: x\r\n\r\nNEXT");
        let (out, h) = through(req.into_bytes(), 1 << 20).await;
        assert_eq!(out, b"GET /api/v1/query HTTP/1.1\r\nhost: x\r\n\r\nNEXT");
        match h {
            Some(LongTarget::Query(b)) => assert_eq!(b, q.as_bytes()),
            _ => panic!("no query handed off"),
        }
    }

    #[tokio::test]
    async fn a_target_over_the_limit_is_refused_not_read() {
        let req = format!(
            "GET /api/v1/query?query={} HTTP/1.1\r\n\r\n",
            "a".repeat(300_000)
        );
        let (out, h) = through(req.into_bytes(), 100_000).await;
        assert!(out.starts_with(b"GET / HTTP/1.1\r\nconnection: close"));
        assert!(matches!(h, Some(LongTarget::TooLong { max: 100_000, .. })));
    }
}
