//! promfed over real Thanos sidecars (`protocol: thanos_store`) answers as
//! the union Prometheus 3.8 does: the seed query, by-cluster aggregations,
//! an HA pair with a gap, series and labels; alone or mixed with remote
//! read; and a frozen or killed sidecar fails or warns by policy within
//! its deadline.
//!
//! Peers from `scripts/peers` (Prometheus 3.8, Thanos v0.42.4); run with
//! `PROMFED_PEERS_DIR=... cargo test --test thanos_store`.

mod common;
mod thanos_support;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::client::{get_text, post_form};
use common::compare::assert_same;
use common::{query, query_range, HarnessError, Promfed};
use istio_sim::SUCCESS_RATE_QUERY;
use thanos_support::{sidecars, store_backend, Sidecars, ThanosProc, HOLE_SECS};

type R = Result<(), HarnessError>;

/// promfed over the three sidecars (k8s-1, and k8s-2 as replicas a and b),
/// deduplicating on `replica`; no configured labels: Info supplies them.
fn promfed() -> &'static Promfed {
    static P: OnceLock<Result<Promfed, String>> = OnceLock::new();
    let p = P.get_or_init(|| {
        let h = sidecars();
        let mut cfg = String::from("listen: 127.0.0.1:0\nreplica_labels: [replica]\nbackends:\n");
        for s in &h.sidecars {
            cfg.push_str(&store_backend(&s.name, &s.grpc_url(), &[], "20s"));
        }
        Promfed::start(&cfg)
            .map(|mut p| {
                p.stop_on_exit();
                p
            })
            .map_err(|e| e.to_string())
    });
    match p {
        Ok(p) => p,
        Err(e) => panic!("promfed could not start: {e}"),
    }
}

/// Instant-query times across the rollout: every step's middle and start,
/// times near the counter reset, inside and around replica b's hole.
fn times(h: &Sidecars) -> Vec<f64> {
    let s = &h.schedule;
    let mut ts: Vec<f64> = s.steps.iter().map(|x| x.mid()).collect();
    ts.extend(s.steps.iter().map(|x| x.start as f64 + 0.123));
    ts.push(s.counter_reset.at as f64 + 7.5);
    ts.push(s.counter_reset.at as f64 + 31.0);
    ts.push(s.start as f64 + 61.234);
    ts.push(s.end as f64 - 0.001);
    let (a, b) = (s.start + HOLE_SECS.0, s.start + HOLE_SECS.1);
    ts.extend((0..8).map(|i| (a - 100) as f64 + i as f64 * 97.3));
    ts.push(b as f64 + 20.5);
    ts
}

const BY_CLUSTER: [&str; 7] = [
    "sum by (cluster) (rate(istio_requests_total{reporter=\"source\"}[5m]))",
    "sum by (cluster, destination_version) (increase(istio_requests_total{reporter=\"destination\"}[2m]))",
    "count by (cluster) (istio_requests_total)",
    "max by (cluster, response_code) (irate(istio_requests_total[1m]))",
    "sum(rate(istio_requests_total{cluster=\"k8s-2\",reporter=\"source\"}[5m]))",
    "istio_requests_total{cluster=~\"k8s-1\",destination_service=~\"helloworld.*\",reporter=\"source\"} offset 3m",
    // No metric name: only an external-label matcher reaches the sidecar.
    "count by (cluster) ({cluster=\"k8s-2\"})",
];

#[tokio::test]
async fn seed_query_matches_the_union_instant_and_range() -> R {
    let h = sidecars();
    let p = promfed();
    let canary_from = h.schedule.steps[1].start as f64 + 60.0;
    for t in times(h) {
        let got = query(&p.url, SUCCESS_RATE_QUERY, t).await?;
        let want = query(&h.union.url, SUCCESS_RATE_QUERY, t).await?;
        let has_data = assert_same(&format!("seed query at {t}"), &got, &want);
        assert!(has_data || t < canary_from, "no data at {t}: {}", want.body);
        assert!(got.body.get("warnings").is_none(), "{}", got.body);
    }
    let (s, e) = (h.schedule.start as f64 + 60.0, h.schedule.end as f64);
    for step in [20.0, 7.0] {
        let got = query_range(&p.url, SUCCESS_RATE_QUERY, s, e, step).await?;
        let want = query_range(&h.union.url, SUCCESS_RATE_QUERY, s, e, step).await?;
        assert!(assert_same(&format!("seed range step {step}"), &got, &want));
    }
    Ok(())
}

