//! The background services of every cluster: plain application series of
//! their pods ([`plain`]) and the Istio requests between them ([`mesh`]).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::mesh::{
    fnv, gauss, k8s_suffix, poisson, scrape_times, F_CPU, F_GOROUTINES, F_HTTP, F_MEM, F_REQUESTS,
    F_UP,
};
use super::{SimConfig, SimSeries};
use promfed::model::{Labels, Sample};

/// Extra labels of a background series.
type ExtraLabels = &'static [(&'static str, &'static str)];

const BG_APPS: [(&str, &str); 10] = [
    ("cart", "shop"),
    ("checkout", "shop"),
    ("catalog", "shop"),
    ("search", "shop"),
    ("payments", "payments"),
    ("accounts", "accounts"),
    ("notifications", "messaging"),
    ("inventory", "shop"),
    ("shipping", "logistics"),
    ("email", "messaging"),
];

/// Plain application series of background pods, `cfg.background_series`
/// of them.
pub(super) fn plain(cfg: &SimConfig, c: usize, start_ms: i64, end_ms: i64) -> Vec<SimSeries> {
    // (family, name, extra labels, kind of values)
    const PER_POD: [(usize, &str, ExtraLabels); 8] = [
        (F_UP, "up", &[]),
        (F_CPU, "process_cpu_seconds_total", &[]),
        (F_MEM, "process_resident_memory_bytes", &[]),
        (F_GOROUTINES, "go_goroutines", &[]),
        (
            F_HTTP,
            "http_server_requests_total",
            &[("method", "GET"), ("code", "200"), ("handler", "/api")],
        ),
        (
            F_HTTP,
            "http_server_requests_total",
            &[("method", "GET"), ("code", "500"), ("handler", "/api")],
        ),
        (
            F_HTTP,
            "http_server_requests_total",
            &[("method", "POST"), ("code", "200"), ("handler", "/api")],
        ),
        (
            F_HTTP,
            "http_server_requests_total",
            &[("method", "GET"), ("code", "200"), ("handler", "/healthz")],
        ),
    ];
    let mut out = Vec::with_capacity(cfg.background_series);
    for i in 0..cfg.background_series {
        let pod_i = i / PER_POD.len();
        let (family, name, extra) = PER_POD[i % PER_POD.len()];
        let BgPod {
            app,
            ns,
            pod,
            instance,
        } = bg_pod(c, pod_i);
        let mut pairs: Vec<(&str, String)> = vec![
            ("job", "kubernetes-pods".to_string()),
            ("namespace", ns.to_string()),
            ("pod", pod),
            ("instance", instance),
            ("app", app.to_string()),
        ];
        pairs.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        let labels = Labels::from_pairs(pairs);
        let key = format!("bg {c} {name} {labels}");
        let times = scrape_times(cfg.seed, &key, start_ms, end_ms, None);
        let mut rng =
            ChaCha8Rng::seed_from_u64(fnv(&[b"values", &cfg.seed.to_le_bytes(), key.as_bytes()]));
        let mut samples = Vec::with_capacity(times.len());
        let mut v: f64 = match family {
            F_UP => 1.0,
            F_CPU => (rng.gen_range(100.0..5000.0f64) * 100.0).round() / 100.0,
            F_MEM => rng.gen_range(40_000_000.0..400_000_000.0f64).round(),
            F_GOROUTINES => rng.gen_range(20.0..300.0f64).round(),
            _ => rng.gen_range(0..100_000) as f64,
        };
        let http_rate = match extra.get(1) {
            Some((_, "500")) => 0.02,
            _ => rng.gen_range(1.0..8.0),
        };
        for &t in &times {
            samples.push(Sample { t, v });
            v = match family {
                F_UP => 1.0,
                F_CPU => ((v + rng.gen_range(0.3..4.0)) * 100.0).round() / 100.0,
                F_MEM => (v * (1.0 + 0.01 * gauss(&mut rng))).round().max(1e6),
                F_GOROUTINES => (v + rng.gen_range(-3.0..=3.0f64).round()).max(5.0),
                _ => v + poisson(&mut rng, http_rate * 15.0) as f64,
            };
        }
        out.push(SimSeries {
            family,
            name: name.to_string(),
            labels,
            samples,
        });
    }
    out
}

/// Background pod `pod_i` of cluster `c`: its app, namespace, pod name and
/// scrape address (the `i`-th pod runs app `i % 10`, replica `i / 10`).
struct BgPod {
    app: &'static str,
    ns: &'static str,
    pod: String,
    instance: String,
}

