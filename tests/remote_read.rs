//! The remote-read source against a real Prometheus loaded with known data:
//! the OpenMetrics file written here is the oracle.

#[path = "common/peers.rs"]
mod peers;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use promfed::model::{is_stale_nan, stale_nan, Labels, Sample, Series};
use promfed::source::remote_read::{build_request, prompb, RemoteReadSource, ResponseMode};
use promfed::source::{matches_all, Select, SelectHints, Source, SourceError};
use promql_parser::label::{MatchOp, Matcher};
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// 2026-09-21T11:33:20Z: fixed, so runs are comparable; well inside the
/// 3650-day retention the test servers use.
const BASE_MS: i64 = 1_790_000_000_000;
const HOUR_MS: i64 = 3_600_000;
const EXTERNAL: (&str, &str) = ("cluster", "rr-test");

// ---------------------------------------------------------------- harness

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "promfed-rread-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Which Prometheus serves the reads.
#[derive(Clone, Copy, Debug)]
enum Build {
    /// Prometheus 3.8, built from Go modules by `scripts/peers`.
    V3,
    /// Debian's Prometheus 2.42 (an older server must keep working).
    Debian,
}

impl Build {
    /// `(prometheus, promtool)` of this build.
    fn tools(self) -> (PathBuf, PathBuf) {
        match self {
            Build::V3 => (peers::prometheus(), peers::promtool()),
            Build::Debian => (
                PathBuf::from("/usr/bin/prometheus"),
                PathBuf::from("/usr/bin/promtool"),
            ),
        }
    }
}

