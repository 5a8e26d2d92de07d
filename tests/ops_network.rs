//! The network side of hostile load, against the real binary: backends are
//! protected from promfed (few pooled connections, metadata by POST),
//! backend bodies are capped, metadata requests are admitted and bounded,
//! silent client connections cannot starve probes and queries, failed
//! logins are throttled, and no credential promfed sends ever comes back.
//!
//! Backends here are loopback servers whose behaviour the test controls
//! (counting connections, streaming gigabytes, echoing requests), because
//! no real Prometheus can be made to misbehave that way.

mod ops_support;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ops_support::{http_answer, json, AppBackend, Promfed, RawBackend, Respond};
use prost::Message;

/// The tests of this file run one at a time: they measure peak memory,
/// count connections and time logins, which tests running beside them
/// would skew.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl AppBackend {
    /// Established connections to this backend now (its side, from `ss`).
    fn open_connections(&self) -> usize {
        established(self.addr.port())
    }
}

/// Established TCP connections whose local port is `port` (from `ss`).
fn established(port: u16) -> usize {
    let out = std::process::Command::new("ss")
        .args(["-Htn", "state", "established"])
        .arg(format!("( sport = :{port} )"))
        .output()
        .expect("run ss");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// A field of `/proc/<pid>/status` in kB (`VmHWM`: peak resident memory).
fn status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in status"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .expect("client")
}

/// An empty SAMPLES remote-read answer to the `ReadRequest` in `body`:
/// one result, without series, per query it asks.
fn empty_read_response(body: &[u8]) -> Vec<u8> {
    use promfed::source::remote_read::prompb;
    let queries = snap::raw::Decoder::new()
        .decompress_vec(body)
        .ok()
        .and_then(|raw| prompb::ReadRequest::decode(raw.as_slice()).ok())
        .map_or(1, |r| r.queries.len());
    let r = prompb::ReadResponse {
        results: (0..queries)
            .map(|_| prompb::QueryResult { timeseries: vec![] })
            .collect(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&r.encode_to_vec())
        .expect("snappy")
}

/// Counts requests in flight and their peak.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    peak: AtomicUsize,
    total: AtomicUsize,
}