fn bg_pod(c: usize, pod_i: usize) -> BgPod {
    let (app, ns) = BG_APPS[pod_i % BG_APPS.len()];
    let replica = pod_i / BG_APPS.len();
    let rs = k8s_suffix(fnv(&[app.as_bytes()]), 10);
    let id = k8s_suffix(
        fnv(&[
            app.as_bytes(),
            &(c as u64).to_le_bytes(),
            &(replica as u64).to_le_bytes(),
        ]),
        5,
    );
    BgPod {
        app,
        ns,
        pod: format!("{app}-{rs}-{id}-{replica}"),
        instance: format!(
            "10.{}.{}.{}:8080",
            c % 250 + 1,
            128 + (pod_i / 250) % 128,
            pod_i % 250 + 2
        ),
    }
}

/// Callers of each background pod (the next apps in [`BG_APPS`]) and the
/// answers it reports per caller.
const MESH_CALLERS: usize = 4;
const MESH_CODES: [(&str, &str); 2] = [("200", "-"), ("503", "UF")];

/// `istio_requests_total` of the background services,
/// `cfg.background_mesh_series` of them: each background pod reports
/// (`reporter="destination"`) the requests of [`MESH_CALLERS`] other
/// background apps of its cluster, per answer code, with Istio's labels.
pub(super) fn mesh(cfg: &SimConfig, c: usize, start_ms: i64, end_ms: i64) -> Vec<SimSeries> {
    let per_pod = MESH_CALLERS * MESH_CODES.len();
    let cluster = cfg.clusters.get(c).cloned().unwrap_or_default();
    let mut out = Vec::with_capacity(cfg.background_mesh_series);
    for i in 0..cfg.background_mesh_series {
        let pod_i = i / per_pod;
        let caller = 1 + (i % per_pod) / MESH_CODES.len();
        let (code, flags) = MESH_CODES[i % MESH_CODES.len()];
        let BgPod {
            app,
            ns,
            pod,
            instance,
        } = bg_pod(c, pod_i);
        let (src, src_ns) = BG_APPS[(pod_i + caller) % BG_APPS.len()];
        let principal = |app: &str, ns: &str| format!("spiffe://cluster.local/ns/{ns}/sa/{app}");
        let labels = Labels::from_pairs([
            ("job", "kubernetes-pods".to_string()),
            ("namespace", ns.to_string()),
            ("pod", pod),
            ("instance", instance.replace(":8080", ":15020")),
            ("reporter", "destination".to_string()),
            ("source_workload", format!("{src}-v1")),
            ("source_workload_namespace", src_ns.to_string()),
            ("source_principal", principal(src, src_ns)),
            ("source_app", src.to_string()),
            ("source_version", "v1".to_string()),
            ("source_cluster", cluster.clone()),
            ("source_canonical_service", src.to_string()),
            ("source_canonical_revision", "v1".to_string()),
            ("destination_workload", format!("{app}-v1")),
            ("destination_workload_namespace", ns.to_string()),
            ("destination_principal", principal(app, ns)),
            ("destination_app", app.to_string()),
            ("destination_version", "v1".to_string()),
            (
                "destination_service",
                format!("{app}.{ns}.svc.cluster.local"),
            ),
            ("destination_service_name", app.to_string()),
            ("destination_service_namespace", ns.to_string()),
            ("destination_cluster", cluster.clone()),
            ("destination_canonical_service", app.to_string()),
            ("destination_canonical_revision", "v1".to_string()),
            ("request_protocol", "http".to_string()),
            ("response_code", code.to_string()),
            ("response_flags", flags.to_string()),
            ("connection_security_policy", "mutual_tls".to_string()),
        ]);
        let key = format!("bg-mesh {c} {labels}");
        let times = scrape_times(cfg.seed, &key, start_ms, end_ms, None);
        let mut rng =
            ChaCha8Rng::seed_from_u64(fnv(&[b"values", &cfg.seed.to_le_bytes(), key.as_bytes()]));
        let rate = if code == "200" {
            rng.gen_range(0.5..6.0)
        } else {
            0.01
        };
        let mut v = rng.gen_range(0..50_000) as f64;
        let mut samples = Vec::with_capacity(times.len());
        for &t in &times {
            samples.push(Sample { t, v });
            v += poisson(&mut rng, rate * 15.0) as f64;
        }
        out.push(SimSeries {
            family: F_REQUESTS,
            name: "istio_requests_total".to_string(),
            labels,
            samples,
        });
    }
    out
}