/// A Prometheus started on a free loopback port; killed (by pid) on drop.
struct Prometheus {
    child: Child,
    base: String,
    dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus on `dir`'s `data` folder (which may hold backfilled
    /// blocks) with `extra` flags, and waits until it is ready.
    async fn start(build: Build, dir: TempDir, extra: &[&str]) -> Prometheus {
        let config = dir.0.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  external_labels:\n    {}: {}\n",
                EXTERNAL.0, EXTERNAL.1
            ),
        )
        .expect("write config");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let log = std::fs::File::create(dir.0.join("prometheus.log")).expect("log file");
        let child = Command::new(build.tools().0)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg("--storage.tsdb.retention.time=3650d")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("start {build:?} prometheus: {e}"));
        let mut prom = Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        };
        prom.wait_ready().await;
        prom
    }

    async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited with {status}: {}", self.log());
            }
            let ready = client
                .get(format!("{}/-/ready", self.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("prometheus not ready within 60 s: {}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("prometheus.log")).unwrap_or_default()
    }

    fn source(&self, mode: ResponseMode) -> RemoteReadSource {
        let s = RemoteReadSource::new(
            "rr-test",
            &format!("{}/", self.base),
            Duration::from_secs(20),
            promfed::source::http::BackendHttp::plain(),
        );
        match mode {
            ResponseMode::Chunks => s,
            ResponseMode::Samples => s.samples_only(),
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- data

/// Known series: counters with scrape jitter and gaps, gauges with special
/// values. Labels exclude the external label Prometheus adds.
fn oracle() -> Vec<Series> {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut out = Vec::new();
    let counter = |instance: &str, code: &str| {
        Labels::from_pairs([
            ("__name__", "rr_requests_total"),
            ("job", "api"),
            ("instance", instance),
            ("code", code),
        ])
    };
    for (instance, code, gaps) in [
        ("a:9090", "200", false),
        ("b:9090", "200", false),
        ("a:9090", "500", true),
    ] {
        let mut samples = Vec::new();
        let mut v = 0.0;
        let mut t = BASE_MS + rng.gen_range(0..15_000);
        while t < BASE_MS + 3 * HOUR_MS {
            samples.push(Sample { t, v });
            v += f64::from(rng.gen_range(0u32..40)) * 0.25;
            // Scrape every 15 s with millisecond jitter; some scrapes are
            // exactly on time (a delta of delta of zero).
            let jitter = if rng.gen_bool(0.3) {
                0
            } else {
                rng.gen_range(-400..=400)
            };
            t += 15_000 + jitter;
            if gaps && samples.len() == 100 {
                t += 2 * 60_000; // a 17/20-bit delta of delta
            }
            if gaps && samples.len() == 300 {
                t += 10 * 60_000; // a 64-bit delta of delta
            }
        }
        out.push(Series {
            labels: counter(instance, code),
            samples,
            histograms: Vec::new(),
        });
    }
    let gauge = |site: &str| Labels::from_pairs([("__name__", "rr_temperature"), ("site", site)]);
    let specials = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        1e300,
        -2.5e-300,
        f64::MIN_POSITIVE,
    ];
    let mut samples = Vec::new();
    let mut t = BASE_MS + 1_234;
    for i in 0..700 {
        let v = match i % 50 {
            7 => specials[(i / 50) % specials.len()],
            8..=12 => 21.5, // repeated values
            _ => rng.gen_range(-40.0..60.0),
        };
        samples.push(Sample { t, v });
        t += 15_000 + rng.gen_range(-900..=900);
    }
    out.push(Series {
        labels: gauge("x"),
        samples,
        histograms: Vec::new(),
    });
    // A short series that only lives in the first ten minutes.
    out.push(Series {
        labels: gauge("y"),
        samples: (0..40)
            .map(|i| Sample {
                t: BASE_MS + 7 + i * 15_000,
                v: i as f64,
            })
            .collect(),
        histograms: Vec::new(),
    });
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

/// Formats a value as Go's `strconv.ParseFloat` reads it back bit for bit.
fn om_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v:?}")
    }
}

fn openmetrics(series: &[Series]) -> String {
    let mut text = String::new();
    let mut family = "";
    for s in series {
        let name = s.labels.metric_name().expect("named series");
        let fam = name.trim_end_matches("_total");
        if fam != family {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            text.push_str(&format!("# TYPE {fam} {kind}\n"));
            family = fam;
        }
        let labels: Vec<String> = s
            .labels
            .iter()
            .filter(|l| l.name != "__name__")
            .map(|l| format!("{}={:?}", l.name, l.value))
            .collect();
        for p in &s.samples {
            text.push_str(&format!(
                "{name}{{{}}} {} {}.{:03}\n",
                labels.join(","),
                om_value(p.v),
                p.t / 1000,
                p.t % 1000
            ));
        }
    }
    text.push_str("# EOF\n");
    text
}

/// A Prometheus holding [`oracle`]'s series, backfilled with promtool.
async fn loaded_prometheus() -> (Prometheus, Vec<Series>) {
    loaded(Build::V3).await
}

/// A Prometheus of `build` holding [`oracle`]'s series.
async fn loaded(build: Build) -> (Prometheus, Vec<Series>) {
    let series = oracle();
    let dir = TempDir::new("blocks");
    let file = dir.0.join("data.om");
    std::fs::write(&file, openmetrics(&series)).expect("write openmetrics");
    let data = dir.0.join("data");
    let out = Command::new(build.tools().1)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&file)
        .arg(&data)
        .output()
        .unwrap_or_else(|e| panic!("run {build:?} promtool: {e}"));
    assert!(
        out.status.success(),
        "promtool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (Prometheus::start(build, dir, &[]).await, series)
}

// ---------------------------------------------------------------- checks

fn m(op: &str, name: &str, value: &str) -> Matcher {
    let anchored = || regex::Regex::new(&format!("^(?:{value})$")).expect("regex");
    let op = match op {
        "=" => MatchOp::Equal,
        "!=" => MatchOp::NotEqual,
        "=~" => MatchOp::Re(anchored()),
        "!~" => MatchOp::NotRe(anchored()),
        _ => panic!("unknown op {op}"),
    };
    Matcher::new(op, name, value)
}

fn select(matchers: Vec<Matcher>, start_ms: i64, end_ms: i64) -> Select {
    Select {
        matchers,
        start_ms,
        end_ms,
        hints: SelectHints {
            start_ms,
            end_ms,
            ..Default::default()
        },
        read: Default::default(),
    }
}

/// What a Prometheus holding `series` must answer: matching series (with
/// the external label added) clipped to the range, empty ones dropped.
fn expected(series: &[Series], sel: &Select) -> Vec<Series> {
    series
        .iter()
        .filter_map(|s| {
            let mut labels = s.labels.clone();
            labels.set(EXTERNAL.0, EXTERNAL.1);
            let samples: Vec<Sample> = s
                .samples
                .iter()
                .filter(|p| (sel.start_ms..=sel.end_ms).contains(&p.t))
                .copied()
                .collect();
            (matches_all(&labels, &sel.matchers) && !samples.is_empty()).then_some(Series {
                labels,
                samples,
                histograms: Vec::new(),
            })
        })
        .collect()
}

/// Same value: bit for bit, except that any NaN but the staleness marker
/// equals any other such NaN (Go and Rust spell a plain NaN differently),
/// and that -0 equals +0 in SAMPLES responses: Prometheus encodes those as
/// proto3, which leaves out a double equal to zero, sign included.
fn same_value(a: f64, b: f64, mode: ResponseMode) -> bool {
    if a.is_nan() && b.is_nan() {
        is_stale_nan(a) == is_stale_nan(b)
    } else if mode == ResponseMode::Samples && a == 0.0 {
        b == 0.0
    } else {
        a.to_bits() == b.to_bits()
    }
}

fn assert_same(got: &[Series], want: &[Series], mode: ResponseMode, what: &str) {
    let names = |v: &[Series]| v.iter().map(|s| s.labels.to_string()).collect::<Vec<_>>();
    assert_eq!(names(got), names(want), "{what}: series differ");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(
            g.samples.len(),
            w.samples.len(),
            "{what}: sample count of {}",
            g.labels
        );
        for (i, (a, b)) in g.samples.iter().zip(&w.samples).enumerate() {
            assert!(
                a.t == b.t && same_value(a.v, b.v, mode),
                "{what}: {} sample {i}: got {a:?}, want {b:?}",
                g.labels
            );
        }
    }
}