#[tokio::test]
async fn by_cluster_aggregations_and_the_ha_gap_match_the_union() -> R {
    let h = sidecars();
    let p = promfed();
    let s0 = h.schedule.start as f64;
    let mut ts = vec![h.schedule.steps[1].mid(), h.schedule.steps[2].mid()];
    // Inside replica b's hole and at its edges.
    ts.extend(
        [
            HOLE_SECS.0 as f64 + 3.3,
            HOLE_SECS.0 as f64 + 301.0,
            HOLE_SECS.1 as f64 + 45.0,
        ]
        .map(|x| s0 + x),
    );
    for t in ts {
        for q in BY_CLUSTER {
            let got = query(&p.url, q, t).await?;
            let want = query(&h.union.url, q, t).await?;
            assert!(
                assert_same(&format!("{q} at {t}"), &got, &want),
                "{q} at {t}: empty"
            );
        }
    }
    for q in [BY_CLUSTER[0], BY_CLUSTER[3]] {
        let (s, e) = (s0 + 300.0, s0 + 2400.0);
        let got = query_range(&p.url, q, s, e, 30.0).await?;
        let want = query_range(&h.union.url, q, s, e, 30.0).await?;
        assert!(assert_same(&format!("range {q}"), &got, &want));
    }
    // Across the hole at a fine step.
    let got = query_range(&p.url, SUCCESS_RATE_QUERY, s0 + 900.0, s0 + 2100.0, 10.0).await?;
    let want = query_range(
        &h.union.url,
        SUCCESS_RATE_QUERY,
        s0 + 900.0,
        s0 + 2100.0,
        10.0,
    )
    .await?;
    assert!(assert_same("HA range across the hole", &got, &want));
    // Without dedup both replicas show up, told apart by the label their
    // sidecars announce; inside the hole only replica a has data.
    for (t, want) in [(s0 + 600.0, 2), (s0 + HOLE_SECS.0 as f64 + 400.0, 1)] {
        let r = post_form(
            &p.url,
            "/api/v1/query",
            &[
                (
                    "query",
                    "count by (replica) (istio_requests_total{cluster=\"k8s-2\"})".into(),
                ),
                ("time", format!("{t:.3}")),
                ("dedup", "false".into()),
            ],
        )
        .await?;
        assert_eq!(r.vector().len(), want, "at {t}: {}", r.body);
    }
    Ok(())
}

/// `data` of a metadata answer, lists sorted.
fn sorted_data(text: &str, what: &str) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
    if let Some(a) = v["data"].as_array_mut() {
        a.sort_by_key(|x| x.to_string());
    }
    v["data"].take()
}

#[tokio::test]
async fn series_labels_and_label_values_match_the_union() -> R {
    let h = sidecars();
    let p = promfed();
    let (s, e) = (h.schedule.start, h.schedule.end);
    let range = format!("&start={s}&end={e}");
    for path in [
        format!("/api/v1/series?match[]=istio_requests_total%7Bdestination_service_name%3D%22helloworld-canary%22%7D{range}"),
        format!("/api/v1/series?match[]=istio_requests_total%7Bcluster%3D%22k8s-2%22,response_code%3D~%225..%22%7D&match[]=up{range}"),
        format!("/api/v1/labels?match[]=istio_requests_total{range}"),
        format!("/api/v1/labels?{range}"),
        format!("/api/v1/label/cluster/values?{range}"),
        format!("/api/v1/label/destination_version/values?match[]=istio_requests_total{range}"),
        format!("/api/v1/label/response_code/values?match[]=istio_requests_total%7Bcluster%3D%22k8s-1%22%7D{range}"),
        format!("/api/v1/label/__name__/values?{range}"),
    ] {
        let (gs, got) = get_text(&p.url, &path).await?;
        let (ws, want) = get_text(&h.union.url, &path).await?;
        assert_eq!((gs, ws), (200, 200), "{path}: {got} / {want}");
        let (g, w) = (sorted_data(&got, &path), sorted_data(&want, &path));
        assert_eq!(g, w, "{path}");
        assert!(!w.as_array().is_none_or(Vec::is_empty), "{path}: union answered nothing");
    }
    Ok(())
}

