//! The simulated mesh (workloads, pods, routes) and its request-by-request
//! traffic, turned into scraped series.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::background;
use super::{
    ClusterData, Family, Kind, Schedule, SimConfig, SimSeries, CROSS_CLUSTER_SHARE, SHARE_503,
    V1_ERROR_RATE,
};
use promfed::model::{Labels, Sample};

/// How long the restarted ingress pod is not scraped, seconds.
pub(super) const RESTART_DOWN_SECS: i64 = 20;

/// Istio's default buckets of `istio_request_duration_milliseconds`.
const LE: [&str; 20] = [
    "0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000",
    "30000", "60000", "300000", "600000", "1800000", "3600000", "+Inf",
];
const NB: usize = LE.len();

pub(super) const F_REQUESTS: usize = 0;
pub(super) const F_DURATION: usize = 1;
pub(super) const F_UP: usize = 2;
pub(super) const F_CPU: usize = 3;
pub(super) const F_MEM: usize = 4;
pub(super) const F_GOROUTINES: usize = 5;
pub(super) const F_HTTP: usize = 6;

/// The metric families, indexed by the `F_*` constants.
pub(super) fn families() -> Vec<Family> {
    let f = |name, kind, help| Family { name, kind, help };
    vec![
        f("istio_requests", Kind::Counter, "Total requests."),
        f(
            "istio_request_duration_milliseconds",
            Kind::Histogram,
            "Request duration in milliseconds.",
        ),
        f("up", Kind::Gauge, "Whether the target answered its scrape."),
        f(
            "process_cpu_seconds",
            Kind::Counter,
            "Total user and system CPU time spent in seconds.",
        ),
        f(
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory size in bytes.",
        ),
        f("go_goroutines", Kind::Gauge, "Number of goroutines."),
        f(
            "http_server_requests",
            Kind::Counter,
            "HTTP requests served by the application.",
        ),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http,
    Grpc,
}

#[derive(Debug, Clone, Copy)]
enum Errors {
    Fixed(f64),
    Stable,
    Canary,
}

struct Workload {
    /// Istio's workload name (the Deployment or Rollout).
    name: &'static str,
    namespace: &'static str,
    app: &'static str,
    version: &'static str,
    service_account: &'static str,
    pods: usize,
    protocol: Protocol,
    /// Median latency of a successful request, ms.
    latency_ms: f64,
    errors: Errors,
}

const INGRESS: usize = 0;
const HW_V1: usize = 1;
const HW_V2: usize = 2;

const WORKLOADS: [Workload; 10] = [
    Workload {
        name: "istio-ingressgateway",
        namespace: "istio-system",
        app: "istio-ingressgateway",
        version: "unknown",
        service_account: "istio-ingressgateway-service-account",
        pods: 1,
        protocol: Protocol::Http,
        latency_ms: 1.0,
        errors: Errors::Fixed(0.0),
    },
    Workload {
        name: "helloworld",
        namespace: "helloworld",
        app: "helloworld",
        version: "v1",
        service_account: "helloworld",
        pods: 1,
        protocol: Protocol::Http,
        latency_ms: 20.0,
        errors: Errors::Stable,
    },
    Workload {
        name: "helloworld",
        namespace: "helloworld",
        app: "helloworld",
        version: "v2",
        service_account: "helloworld",
        pods: 1,
        protocol: Protocol::Http,
        latency_ms: 23.0,
        errors: Errors::Canary,
    },
    Workload {
        name: "productpage-v1",
        namespace: "bookinfo",
        app: "productpage",
        version: "v1",
        service_account: "bookinfo-productpage",
        pods: 1,
        protocol: Protocol::Http,
        latency_ms: 40.0,
        errors: Errors::Fixed(0.002),
    },
    Workload {
        name: "details-v1",
        namespace: "bookinfo",
        app: "details",
        version: "v1",
        service_account: "bookinfo-details",
        pods: 1,
        protocol: Protocol::Http,
        latency_ms: 4.0,
        errors: Errors::Fixed(0.001),
    },
    Workload {
        name: "reviews-v1",
        namespace: "bookinfo",
        app: "reviews",
        version: "v1",
        service_account: "bookinfo-reviews",
        pods: 1,
        protocol: Protocol::Http,
        latency_ms: 8.0,
        errors: Errors::Fixed(0.001),
    },
    Workload {
        name: "reviews-v2",
        namespace: "bookinfo",
        app: "reviews",
        version: "v2",
        service_account: "bookinfo-reviews",
        pods: 1,
        protocol: Protocol::Http,
        latency_ms: 15.0,
        errors: Errors::Fixed(0.002),
    },
    Workload {
        name: "reviews-v3",
        namespace: "bookinfo",
        app: "reviews",
        version: "v3",
        service_account: "bookinfo-reviews",
        pods: 1,
        protocol: Protocol::Http,
        latency_ms: 16.0,
        errors: Errors::Fixed(0.002),
    },
    Workload {
        name: "ratings-v1",
        namespace: "bookinfo",
        app: "ratings",
        version: "v1",
        service_account: "bookinfo-ratings",
        pods: 1,
        protocol: Protocol::Http,
        latency_ms: 3.0,
        errors: Errors::Fixed(0.001),
    },
    Workload {
        name: "recommendations-v1",
        namespace: "bookinfo",
        app: "recommendations",
        version: "v1",
        service_account: "bookinfo-recommendations",
        pods: 1,
        protocol: Protocol::Grpc,
        latency_ms: 6.0,
        errors: Errors::Fixed(0.004),
    },
];

/// (service name, namespace).
const SERVICES: [(&str, &str); 7] = [
    ("helloworld", "helloworld"),
    ("helloworld-canary", "helloworld"),
    ("productpage", "bookinfo"),
    ("details", "bookinfo"),
    ("reviews", "bookinfo"),
    ("ratings", "bookinfo"),
    ("recommendations", "bookinfo"),
];

#[derive(Debug, Clone, Copy)]
enum Share {
    Stable,
    Canary,
    Fixed(f64),
}

struct Route {
    src: usize,
    /// Mean requests per second from all of `src`'s pods in one cluster
    /// (`None`: the cluster's ingress rate).
    rps: Option<f64>,
    /// (destination workload, service, share).
    targets: &'static [(usize, usize, Share)],
    /// Whether a share of the requests goes to the next cluster's pods.
    cross_cluster: bool,
    /// Whether its edges also get `istio_request_duration_milliseconds`.
    histogram: bool,
}

const ROUTES: [Route; 7] = [
    Route {
        src: INGRESS,
        rps: None,
        targets: &[(HW_V1, 0, Share::Stable), (HW_V2, 1, Share::Canary)],
        cross_cluster: true,
        histogram: true,
    },
    Route {
        src: INGRESS,
        rps: Some(12.0),
        targets: &[(3, 2, Share::Fixed(1.0))],
        cross_cluster: false,
        histogram: false,
    },
    Route {
        src: 3,
        rps: Some(12.0),
        targets: &[(4, 3, Share::Fixed(1.0))],
        cross_cluster: false,
        histogram: false,
    },
    Route {
        src: 3,
        rps: Some(12.0),
        targets: &[
            (5, 4, Share::Fixed(0.4)),
            (6, 4, Share::Fixed(0.3)),
            (7, 4, Share::Fixed(0.3)),
        ],
        cross_cluster: false,
        histogram: false,
    },
    Route {
        src: 6,
        rps: Some(3.6),
        targets: &[(8, 5, Share::Fixed(1.0))],
        cross_cluster: false,
        histogram: false,
    },
    Route {
        src: 7,
        rps: Some(3.6),
        targets: &[(8, 5, Share::Fixed(1.0))],
        cross_cluster: false,
        histogram: false,
    },
    Route {
        src: 3,
        rps: Some(6.0),
        targets: &[(9, 6, Share::Fixed(1.0))],
        cross_cluster: false,
        histogram: false,
    },
];

/// Mean ingress requests per second to helloworld in cluster `c`.
pub(super) fn ingress_rps(c: usize) -> f64 {
    30.0 + 10.0 * (c % 3) as f64
}

/// FNV-1a, stable across Rust versions (unlike `DefaultHasher`).
pub(super) fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.iter().chain(std::iter::once(&0xffu8)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// A Kubernetes-looking name suffix of `len` characters.
pub(super) fn k8s_suffix(h: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h = h;
    let mut s = String::with_capacity(len);
    for _ in 0..len {
        s.push(char::from(ALPHABET[(h % ALPHABET.len() as u64) as usize]));
        h /= ALPHABET.len() as u64;
        if h == 0 {
            h = fnv(&[s.as_bytes()]);
        }
    }
    s
}

fn pod_name(c: usize, wl: usize, pod: usize) -> String {
    let w = &WORKLOADS[wl];
    let rs = k8s_suffix(fnv(&[w.name.as_bytes(), w.version.as_bytes()]), 10);
    let id = k8s_suffix(
        fnv(&[
            w.name.as_bytes(),
            w.version.as_bytes(),
            &(c as u64).to_le_bytes(),
            &(pod as u64).to_le_bytes(),
        ]),
        5,
    );
    format!("{}-{rs}-{id}", w.name)
}

/// The name of ingress gateway pod `pod` of cluster `c`.
pub(super) fn ingress_pod_name(c: usize, pod: usize) -> String {
    pod_name(c, INGRESS, pod)
}

fn pod_ip(c: usize, wl: usize, pod: usize) -> String {
    format!("10.{}.{}.{}:15020", c % 250 + 1, wl + 1, pod + 10)
}

/// A standard normal draw (Box-Muller).
pub(super) fn gauss(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A Poisson draw (Knuth below 30, normal approximation above).
pub(super) fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> u64 {
    if lambda <= 0.0 {
        return 0;
    }
    if lambda > 30.0 {
        return (lambda + lambda.sqrt() * gauss(rng)).round().max(0.0) as u64;
    }
    let limit = (-lambda).exp();
    let mut k = 0u64;
    let mut p = 1.0;
    loop {
        p *= rng.gen::<f64>();
        if p <= limit || k > 1000 {
            return k;
        }
        k += 1;
    }
}

/// True when promtool, reading `t` printed as `secs.mmm`, stores exactly `t`
/// (it computes `int64(float * 1000)`, which truncates). The text parses
/// to the double nearest to t / 1000, which is what the (correctly
/// rounded) division of the exact `t as f64` gives, for any
/// `0 <= t < 2^53`: no text needs to be made (this runs once a sample).
pub(super) fn ts_roundtrips(t: i64) -> bool {
    (0..1 << 53).contains(&t) && ((t as f64 / 1000.0) * 1000.0) as i64 == t
}

/// Scrape times (ms) of one series: every 15 s from a per-series offset,
/// with a few ms of jitter per scrape; never on a whole second; none in the
/// `down` window (ms, half-open).
pub(super) fn scrape_times(
    seed: u64,
    key: &str,
    start_ms: i64,
    end_ms: i64,
    down: Option<(i64, i64)>,
) -> Vec<i64> {
    let h = fnv(&[&seed.to_le_bytes(), key.as_bytes()]);
    let interval = super::SCRAPE_INTERVAL_SECS * 1000;
    let offset = 10 + (h % (interval as u64 - 20)) as i64;
    let mut rng = ChaCha8Rng::seed_from_u64(h);
    let mut out = Vec::with_capacity(((end_ms - start_ms) / interval + 1) as usize);
    let mut base = start_ms + offset;
    while base < end_ms {
        let mut t = base + rng.gen_range(-4..=4);
        let mut tries = 0;
        while (t % 1000 == 0 || !ts_roundtrips(t)) && tries < 20 {
            t += 1;
            tries += 1;
        }
        let in_down = down.is_some_and(|(a, b)| t >= a && t < b);
        if t > start_ms && t < end_ms && t % 1000 != 0 && ts_roundtrips(t) && !in_down {
            out.push(t);
        }
        base += interval;
    }
    out
}

/// Per-second traffic of one reported series group.
struct Agg {
    count: Vec<u32>,
    sum_ms: Vec<u64>,
    /// `secs * NB`, non-cumulative per bucket.
    buckets: Vec<u32>,
}

impl Agg {
    fn new(secs: usize, histogram: bool) -> Self {
        Agg {
            count: vec![0; secs],
            sum_ms: vec![0; if histogram { secs } else { 0 }],
            buckets: vec![0; if histogram { secs * NB } else { 0 }],
        }
    }

    fn add(&mut self, sec: usize, latency_ms: u64, bucket: usize) {
        self.count[sec] += 1;
        if let Some(s) = self.sum_ms.get_mut(sec) {
            *s += latency_ms;
        }
        if let Some(b) = self.buckets.get_mut(sec * NB + bucket) {
            *b += 1;
        }
    }

    fn histogram(&self) -> bool {
        !self.buckets.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Ok,
    E500,
    E503,
}

impl Outcome {
    fn code(self) -> &'static str {
        match self {
            Outcome::Ok => "200",
            Outcome::E500 => "500",
            Outcome::E503 => "503",
        }
    }
    fn grpc_status(self) -> &'static str {
        match self {
            Outcome::Ok => "0",
            Outcome::E500 => "13",
            Outcome::E503 => "14",
        }
    }
    fn flags(self) -> &'static str {
        match self {
            Outcome::E503 => "UF",
            _ => "-",
        }
    }
}

/// A series group as one Envoy reports it. `reporter_*` is the pod that
/// reports (source pod for `reporter="source"`, destination pod otherwise).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct GroupKey {
    destination_reporter: bool,
    reporter_cluster: usize,
    reporter_wl: usize,
    reporter_pod: usize,
    /// The other side's cluster and workload.
    peer_cluster: usize,
    peer_wl: usize,
    service: usize,
    outcome: Outcome,
    histogram: bool,
}