/// Every select of `cases` answered alike by both response types, and as
/// the oracle says.
async fn check_cases(prom: &Prometheus, series: &[Series], cases: &[(&str, Select)]) {
    for mode in [ResponseMode::Chunks, ResponseMode::Samples] {
        let source = prom.source(mode);
        for (what, sel) in cases {
            let out = source
                .select(sel)
                .await
                .unwrap_or_else(|e| panic!("{what} ({mode:?}): {e}"));
            assert!(out.warnings.is_empty(), "{what}: {:?}", out.warnings);
            let want = expected(series, sel);
            assert!(!want.is_empty(), "{what}: the oracle selects nothing");
            assert_same(&out.series, &want, mode, &format!("{what} ({mode:?})"));
        }
        let stats = source.stats();
        match mode {
            ResponseMode::Chunks => {
                assert_eq!(stats.chunked_responses, cases.len() as u64);
                assert_eq!(stats.sample_responses, 0);
            }
            ResponseMode::Samples => {
                assert_eq!(stats.sample_responses, cases.len() as u64);
                assert_eq!(stats.chunked_responses, 0);
            }
        }
        assert!(stats.bytes_read > 0);
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn reads_back_exactly_what_was_written() {
    reads_back(Build::V3).await;
}

/// Remote read of Debian's Prometheus 2.42 keeps working.
#[tokio::test]
async fn reads_back_from_prometheus_2_42() {
    reads_back(Build::Debian).await;
}

async fn reads_back(build: Build) {
    let (prom, series) = loaded(build).await;
    let all = (BASE_MS - HOUR_MS, BASE_MS + 4 * HOUR_MS);
    let name = |n: &str| m("=", "__name__", n);
    let cases = [
        (
            "= on the name",
            select(vec![name("rr_requests_total")], all.0, all.1),
        ),
        (
            "!= on a label",
            select(
                vec![name("rr_requests_total"), m("!=", "code", "200")],
                all.0,
                all.1,
            ),
        ),
        (
            "=~ on name and label",
            select(
                vec![m("=~", "__name__", "rr_.*"), m("=~", "instance", "a:.*")],
                all.0,
                all.1,
            ),
        ),
        (
            "!~ on a label",
            select(
                vec![name("rr_temperature"), m("!~", "site", "y|z")],
                all.0,
                all.1,
            ),
        ),
        (
            "= on the external label",
            select(
                vec![name("rr_temperature"), m("=", EXTERNAL.0, EXTERNAL.1)],
                all.0,
                all.1,
            ),
        ),
    ];
    check_cases(&prom, &series, &cases).await;
}

#[tokio::test]
async fn clips_to_the_selected_range() {
    let (prom, series) = loaded_prometheus().await;
    let every = || vec![m("=~", "__name__", "rr_.+")];
    // Edges on exact sample times are inclusive on both ends.
    let x = &series
        .iter()
        .find(|s| s.labels.get("site") == Some("x"))
        .expect("site x")
        .samples;
    let cases = [
        (
            "mid-chunk window",
            select(
                every(),
                BASE_MS + 37 * 60_000 + 123,
                BASE_MS + 112 * 60_000 + 999,
            ),
        ),
        (
            "window across the 2 h block boundary",
            select(every(), BASE_MS + 100 * 60_000, BASE_MS + 160 * 60_000),
        ),
        (
            "window on exact sample times",
            select(every(), x[130].t, x[250].t),
        ),
        (
            "window where one series has ended",
            select(every(), BASE_MS + 30 * 60_000, BASE_MS + 32 * 60_000),
        ),
        ("one millisecond", select(every(), x[400].t, x[400].t)),
    ];
    check_cases(&prom, &series, &cases).await;
    // A window with no data at all: no series, no error, both ways.
    for mode in [ResponseMode::Chunks, ResponseMode::Samples] {
        let out = prom
            .source(mode)
            .select(&select(every(), BASE_MS - 2 * HOUR_MS, BASE_MS - HOUR_MS))
            .await
            .expect("empty window");
        assert!(out.series.is_empty(), "{mode:?}: {:?}", out.series);
    }
}

/// The frame, body and sample limits cut a real response with a clear error.
#[tokio::test]
async fn limits_cut_a_real_response() {
    use promfed::source::remote_read::RemoteReadOptions;

    let (prom, _series) = loaded_prometheus().await;
    let sel = select(
        vec![m("=~", "__name__", "rr_.+")],
        BASE_MS,
        BASE_MS + 3 * HOUR_MS,
    );
    let limited = |mode, f: fn(&mut RemoteReadOptions)| {
        let mut options = RemoteReadOptions {
            mode,
            ..Default::default()
        };
        f(&mut options);
        prom.source(mode).with_options(options)
    };
    type Limit = fn(&mut RemoteReadOptions);
    let cases: [(&str, ResponseMode, Limit, &str); 5] = [
        (
            "frame",
            ResponseMode::Chunks,
            |o| o.max_frame_bytes = 64,
            "exceeds the limit of 64 bytes",
        ),
        (
            "body",
            ResponseMode::Chunks,
            |o| o.max_response_bytes = 1000,
            "exceeds 1000 bytes",
        ),
        (
            "body",
            ResponseMode::Samples,
            |o| o.max_response_bytes = 1000,
            "exceeds 1000 bytes",
        ),
        (
            "samples",
            ResponseMode::Chunks,
            |o| o.max_samples = 1000,
            "more than 1000 samples",
        ),
        (
            "samples",
            ResponseMode::Samples,
            |o| o.max_samples = 1000,
            "more than 1000 samples",
        ),
    ];
    for (what, mode, f, needle) in cases {
        let err = limited(mode, f).select(&sel).await.expect_err(what);
        assert!(err.to_string().contains(needle), "{what} ({mode:?}): {err}");
    }
    // The same select within the default limits succeeds.
    let out = prom
        .source(ResponseMode::Chunks)
        .select(&sel)
        .await
        .expect("default limits");
    assert_eq!(out.series.len(), 5);
}

/// Every chunk Prometheus streams decodes to the sample count its header
/// announces, between the chunk's own min and max times.
#[tokio::test]
async fn real_chunks_decode_to_their_announced_bounds() {
    use promfed::source::remote_read::chunk::{decode_xor, xor_sample_count};
    use promfed::source::remote_read::frame::FrameReader;

    let (prom, _series) = loaded_prometheus().await;
    let sel = select(
        vec![m("=~", "__name__", "rr_.+")],
        BASE_MS - HOUR_MS,
        BASE_MS + 4 * HOUR_MS,
    );
    let body = snap::raw::Encoder::new()
        .compress_vec(&build_request(&sel, ResponseMode::Chunks).encode_to_vec())
        .expect("compress");
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/read", prom.base))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Read-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("remote read");
    let bytes = response.bytes().await.expect("body");
    let mut frames = FrameReader::new(1 << 26);
    frames.push(&bytes);
    let mut chunks = 0;
    while let Some(frame) = frames.next_frame().expect("valid frame") {
        let msg = prompb::ChunkedReadResponse::decode(frame).expect("ChunkedReadResponse");
        for s in msg.chunked_series {
            for c in s.chunks {
                assert_eq!(c.r#type, prompb::ChunkEncoding::Xor as i32);
                let samples = decode_xor(&c.data).expect("real chunk decodes");
                assert_eq!(samples.len(), xor_sample_count(&c.data));
                let (first, last) = (
                    samples.first().expect("sample"),
                    samples.last().expect("sample"),
                );
                assert_eq!((first.t, last.t), (c.min_time_ms, c.max_time_ms));
                chunks += 1;
            }
        }
    }
    frames.finish().expect("ends between frames");
    // 5 series over 3 h at ~120 samples a chunk, cut at block boundaries.
    assert!(chunks > 20, "only {chunks} chunks");
}

/// Samples pushed into the head by remote write, a staleness marker among
/// them, come back bit for bit, from both response types.
#[tokio::test]
async fn staleness_markers_survive_from_the_head() {
    let dir = TempDir::new("head");
    let prom = Prometheus::start(Build::V3, dir, &["--web.enable-remote-write-receiver"]).await;
    let now = chrono::Utc::now().timestamp_millis();
    let start = now - 20 * 60_000;
    let values: Vec<f64> = (0..60)
        .map(|i| match i {
            20 => stale_nan(),
            40 => f64::NAN,
            _ => i as f64 * 1.5,
        })
        .collect();
    let samples: Vec<Sample> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| Sample {
            t: start + i as i64 * 15_000 + (i as i64 * 7) % 13,
            v,
        })
        .collect();
    let labels = Labels::from_pairs([("__name__", "rr_stale"), ("job", "push")]);
    let write = prompb::WriteRequest {
        timeseries: vec![prompb::TimeSeries {
            labels: labels
                .iter()
                .map(|l| prompb::Label {
                    name: l.name.to_string(),
                    value: l.value.to_string(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|s| prompb::Sample {
                    value: s.v,
                    timestamp: s.t,
                })
                .collect(),
            histograms: Vec::new(),
        }],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&write.encode_to_vec())
        .expect("compress");
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/write", prom.base))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("remote write");
    assert!(
        response.status().is_success(),
        "remote write: {}",
        response.status()
    );

    let mut want_labels = labels.clone();
    want_labels.set(EXTERNAL.0, EXTERNAL.1);
    for mode in [ResponseMode::Chunks, ResponseMode::Samples] {
        let out = prom
            .source(mode)
            .select(&select(
                vec![m("=", "__name__", "rr_stale")],
                start - 1,
                now,
            ))
            .await
            .expect("select");
        assert_eq!(out.series.len(), 1, "{mode:?}");
        assert_eq!(out.series[0].labels, want_labels);
        let got = &out.series[0].samples;
        assert_eq!(got.len(), samples.len(), "{mode:?}");
        for (g, w) in got.iter().zip(&samples) {
            // Exact bits for the marker; a plain NaN must stay a plain NaN.
            assert_eq!(g.t, w.t, "{mode:?}");
            assert!(
                same_value(g.v, w.v, mode),
                "{mode:?}: got {g:?}, want {w:?}"
            );
        }
        assert_eq!(got[20].v.to_bits(), stale_nan().to_bits(), "{mode:?}");
    }
}

// ------------------------------------------- misbehaving loopback servers

/// What a fake server sends: the bytes, then whether to hold the
/// connection open instead of closing it.
type Reply = fn() -> (Vec<u8>, bool);

/// A loopback server that answers every connection with the bytes `reply`
/// gives, then closes it, or holds it open when `reply` also says to hang.
async fn fake_server(reply: Reply) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        // Bounded: the tests make at most a few requests.
        for _ in 0..8 {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = tokio::time::timeout(Duration::from_millis(500), sock.read(&mut buf)).await;
                let (bytes, hang) = reply();
                let _ = sock.write_all(&bytes).await;
                if hang {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                let _ = sock.shutdown().await;
            });
        }
    });
    (base, task)
}