/// k8s-1 through remote read from its Prometheus, k8s-2 through the
/// StoreAPI of its two replicas' sidecars.
#[tokio::test]
async fn mixed_remote_read_and_store_api_match_the_union() -> R {
    let h = sidecars();
    let mut cfg = format!(
        "listen: 127.0.0.1:0\nreplica_labels: [replica]\nbackends:\n  - name: k8s-1\n    url: {}\n    external_labels: {{cluster: k8s-1}}\n",
        h.prom("k8s-1").url
    );
    for name in ["k8s-2-a", "k8s-2-b"] {
        cfg.push_str(&store_backend(
            name,
            &h.sidecar(name).grpc_url(),
            &[],
            "20s",
        ));
    }
    let p = Promfed::start(&cfg)?;
    let s0 = h.schedule.start as f64;
    let mut ts: Vec<f64> = h.schedule.steps.iter().map(|x| x.mid()).collect();
    ts.push(s0 + HOLE_SECS.0 as f64 + 250.0);
    for t in ts {
        for q in [SUCCESS_RATE_QUERY, BY_CLUSTER[0], BY_CLUSTER[2]] {
            let got = query(&p.url, q, t).await?;
            let want = query(&h.union.url, q, t).await?;
            assert_same(&format!("mixed {q} at {t}"), &got, &want);
        }
    }
    let got = query_range(
        &p.url,
        SUCCESS_RATE_QUERY,
        s0 + 60.0,
        h.schedule.end as f64,
        15.0,
    )
    .await?;
    let want = query_range(
        &h.union.url,
        SUCCESS_RATE_QUERY,
        s0 + 60.0,
        h.schedule.end as f64,
        15.0,
    )
    .await?;
    assert!(assert_same("mixed range", &got, &want));
    Ok(())
}