fn bucket_of(latency_ms: u64) -> usize {
    const BOUNDS: [f64; NB - 1] = [
        0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
        30000.0, 60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
    ];
    BOUNDS
        .iter()
        .position(|b| latency_ms as f64 <= *b)
        .unwrap_or(NB - 1)
}

fn error_rate(errors: Errors, cfg: &SimConfig) -> f64 {
    match errors {
        Errors::Fixed(r) => r,
        Errors::Stable => V1_ERROR_RATE,
        Errors::Canary => cfg.canary.error_rate(),
    }
}

/// Simulates every request of the run and returns each cluster's series.
pub(super) fn simulate(cfg: &SimConfig, schedule: &Schedule) -> Vec<ClusterData> {
    let n = cfg.clusters.len();
    let secs = cfg.duration_secs as usize;
    let step_len = (cfg.duration_secs / cfg.weights.len().max(1) as i64).max(1) as usize;
    let mut groups: BTreeMap<GroupKey, Agg> = BTreeMap::new();

    for c in 0..n {
        let mut rng = ChaCha8Rng::seed_from_u64(fnv(&[
            b"traffic",
            &cfg.seed.to_le_bytes(),
            &(c as u64).to_le_bytes(),
        ]));
        let phase = c as f64 * 1.3;
        for route in &ROUTES {
            let src = &WORKLOADS[route.src];
            let rps = route.rps.unwrap_or_else(|| ingress_rps(c));
            for sec in 0..secs {
                let step = (sec / step_len).min(cfg.weights.len().saturating_sub(1));
                let w = f64::from(cfg.weights.get(step).copied().unwrap_or(0)) / 100.0;
                let modulation =
                    1.0 + 0.1 * (std::f64::consts::TAU * sec as f64 / 1200.0 + phase).sin();
                let shares: Vec<f64> = route
                    .targets
                    .iter()
                    .map(|(_, _, s)| match s {
                        Share::Stable => 1.0 - w,
                        Share::Canary => w,
                        Share::Fixed(x) => *x,
                    })
                    .collect();
                let total: f64 = shares.iter().sum();
                if total <= 0.0 {
                    continue;
                }
                for _ in 0..poisson(&mut rng, rps * modulation) {
                    let src_pod = rng.gen_range(0..src.pods);
                    let mut u = rng.gen::<f64>() * total;
                    let mut ti = route.targets.len() - 1;
                    for (i, s) in shares.iter().enumerate() {
                        if u < *s {
                            ti = i;
                            break;
                        }
                        u -= s;
                    }
                    let (dst_wl, service, _) = route.targets[ti];
                    let dst = &WORKLOADS[dst_wl];
                    let dst_c =
                        if route.cross_cluster && n > 1 && rng.gen::<f64>() < CROSS_CLUSTER_SHARE {
                            (c + 1) % n
                        } else {
                            c
                        };
                    let dst_pod = rng.gen_range(0..dst.pods);
                    let outcome = if rng.gen::<f64>() < error_rate(dst.errors, cfg) {
                        if rng.gen::<f64>() < SHARE_503 {
                            Outcome::E503
                        } else {
                            Outcome::E500
                        }
                    } else {
                        Outcome::Ok
                    };
                    let median = match outcome {
                        Outcome::E503 => 2.0,
                        _ => dst.latency_ms,
                    };
                    let latency = (median * (0.6 * gauss(&mut rng)).exp()).floor().max(0.0) as u64;
                    let bucket = bucket_of(latency);
                    let src_key = GroupKey {
                        destination_reporter: false,
                        reporter_cluster: c,
                        reporter_wl: route.src,
                        reporter_pod: src_pod,
                        peer_cluster: dst_c,
                        peer_wl: dst_wl,
                        service,
                        outcome,
                        histogram: route.histogram,
                    };
                    let dst_key = GroupKey {
                        destination_reporter: true,
                        reporter_cluster: dst_c,
                        reporter_wl: dst_wl,
                        reporter_pod: dst_pod,
                        peer_cluster: c,
                        peer_wl: route.src,
                        service,
                        outcome,
                        histogram: route.histogram,
                    };
                    for key in [src_key, dst_key] {
                        groups
                            .entry(key)
                            .or_insert_with(|| Agg::new(secs, route.histogram))
                            .add(sec, latency, bucket);
                    }
                }
            }
        }
    }

    let mut out: Vec<ClusterData> = cfg
        .clusters
        .iter()
        .map(|name| ClusterData {
            name: name.clone(),
            series: Vec::new(),
        })
        .collect();
    let start_ms = cfg.start * 1000;
    let end_ms = (cfg.start + cfg.duration_secs) * 1000;
    let reset_sec = (schedule.counter_reset.at - cfg.start).clamp(0, cfg.duration_secs) as usize;
    for (key, agg) in &groups {
        let reset = !key.destination_reporter
            && key.reporter_cluster == 0
            && key.reporter_wl == INGRESS
            && key.reporter_pod == 0;
        let down = reset.then(|| {
            let a = schedule.counter_reset.at * 1000;
            (a, a + RESTART_DOWN_SECS * 1000)
        });
        let labels = istio_labels(cfg, key);
        let times = scrape_times(cfg.seed, &format!("istio {labels}"), start_ms, end_ms, down);
        let series = group_series(agg, &labels, &times, start_ms, reset.then_some(reset_sec));
        out[key.reporter_cluster].series.extend(series);
    }
    for (c, data) in out.iter_mut().enumerate() {
        data.series
            .extend(background::plain(cfg, c, start_ms, end_ms));
        data.series
            .extend(background::mesh(cfg, c, start_ms, end_ms));
        data.series
            .sort_by(|a, b| (a.family, &a.name, &a.labels).cmp(&(b.family, &b.name, &b.labels)));
    }
    out
}