fn http(content_type: &str, body: &[u8], content_length: bool) -> Vec<u8> {
    let mut head =
        format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nConnection: close\r\n");
    if content_length {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

const STREAMED: &str = "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

async fn select_from(
    base: &str,
    timeout: Duration,
) -> Result<promfed::source::SelectOutput, SourceError> {
    let source = RemoteReadSource::new(
        "fake",
        base,
        timeout,
        promfed::source::http::BackendHttp::plain(),
    );
    source
        .select(&select(vec![m("=", "__name__", "up")], 0, 1000))
        .await
}

#[tokio::test]
async fn a_backend_that_never_answers_is_cut_at_the_deadline() {
    let (base, task) = fake_server(|| (Vec::new(), true)).await;
    let started = Instant::now();
    let err = select_from(&base, Duration::from_millis(300))
        .await
        .expect_err("must time out");
    assert!(
        matches!(err, SourceError::Timeout { ref backend, timeout_ms: 300 } if backend == "fake"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    task.abort();
}

#[tokio::test]
async fn a_body_that_never_ends_is_cut_at_the_deadline() {
    // Headers and one valid empty frame arrive, then nothing: the deadline
    // covers the body too.
    let (base, task) = fake_server(|| {
        let mut frame = Vec::new();
        promfed::source::remote_read::frame::encode_frame(&[], &mut frame);
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {STREAMED}\r\nContent-Length: 100000\r\n\r\n"
        )
        .into_bytes();
        out.extend_from_slice(&frame);
        (out, true)
    })
    .await;
    let started = Instant::now();
    let err = select_from(&base, Duration::from_millis(300))
        .await
        .expect_err("must time out");
    assert!(matches!(err, SourceError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    task.abort();
}

#[tokio::test]
async fn garbage_and_truncated_bodies_are_errors_not_panics() {
    fn garbage_stream() -> (Vec<u8>, bool) {
        (
            http(STREAMED, b"\x05\x00\x00\x00\x00hello-not-a-frame", true),
            false,
        )
    }
    fn bad_crc() -> (Vec<u8>, bool) {
        let mut frame = Vec::new();
        promfed::source::remote_read::frame::encode_frame(b"\x08\x01", &mut frame);
        let last = frame.len() - 1;
        frame[last] ^= 0xff;
        (http(STREAMED, &frame, true), false)
    }
    fn truncated_frame() -> (Vec<u8>, bool) {
        let mut frame = Vec::new();
        promfed::source::remote_read::frame::encode_frame(&[0u8; 40], &mut frame);
        frame.truncate(20);
        (http(STREAMED, &frame, false), false)
    }
    fn garbage_samples() -> (Vec<u8>, bool) {
        (
            http(
                "application/x-protobuf",
                b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
                true,
            ),
            false,
        )
    }
    fn bad_chunk() -> (Vec<u8>, bool) {
        // A well-framed ChunkedReadResponse whose XOR chunk is cut short.
        let msg = prompb::ChunkedReadResponse {
            chunked_series: vec![prompb::ChunkedSeries {
                labels: vec![prompb::Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                chunks: vec![prompb::Chunk {
                    min_time_ms: 0,
                    max_time_ms: 1000,
                    r#type: prompb::ChunkEncoding::Xor as i32,
                    data: bytes::Bytes::from_static(&[0, 5, 2, 0x3f]),
                }],
            }],
            query_index: 0,
        };
        let mut frame = Vec::new();
        promfed::source::remote_read::frame::encode_frame(&msg.encode_to_vec(), &mut frame);
        (http(STREAMED, &frame, true), false)
    }
    fn server_error() -> (Vec<u8>, bool) {
        let body = b"remote read sample limit exceeded\n";
        (
            [
                format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes(),
                body.to_vec(),
            ]
            .concat(),
            false,
        )
    }
    let cases: [(&str, Reply, &str); 6] = [
        ("garbage stream", garbage_stream, "remote read stream"),
        ("bad crc", bad_crc, "checksum"),
        ("truncated frame", truncated_frame, "ended inside a frame"),
        (
            "garbage samples",
            garbage_samples,
            "not a snappy-compressed ReadResponse",
        ),
        ("bad chunk", bad_chunk, "truncated"),
        (
            "server error",
            server_error,
            "HTTP 400 Bad Request: remote read sample limit exceeded",
        ),
    ];
    for (what, reply, needle) in cases {
        let (base, task) = fake_server(reply).await;
        let err = select_from(&base, Duration::from_secs(5))
            .await
            .expect_err(what);
        match &err {
            SourceError::Backend { backend, message } => {
                assert_eq!(backend, "fake");
                assert!(message.contains(needle), "{what}: {message}");
            }
            other => panic!("{what}: {other}"),
        }
        task.abort();
    }
}