/// Polls `/api/v1/stores` until every listed backend has been probed.
async fn probed_stores(p: &Promfed, n: usize) -> Result<serde_json::Value, HarnessError> {
    let mut last = serde_json::Value::Null;
    for _ in 0..100 {
        let (_, text) = get_text(&p.url, "/api/v1/stores").await?;
        last = serde_json::from_str(&text).unwrap_or_default();
        let checked = last["data"]
            .as_object()
            .map(|groups| {
                groups
                    .values()
                    .filter_map(|l| l.as_array())
                    .flatten()
                    .filter(|s| s["lastCheck"].is_string())
                    .count()
            })
            .unwrap_or(0);
        if checked >= n {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("stores never all probed: {last}");
}

/// `/api/v1/stores` lists what each sidecar's Info announces; configured
/// labels that disagree are flagged, and the announced ones route.
#[tokio::test]
async fn stores_show_what_info_announces() -> R {
    let h = sidecars();
    let mut cfg = String::from("listen: 127.0.0.1:0\nreplica_labels: [replica]\nbackends:\n");
    cfg.push_str(&store_backend(
        "k8s-1",
        &h.sidecar("k8s-1").grpc_url(),
        &[("cluster", "k8s-9")],
        "20s",
    ));
    cfg.push_str(&store_backend(
        "k8s-2-a",
        &h.sidecar("k8s-2-a").grpc_url(),
        &[("cluster", "k8s-2")],
        "20s",
    ));
    let p = Promfed::start(&cfg)?;
    let stores = probed_stores(&p, 2).await?;
    let list = stores["data"]["sidecar"]
        .as_array()
        .unwrap_or_else(|| panic!("{stores}"));
    assert_eq!(list.len(), 2, "{stores}");
    let k1 = &list[0];
    assert_eq!(k1["name"], "k8s-1");
    assert!(k1["lastError"].is_null(), "{stores}");
    assert_eq!(
        k1["labelSets"],
        serde_json::json!([{"cluster": "k8s-1"}]),
        "{stores}"
    );
    let d = k1["labelsDisagreement"]
        .as_str()
        .unwrap_or_else(|| panic!("{stores}"));
    assert!(d.contains("k8s-9") && d.contains("k8s-1"), "{d}");
    let k2 = &list[1];
    assert_eq!(
        k2["labelSets"],
        serde_json::json!([{"cluster": "k8s-2", "replica": "a"}])
    );
    assert!(k2["labelsDisagreement"].is_null(), "{stores}");
    // The sidecar's time range: from its Prometheus's oldest sample (the
    // backfilled block starts at most 2 h before the data) to "no end".
    let (start_ms, end_ms) = (h.schedule.start * 1000, h.schedule.end * 1000);
    for s in list {
        let min = s["minTime"].as_i64().unwrap_or_else(|| panic!("{stores}"));
        assert!(min <= end_ms && min >= start_ms - 2 * 3_600_000, "{stores}");
        assert_eq!(s["maxTime"].as_i64(), Some(i64::MAX), "{stores}");
    }
    // Routing follows the announced labels, not the configured typo.
    let t = h.schedule.steps[2].mid();
    let q = "count by (cluster) (istio_requests_total{cluster=\"k8s-1\"})";
    let got = query(&p.url, q, t).await?;
    let want = query(&h.union.url, q, t).await?;
    assert!(assert_same(q, &got, &want));
    let got = query(&p.url, "count(istio_requests_total{cluster=\"k8s-9\"})", t).await?;
    assert!(got.is_success() && got.vector().is_empty(), "{}", got.body);
    Ok(())
}

/// An extra sidecar over k8s-1's Prometheus, so that freezing and killing
/// it leaves the shared harness alone; promfed aborts by default.
fn victim_promfed(
    h: &Sidecars,
    victim: &ThanosProc,
    timeout_s: u64,
) -> Result<Promfed, HarnessError> {
    let mut cfg = String::from("listen: 127.0.0.1:0\nreplica_labels: [replica]\nbackends:\n");
    cfg.push_str(&store_backend(
        "k8s-1",
        &victim.grpc_url(),
        &[],
        &format!("{timeout_s}s"),
    ));
    for name in ["k8s-2-a", "k8s-2-b"] {
        cfg.push_str(&store_backend(
            name,
            &h.sidecar(name).grpc_url(),
            &[],
            "20s",
        ));
    }
    Promfed::start(&cfg)
}

/// Asserts the abort and warn answers of `q` at `t` while k8s-1 is out:
/// abort is an error naming it, warn is the union's answer for the other
/// cluster plus a warning naming it; neither waits past `limit`.
async fn assert_policies(p: &Promfed, h: &Sidecars, t: f64, limit: Duration, what: &str) -> R {
    let q = "sum by (cluster) (rate(istio_requests_total{reporter=\"source\"}[5m]))";
    let t0 = Instant::now();
    let r = query(&p.url, q, t).await?;
    let took = t0.elapsed();
    assert!(!r.is_success(), "{what}: abort answered: {}", r.body);
    let err = r.body["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("k8s-1"),
        "{what}: error does not name k8s-1: {}",
        r.body
    );
    assert!(took < limit, "{what}: abort took {took:?}");
    let t0 = Instant::now();
    let r = post_form(
        &p.url,
        "/api/v1/query",
        &[
            ("query", q.into()),
            ("time", format!("{t:.3}")),
            ("partial_response", "true".into()),
        ],
    )
    .await?;
    let took = t0.elapsed();
    assert!(took < limit, "{what}: warn took {took:?}");
    let warnings = r.body["warnings"].to_string();
    assert!(
        warnings.contains("k8s-1"),
        "{what}: no warning naming k8s-1: {}",
        r.body
    );
    let others = q.replace(
        "reporter=\"source\"",
        "reporter=\"source\",cluster!=\"k8s-1\"",
    );
    let want = query(&h.union.url, &others, t).await?;
    assert!(assert_same(&format!("{what}: warn answer"), &r, &want));
    Ok(())
}

#[tokio::test]
async fn a_frozen_or_killed_sidecar_fails_or_warns_within_the_deadline() -> R {
    let h = sidecars();
    let mut victim = ThanosProc::sidecar("k8s-1-victim", h.prom("k8s-1"), h.dir.path())?;
    let timeout_s = 3;
    let p = victim_promfed(h, &victim, timeout_s)?;
    let t = h.schedule.steps[2].mid();
    // Healthy first: the same query answers without warnings.
    let q = "sum by (cluster) (rate(istio_requests_total{reporter=\"source\"}[5m]))";
    let got = query(&p.url, q, t).await?;
    assert!(assert_same(
        "healthy",
        &got,
        &query(&h.union.url, q, t).await?
    ));
    // Frozen: connections stay open, nothing answers; cut at the deadline.
    let limit = Duration::from_secs(timeout_s + 3);
    victim.signal("STOP");
    let frozen = assert_policies(&p, h, t, limit, "frozen").await;
    victim.signal("CONT");
    frozen?;
    // Thawed, it answers again.
    let got = query(&p.url, q, t).await?;
    assert!(assert_same(
        "thawed",
        &got,
        &query(&h.union.url, q, t).await?
    ));
    // Killed: connections refused.
    victim.stop();
    assert_policies(&p, h, t, limit, "killed").await?;
    let stores = probed_stores(&p, 3).await?;
    assert!(stores.to_string().contains("k8s-1"), "{stores}");
    Ok(())
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as
/// PEM files `ca.pem`, `server.{pem,key}`, `client.{pem,key}` in `dir`.
fn pki(dir: &std::path::Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    let write = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("writing {name}: {e}"))
    };
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "thanos test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    write("ca.pem", ca_cert.pem());
    let server_key = KeyPair::generate().expect("key");
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("params");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server
        .signed_by(&server_key, &ca_cert, &ca_key)
        .expect("server cert");
    write("server.pem", server_cert.pem());
    write("server.key", server_key.serialize_pem());
    let client_key = KeyPair::generate().expect("key");
    let mut cl = CertificateParams::new(Vec::<String>::new()).expect("params");
    cl.distinguished_name.push(DnType::CommonName, "promfed");
    cl.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = cl
        .signed_by(&client_key, &ca_cert, &ca_key)
        .expect("client cert");
    write("client.pem", client_cert.pem());
    write("client.key", client_key.serialize_pem());
}

/// A sidecar serving gRPC over TLS and requiring client certificates:
/// promfed with the CA and a client certificate reads it; without the
/// certificate the query fails naming the backend.
#[tokio::test]
async fn a_sidecar_over_mutual_tls() -> R {
    let h = sidecars();
    let dir = common::TempDir::new("promfed-thanos-tls")?;
    let d = dir.path();
    pki(d);
    let p = |f: &str| d.join(f).display().to_string();
    let _tls_sidecar = ThanosProc::sidecar_with(
        "k8s-1-tls",
        h.prom("k8s-1"),
        d,
        &[
            format!("--grpc-server-tls-cert={}", p("server.pem")),
            format!("--grpc-server-tls-key={}", p("server.key")),
            format!("--grpc-server-tls-client-ca={}", p("ca.pem")),
        ],
    )?;
    let url = _tls_sidecar.grpc_url();
    let cfg = |client_cert: bool| {
        let mut y = format!(
            "listen: 127.0.0.1:0\nbackends:\n  - name: k8s-1\n    url: {url}\n    protocol: thanos_store\n    timeout: 10s\n    tls:\n      ca_file: {}\n",
            p("ca.pem")
        );
        if client_cert {
            y.push_str(&format!(
                "      cert_file: {}\n      key_file: {}\n",
                p("client.pem"),
                p("client.key")
            ));
        }
        y
    };
    let t = h.schedule.steps[2].mid();
    let q =
        "sum by (cluster) (rate(istio_requests_total{cluster=\"k8s-1\",reporter=\"source\"}[5m]))";
    let want = query(&h.union.url, q, t).await?;
    let with_cert = Promfed::start(&cfg(true))?;
    let got = query(&with_cert.url, q, t).await?;
    assert!(assert_same("over mutual TLS", &got, &want));
    let without = Promfed::start(&cfg(false))?;
    let r = query(&without.url, q, t).await?;
    assert!(
        !r.is_success(),
        "answered without a client certificate: {}",
        r.body
    );
    assert!(
        r.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("k8s-1"),
        "{}",
        r.body
    );
    Ok(())
}