fn istio_labels(cfg: &SimConfig, key: &GroupKey) -> Labels {
    let (src_c, src_wl, dst_c, dst_wl) = if key.destination_reporter {
        (
            key.peer_cluster,
            key.peer_wl,
            key.reporter_cluster,
            key.reporter_wl,
        )
    } else {
        (
            key.reporter_cluster,
            key.reporter_wl,
            key.peer_cluster,
            key.peer_wl,
        )
    };
    let (s, d) = (&WORKLOADS[src_wl], &WORKLOADS[dst_wl]);
    let rep = &WORKLOADS[key.reporter_wl];
    let (svc, svc_ns) = SERVICES[key.service];
    let principal = |w: &Workload| {
        format!(
            "spiffe://cluster.local/ns/{}/sa/{}",
            w.namespace, w.service_account
        )
    };
    let revision = |w: &Workload| {
        if w.version == "unknown" {
            "latest"
        } else {
            w.version
        }
    };
    let mut pairs: Vec<(&str, String)> = vec![
        ("job", "kubernetes-pods".to_string()),
        ("namespace", rep.namespace.to_string()),
        (
            "pod",
            pod_name(key.reporter_cluster, key.reporter_wl, key.reporter_pod),
        ),
        (
            "instance",
            pod_ip(key.reporter_cluster, key.reporter_wl, key.reporter_pod),
        ),
        (
            "reporter",
            if key.destination_reporter {
                "destination"
            } else {
                "source"
            }
            .to_string(),
        ),
        ("source_workload", s.name.to_string()),
        ("source_workload_namespace", s.namespace.to_string()),
        ("source_principal", principal(s)),
        ("source_app", s.app.to_string()),
        ("source_version", s.version.to_string()),
        ("source_cluster", cfg.clusters[src_c].clone()),
        ("source_canonical_service", s.app.to_string()),
        ("source_canonical_revision", revision(s).to_string()),
        ("destination_workload", d.name.to_string()),
        ("destination_workload_namespace", d.namespace.to_string()),
        ("destination_principal", principal(d)),
        ("destination_app", d.app.to_string()),
        ("destination_version", d.version.to_string()),
        (
            "destination_service",
            format!("{svc}.{svc_ns}.svc.cluster.local"),
        ),
        ("destination_service_name", svc.to_string()),
        ("destination_service_namespace", svc_ns.to_string()),
        ("destination_cluster", cfg.clusters[dst_c].clone()),
        ("destination_canonical_service", d.app.to_string()),
        ("destination_canonical_revision", revision(d).to_string()),
        ("response_code", key.outcome.code().to_string()),
        ("response_flags", key.outcome.flags().to_string()),
        (
            "connection_security_policy",
            if key.destination_reporter {
                "mutual_tls"
            } else {
                "unknown"
            }
            .to_string(),
        ),
    ];
    match d.protocol {
        Protocol::Http => pairs.push(("request_protocol", "http".to_string())),
        Protocol::Grpc => {
            pairs.push(("request_protocol", "grpc".to_string()));
            pairs.push((
                "grpc_response_status",
                key.outcome.grpc_status().to_string(),
            ));
        }
    }
    Labels::from_pairs(pairs)
}