impl InFlight {
    fn enter(self: &Arc<Self>) -> impl Drop {
        let n = self.now.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak.fetch_max(n, Ordering::AcqRel);
        self.total.fetch_add(1, Ordering::AcqRel);
        struct Leave(Arc<InFlight>);
        impl Drop for Leave {
            fn drop(&mut self) {
                self.0.now.fetch_sub(1, Ordering::AcqRel);
            }
        }
        Leave(self.clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_or_selectors_use_a_few_pooled_connections_that_close_when_idle() {
    let _serial = SERIAL.lock().await;
    let flight = Arc::new(InFlight::default());
    let app = {
        let flight = flight.clone();
        axum::Router::new().route(
            "/api/v1/read",
            axum::routing::post(move |body: Bytes| {
                let flight = flight.clone();
                async move {
                    let _in = flight.enter();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    (
                        [(header::CONTENT_TYPE, "application/x-protobuf")],
                        empty_read_response(&body),
                    )
                }
            }),
        )
    };
    let b = AppBackend::start(app).await;
    let p = Promfed::start(
        "or-selectors",
        &format!(
            "backends:\n  - name: k8s-1\n    url: {}\n    max_connections: 4\n    idle_connection_timeout: 1s\n",
            b.url()
        ),
    );
    let query = (0..1000)
        .map(|i| format!("m{i}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let r = http()
        .post(p.url("/api/v1/query"))
        .form(&[("query", query.as_str()), ("time", "1000")])
        .send()
        .await
        .expect("send");
    let (status, body) = json(r).await;
    assert_eq!(status, 200, "{body}");
    // 1000 selects, at most 100 to a ReadRequest.
    assert_eq!(
        flight.total.load(Ordering::Acquire),
        10,
        "ten reads of 100 selectors"
    );
    let peak = flight.peak.load(Ordering::Acquire);
    assert!(peak <= 4, "{peak} reads at once, over max_connections 4");
    // At most 4 are kept idle; one on its way out may linger a moment.
    let open = b.open_connections();
    assert!(open <= 5, "{open} connections open, over max_connections 4");
    // Idle pooled connections close after idle_connection_timeout (1 s).
    let until = Instant::now() + Duration::from_secs(5);
    while b.open_connections() > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b.open_connections(), 0, "idle connections still open");
}

/// The `(key, value)` pairs of a request's query string and form body.
fn pairs(uri: &Uri, body: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    out.extend(form_urlencoded::parse(body).into_owned());
    out
}

/// What a metadata backend saw: method, path, `match[]` count, `limit`.
type Seen = Arc<Mutex<Vec<(Method, String, usize, Option<String>)>>>;

/// A backend answering series, labels and label values, recording each
/// request; a `match[]` holding `slow` is answered after 10 s, one holding
/// `big` with `big_series` series.
fn metadata_backend(seen: Seen, flight: Arc<InFlight>, big_series: usize) -> axum::Router {
    let handler = move |method: Method, uri: Uri, body: Bytes| {
        let (seen, flight) = (seen.clone(), flight.clone());
        async move {
            let _in = flight.enter();
            let ps = pairs(&uri, &body);
            let matches: Vec<&String> = ps
                .iter()
                .filter(|(k, _)| k == "match[]")
                .map(|(_, v)| v)
                .collect();
            let limit = ps
                .iter()
                .find(|(k, _)| k == "limit")
                .map(|(_, v)| v.clone());
            if let Ok(mut s) = seen.lock() {
                s.push((method, uri.path().to_string(), matches.len(), limit));
            }
            if matches.iter().any(|m| m.contains("slow")) {
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            let data = if uri.path().ends_with("/series") {
                let n = if matches.iter().any(|m| m.contains("big")) {
                    big_series
                } else {
                    1
                };
                let items: Vec<String> = (0..n)
                    .map(|i| {
                        format!(
                            r#"{{"__name__":"big","instance":"instance-{i:08}.example.org:9100","job":"node"}}"#
                        )
                    })
                    .collect();
                format!("[{}]", items.join(","))
            } else {
                r#"["a","b"]"#.to_string()
            };
            (
                [(header::CONTENT_TYPE, "application/json")],
                format!(r#"{{"status":"success","data":{data}}}"#),
            )
        }
    };
    axum::Router::new()
        .route(
            "/api/v1/series",
            axum::routing::get(handler.clone()).post(handler.clone()),
        )
        .route(
            "/api/v1/labels",
            axum::routing::get(handler.clone()).post(handler.clone()),
        )
        .route("/api/v1/label/{name}/values", axum::routing::get(handler))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_match_parameters_reach_backends_by_post() {
    let _serial = SERIAL.lock().await;
    let seen: Seen = Arc::default();
    let b = AppBackend::start(metadata_backend(seen.clone(), Arc::default(), 1)).await;
    let p = Promfed::start(
        "many-match",
        &format!("backends:\n  - name: k8s-1\n    url: {}\n", b.url()),
    );
    let mut form: Vec<(String, String)> = (0..2000)
        .map(|i| {
            (
                "match[]".to_string(),
                format!("{{__name__=\"a_rather_long_metric_name_{i:05}\",job=\"x\"}}"),
            )
        })
        .collect();
    form.push(("limit".into(), "5".into()));
    for path in [
        "/api/v1/series",
        "/api/v1/labels",
        "/api/v1/label/job/values",
    ] {
        seen.lock().expect("lock").clear();
        let r = http()
            .post(p.url(path))
            .form(&form)
            .send()
            .await
            .expect("send");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        assert_eq!(status, 200, "{path}: {text}");
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 1, "{path}: {seen:?}");
        let (method, _, matches, _) = &seen[0];
        assert_eq!(*method, Method::POST, "{path}");
        assert_eq!(*matches, 2000, "{path}");
    }
    // A few matchers still go by GET, with the request's limit.
    seen.lock().expect("lock").clear();
    let r = http()
        .get(p.url("/api/v1/series"))
        .query(&[("match[]", "up"), ("limit", "5")])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen[0].0, Method::GET);
    assert_eq!(seen[0].3.as_deref(), Some("5"), "limit passed on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_requests_take_admission_slots_and_end_at_the_deadline() {
    let _serial = SERIAL.lock().await;
    let seen: Seen = Arc::default();
    let flight = Arc::new(InFlight::default());
    // About 8 MB of JSON per big answer.
    let b = AppBackend::start(metadata_backend(seen, flight.clone(), 90_000)).await;
    let p = Promfed::start(
        "meta-admission",
        &format!(
            "backends:\n  - name: k8s-1\n    url: {}\nlimits:\n  query_timeout: 2s\n  max_concurrent_queries: 2\n  max_queued_queries: 4\n",
            b.url()
        ),
    );
    let pid = p.child.id();
    let c = http();
    let fire = |selector: &'static str, n: usize| {
        let c = c.clone();
        let url = p.url("/api/v1/series");
        (0..n)
            .map(|_| {
                let (c, url) = (c.clone(), url.clone());
                tokio::spawn(async move {
                    let started = Instant::now();
                    let r = c
                        .get(url)
                        .query(&[("match[]", selector)])
                        .send()
                        .await
                        .expect("send");
                    let status = r.status().as_u16();
                    let _ = r.bytes().await;
                    (status, started.elapsed())
                })
            })
            .collect::<Vec<_>>()
    };
    // A backend that takes 10 s: every request ends by its 2 s deadline.
    for h in fire(r#"{__name__=~"slow.+"}"#, 20) {
        let (status, took) = h.await.expect("join");
        assert_eq!(status, 503, "a slow backend past the deadline");
        assert!(took < Duration::from_secs(4), "answered after {took:?}");
    }
    // Two slots and four places in the queue: the rest were refused at
    // once (a backend goes on sleeping after promfed gives up, so count
    // requests, not those in flight).
    let asked = flight.total.load(Ordering::Acquire);
    assert!(asked <= 6, "{asked} of 20 requests reached the backend");
    // Fast but big answers: memory is bounded by the admission slots.
    let before = status_kb(pid, "VmHWM");
    let mut ok = 0;
    for h in fire(r#"{__name__=~"big.+"}"#, 40) {
        let (status, _) = h.await.expect("join");
        assert!(status == 200 || status == 503, "{status}");
        ok += usize::from(status == 200);
    }
    assert!(ok > 0, "some big answers must get through");
    let peak_mb = status_kb(pid, "VmHWM") / 1024;
    assert!(
        peak_mb < 400,
        "peak RSS {peak_mb} MB (was {} MB before)",
        before / 1024
    );
    let r = c.get(p.url("/-/healthy")).send().await.expect("send");
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_do_not_starve_probes_or_queries() {
    let _serial = SERIAL.lock().await;
    let b = AppBackend::start(axum::Router::new()).await;
    let p = Promfed::start(
        "silent",
        &format!(
            "backends:\n  - name: k8s-1\n    url: {}\nconnections:\n  max_open: 200\n  header_read_timeout: 3s\n",
            b.url()
        ),
    );
    let pid = p.child.id();
    // The process may hold 1024 files: fewer than the connections opened.
    let limited = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg("--nofile=1024:1024")
        .status()
        .expect("run prlimit");
    assert!(limited.success());
    let addr: SocketAddr = p.addr.parse().expect("addr");
    let silent: Vec<std::net::TcpStream> = tokio::task::spawn_blocking(move || {
        // Stops at 2500, or after 10 connects in a row time out (a server
        // that no longer accepts; the backlog is full).
        let mut out = Vec::new();
        let mut failed = 0;
        while out.len() < 2500 && failed < 10 {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => {
                    out.push(s);
                    failed = 0;
                }
                Err(_) => failed += 1,
            }
        }
        out
    })
    .await
    .expect("join");
    assert!(silent.len() > 1024, "only {} connected", silent.len());
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    for i in 0..5 {
        let r = c.get(p.url("/-/healthy")).send().await;
        assert!(
            r.as_ref().is_ok_and(|r| r.status() == StatusCode::OK),
            "healthy #{i} with {} silent connections: {r:?}",
            silent.len()
        );
    }
    let r = c
        .post(p.url("/api/v1/query"))
        .form(&[("query", "1+1"), ("time", "1000")])
        .send()
        .await
        .expect("a query answers");
    assert_eq!(r.status().as_u16(), 200);
    let fds = open_fds(pid);
    assert!(fds < 200 + 100, "{fds} files open, over the cap of 200");
    // Silent connections are closed after header_read_timeout (3 s).
    let port = addr.port();
    let until = Instant::now() + Duration::from_secs(8);
    while established(port) > 5 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left = established(port);
    assert!(left <= 5, "{left} silent connections still open");
    drop(silent);
}

/// A remote-read backend streaming `total` bytes of `content_type`: zeros,
/// or (streamed) frames whose one chunk lies outside any query's range.
fn streaming_backend(content_type: &'static str, total: u64) -> axum::Router {
    axum::Router::new().route(
        "/api/v1/read",
        axum::routing::post(move || async move {
            let piece = if content_type.starts_with("application/x-streamed") {
                use promfed::source::remote_read::prompb;
                let msg = prompb::ChunkedReadResponse {
                    chunked_series: vec![prompb::ChunkedSeries {
                        labels: vec![prompb::Label {
                            name: "__name__".into(),
                            value: "up".into(),
                        }],
                        chunks: vec![prompb::Chunk {
                            min_time_ms: -20_000_000,
                            max_time_ms: -10_000_000,
                            r#type: 1,
                            data: vec![0u8; 60_000].into(),
                        }],
                    }],
                    query_index: 0,
                };
                let mut frame = Vec::new();
                promfed::source::remote_read::frame::encode_frame(&msg.encode_to_vec(), &mut frame);
                Bytes::from(frame.repeat(16))
            } else {
                Bytes::from(vec![0u8; 1 << 20])
            };
            let n = total / piece.len() as u64;
            let stream =
                futures::stream::iter((0..n).map(move |_| Ok::<_, std::io::Error>(piece.clone())));
            Response::builder()
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from_stream(stream))
                .map(IntoResponse::into_response)
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_streaming_gigabytes_are_cut_at_the_byte_cap() {
    let _serial = SERIAL.lock().await;
    const GIB2: u64 = 2 << 30;
    let streamed = "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";
    let backends = [
        AppBackend::start(streaming_backend("application/x-protobuf", GIB2)).await,
        AppBackend::start(streaming_backend("application/x-protobuf", GIB2)).await,
        AppBackend::start(streaming_backend(streamed, GIB2)).await,
    ];
    let mut cfg = String::from("partial_response: warn\nbackends:\n");
    for (i, b) in backends.iter().enumerate() {
        cfg.push_str(&format!(
            "  - name: b{i}\n    url: {}\n    max_response_bytes: 33554432\n",
            b.url()
        ));
    }
    let p = Promfed::start("gigabytes", &cfg);
    let pid = p.child.id();
    let started = Instant::now();
    let r = http()
        .post(p.url("/api/v1/query"))
        .form(&[("query", "up"), ("time", "1000")])
        .send()
        .await
        .expect("send");
    let took = started.elapsed();
    let (status, body) = json(r).await;
    assert_eq!(status, 200, "{body}");
    let warnings = body["warnings"].to_string();
    for i in 0..3 {
        assert!(warnings.contains(&format!("backend b{i}")), "{warnings}");
    }
    assert!(
        warnings.matches("max_response_bytes").count() >= 3,
        "every backend cut at its byte cap: {warnings}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let peak_mb = status_kb(pid, "VmHWM") / 1024;
    assert!(peak_mb < 300, "peak RSS {peak_mb} MB with 32 MiB caps");
    let r = http().get(p.url("/-/healthy")).send().await.expect("alive");
    assert_eq!(r.status().as_u16(), 200);
    drop(p);
    // The same backends under the default byte caps, charged to a query
    // budget of 48 MiB: the budget ends the query, whatever the policy.
    let mut cfg = String::from(
        "partial_response: warn
limits: {max_fetched_bytes: 50331648}
backends:
",
    );
    for (i, b) in backends.iter().enumerate() {
        cfg.push_str(&format!(
            "  - name: b{i}
    url: {}
",
            b.url()
        ));
    }
    let p = Promfed::start("gigabytes-budget", &cfg);
    let r = http()
        .post(p.url("/api/v1/query"))
        .form(&[("query", "up"), ("time", "1000")])
        .send()
        .await
        .expect("send");
    let (status, body) = json(r).await;
    ops_support::assert_error(status, &body, 422, "execution", "limits.max_fetched_bytes");
    let peak_mb = status_kb(p.child.id(), "VmHWM") / 1024;
    assert!(peak_mb < 300, "peak RSS {peak_mb} MB with a 48 MiB budget");
}

/// `Authorization: Basic` of `user:password`.
fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        promfed::auth::base64_encode(format!("{user}:{password}").as_bytes())
    )
}

fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .local_address(IpAddr::from(ip))
        .build()
        .expect("client")
}

async fn login(c: &reqwest::Client, p: &Promfed, user: &str, password: &str) -> (u16, Duration) {
    let started = Instant::now();
    let r = c
        .get(p.url("/api/v1/status/buildinfo"))
        .header(header::AUTHORIZATION, basic(user, password))
        .send()
        .await
        .expect("send");
    (r.status().as_u16(), started.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled_and_unknown_users_take_as_long_as_known_ones() {
    let _serial = SERIAL.lock().await;
    let alice = promfed::auth::hash_password("alice-pw", 11).expect("hash");
    let bob = promfed::auth::hash_password("bob-pw", 11).expect("hash");
    let p = Promfed::start(
        "auth-flood",
        &format!(
            "backends:\n  - name: k8s-1\n    url: http://127.0.0.1:1\nauth:\n  basic_auth_users: {{alice: '{alice}', bob: '{bob}'}}\n  failed_login_burst: 4\n  failed_logins_per_minute: 6\n"
        ),
    );
    // Unknown users cost what known ones do (from clients of their own,
    // within their allowance of failures).
    let (c3, c4) = (client_from([127, 0, 0, 3]), client_from([127, 0, 0, 4]));
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..3 {
        let (s, t) = login(&c3, &p, "bob", "wrong").await;
        assert_eq!(s, 401);
        known.push(t);
        let (s, t) = login(&c4, &p, &format!("nobody{i}"), "wrong").await;
        assert_eq!(s, 401);
        unknown.push(t);
    }
    let (known, unknown) = (median(known), median(unknown));
    assert!(
        unknown * 3 >= known,
        "unknown user answered in {unknown:?}, known in {known:?}"
    );
    // 30 clients guessing passwords from another address.
    let c2 = client_from([127, 0, 0, 2]);
    let refused = Arc::new(AtomicUsize::new(0));
    let attackers: Vec<_> = (0..30)
        .map(|i| {
            let (c2, refused) = (c2.clone(), refused.clone());
            let url = p.url("/api/v1/status/buildinfo");
            tokio::spawn(async move {
                for j in 0..10 {
                    let user = if i % 2 == 0 {
                        "bob".to_string()
                    } else {
                        format!("x{i}-{j}")
                    };
                    let r = c2
                        .get(&url)
                        .header(header::AUTHORIZATION, basic(&user, "guess"))
                        .send()
                        .await;
                    if r.is_ok_and(|r| r.status() == StatusCode::TOO_MANY_REQUESTS) {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A valid login never checked before answers promptly meanwhile.
    let (status, took) = login(&http(), &p, "alice", "alice-pw").await;
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(2), "valid login took {took:?}");
    for a in attackers {
        a.await.expect("join");
    }
    let refused = refused.load(Ordering::Relaxed);
    assert!(
        refused >= 250,
        "only {refused} of 300 guesses refused unchecked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_a_backend_echoes_never_reach_answers_or_logs() {
    let _serial = SERIAL.lock().await;
    const PASSWORD: &str = "s3cret-backend-pass";
    const TOKEN: &str = "tok-0123456789-secret";
    // Answers every request with an error quoting the request's head.
    let echo: Respond = Arc::new(|head: &str| {
        let body = serde_json::json!({
            "status": "error",
            "errorType": "bad_data",
            "error": format!("cannot parse request: {head}"),
        })
        .to_string();
        (
            Duration::ZERO,
            http_answer(400, "application/json", body.as_bytes()),
        )
    });
    let a = RawBackend::start(echo.clone()).await;
    let b = RawBackend::start(echo.clone()).await;
    let c = RawBackend::start(echo).await;
    let dir = ops_support::TempDir::new("echo-token");
    let token = dir.write("token", TOKEN);
    let p = Promfed::start(
        "echo",
        &format!(
            "partial_response: warn\nbackends:\n  - name: basic-rr\n    url: {}\n    basic_auth: {{username: promfed, password: {PASSWORD}}}\n  - name: basic-api\n    url: {}\n    protocol: query_api\n    basic_auth: {{username: promfed, password: {PASSWORD}}}\n  - name: bearer\n    url: {}\n    bearer_token_file: {}\n",
            a.url(),
            b.url(),
            c.url(),
            token.display()
        ),
    );
    let header_b64 = basic("promfed", PASSWORD)[6..].to_string();
    let secrets = [PASSWORD, TOKEN, header_b64.as_str()];
    let cl = http();
    let mut answers = Vec::new();
    for (path, params) in [
        ("/api/v1/query", vec![("query", "up"), ("time", "1000")]),
        ("/api/v1/labels", vec![]),
        ("/api/v1/series", vec![("match[]", "up")]),
        ("/api/v1/rules", vec![]),
        ("/api/v1/metadata", vec![]),
    ] {
        let r = cl
            .get(p.url(path))
            .query(&params)
            .send()
            .await
            .expect("send");
        let text = r.text().await.expect("body");
        assert!(text.contains("cannot parse request"), "{path}: {text}");
        answers.push((path, text));
    }
    // Under abort the error itself carries the backend's text.
    let r = cl
        .post(p.url("/api/v1/query"))
        .form(&[
            ("query", "up"),
            ("time", "1000"),
            ("partial_response", "false"),
        ])
        .send()
        .await
        .expect("send");
    answers.push(("abort", r.text().await.expect("body")));
    // Health probes record backend errors for /api/v1/stores.
    let r = cl.get(p.url("/api/v1/stores")).send().await.expect("send");
    answers.push(("stores", r.text().await.expect("body")));
    for (what, text) in &answers {
        for s in secrets {
            assert!(!text.contains(s), "{what} leaks {s}: {text}");
        }
    }
    let log = p.stderr();
    for s in secrets {
        assert!(!log.contains(s), "the log leaks {s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_request_body_ends_at_the_query_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _serial = SERIAL.lock().await;
    let p = Promfed::start(
        "trickle-body",
        "backends:\n  - name: k8s-1\n    url: http://127.0.0.1:1\nlimits: {query_timeout: 2s}\n",
    );
    let mut s = tokio::net::TcpStream::connect(&p.addr)
        .await
        .expect("connect");
    s.write_all(
        b"POST /api/v1/query HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 1000\r\n\r\nquery=",
    )
    .await
    .expect("write");
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(6), async {
        let mut buf = [0u8; 4096];
        // Headers sent, the body never finishes: promfed answers anyway.
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 6 s");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_of_many_selectors_does_not_hold_up_another_query() {
    let _serial = SERIAL.lock().await;
    // Every read takes 100 ms.
    let app = axum::Router::new().route(
        "/api/v1/read",
        axum::routing::post(|body: Bytes| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            (
                [(header::CONTENT_TYPE, "application/x-protobuf")],
                empty_read_response(&body),
            )
        }),
    );
    let b = AppBackend::start(app).await;
    // The default max_connections: 8.
    let p = Promfed::start(
        "fair-share",
        &format!("backends:\n  - name: k8s-1\n    url: {}\n", b.url()),
    );
    let query = |q: String| {
        let url = p.url("/api/v1/query");
        async move {
            let started = Instant::now();
            let r = http()
                .post(url)
                .form(&[("query", q.as_str()), ("time", "1000")])
                .send()
                .await
                .expect("send");
            (r.status().as_u16(), started.elapsed())
        }
    };
    // 1000 selectors: 10 reads of 100 (batched), four at a time.
    let many = (0..1000)
        .map(|i| format!("m{i}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let big = tokio::spawn(query(many));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, took) = query("another_metric".to_string()).await;
    assert_eq!(status, 200);
    // One read of 100 ms, behind at most a few of the big query's.
    assert!(
        took < Duration::from_secs(1),
        "a one-selector query waited {took:?} behind a 1000-selector one"
    );
    let (status, _) = big.await.expect("join");
    assert_eq!(status, 200);
}