/// The counter and histogram series of one group, sampled at `times`.
/// A series appears at its first non-zero count (as Envoy's stats do) and,
/// after a reset at second `reset_sec`, counts again from zero.
fn group_series(
    agg: &Agg,
    labels: &Labels,
    times: &[i64],
    start_ms: i64,
    reset_sec: Option<usize>,
) -> Vec<SimSeries> {
    let secs = agg.count.len();
    let hist = agg.histogram();
    let prefix = |v: &[u32]| {
        let mut out = Vec::with_capacity(v.len() + 1);
        let mut acc = 0u64;
        out.push(0);
        for x in v {
            acc += u64::from(*x);
            out.push(acc);
        }
        out
    };
    let count = prefix(&agg.count);
    let mut sum = vec![0u64; if hist { secs + 1 } else { 0 }];
    let mut buckets = vec![0u64; if hist { (secs + 1) * NB } else { 0 }];
    if hist {
        for s in 0..secs {
            sum[s + 1] = sum[s] + agg.sum_ms[s];
            for b in 0..NB {
                buckets[(s + 1) * NB + b] =
                    buckets[s * NB + b] + u64::from(agg.buckets[s * NB + b]);
            }
        }
    }
    let mut req = Vec::new();
    let mut h_sum = Vec::new();
    let mut h_buckets: Vec<Vec<Sample>> = vec![Vec::new(); if hist { NB } else { 0 }];
    for &t in times {
        let idx = (((t - start_ms) / 1000).max(0) as usize).min(secs);
        let base = match reset_sec {
            Some(r) if idx >= r => r,
            _ => 0,
        };
        let n = count[idx] - count[base];
        if n == 0 {
            continue;
        }
        req.push(Sample { t, v: n as f64 });
        if hist {
            h_sum.push(Sample {
                t,
                v: (sum[idx] - sum[base]) as f64,
            });
            let mut cum = 0u64;
            for (b, hb) in h_buckets.iter_mut().enumerate() {
                cum += buckets[idx * NB + b] - buckets[base * NB + b];
                hb.push(Sample { t, v: cum as f64 });
            }
        }
    }
    if req.is_empty() {
        return Vec::new();
    }
    let mk = |family, name: &str, labels: Labels, samples| SimSeries {
        family,
        name: name.to_string(),
        labels,
        samples,
    };
    let mut out = Vec::new();
    if hist {
        out.push(mk(
            F_DURATION,
            "istio_request_duration_milliseconds_count",
            labels.clone(),
            req.clone(),
        ));
        out.push(mk(
            F_DURATION,
            "istio_request_duration_milliseconds_sum",
            labels.clone(),
            h_sum,
        ));
        for (b, samples) in h_buckets.into_iter().enumerate() {
            let mut l = labels.clone();
            l.set("le", LE[b]);
            out.push(mk(
                F_DURATION,
                "istio_request_duration_milliseconds_bucket",
                l,
                samples,
            ));
        }
    }
    out.push(mk(F_REQUESTS, "istio_requests_total", labels.clone(), req));
    out
}
