//! Native histograms end to end: real Prometheus 3.8 servers (k8s-1,
//! k8s-2, and k8s-3 as an HA pair whose replica b lacks ten minutes)
//! holding remote-written native histograms, promfed over them (remote
//! read, streamed chunks; and the Thanos StoreAPI through a sidecar per
//! server), and one Prometheus 3.8 holding the union of the
//! data with the cluster label in it: every histogram query answers the
//! same JSON result, instant and range.

mod common;
mod thanos_support;

use common::native_data::{histograms, series, Kind};
use common::remote_write::{start_receiver, write};
use common::{config_yaml, query, query_range, Promfed};
use promfed::source::remote_read::prompb;

const SAMPLES: usize = 200;

/// A series' labels and its histogram samples.
type Written = (Vec<(String, String)>, Vec<prompb::Histogram>);

/// Series of one cluster: counters (one with a reset), a float counter, a gauge.
fn cluster_series(cluster: &str, start: i64) -> Vec<Written> {
    let mut out = Vec::new();
    let base = cluster.bytes().map(u64::from).sum::<u64>();
    for (i, (name, kind, reset)) in [
        ("nh_req_seconds", Kind::IntCounter, None),
        ("nh_req_seconds", Kind::IntCounter, Some(110)),
        ("nh_float_seconds", Kind::FloatCounter, None),
        ("nh_queue", Kind::Gauge, None),
    ]
    .into_iter()
    .enumerate()
    {
        let labels = vec![
            ("__name__".to_string(), name.to_string()),
            ("instance".to_string(), format!("i{i}")),
            ("job".to_string(), "api".to_string()),
        ];
        out.push((
            labels,
            histograms(kind, base * 10 + i as u64, start, SAMPLES, reset),
        ));
    }
    out
}

fn to_series(
    labels: &[(String, String)],
    extra: &[(&str, &str)],
    h: Vec<prompb::Histogram>,
) -> prompb::TimeSeries {
    let mut pairs: Vec<(&str, &str)> = labels
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    pairs.extend_from_slice(extra);
    series(&pairs, h)
}

/// `data.result` with vector/matrix elements sorted by their labels.
fn normalized(body: &serde_json::Value) -> serde_json::Value {
    let mut r = body["data"]["result"].clone();
    if let Some(a) = r.as_array_mut() {
        a.sort_by_key(|x| x["metric"].to_string());
    }
    serde_json::json!({"type": body["data"]["resultType"], "result": r})
}

const QUERIES: &[&str] = &[
    "nh_req_seconds",
    "rate(nh_req_seconds[5m])",
    "sum(rate(nh_req_seconds[5m]))",
    "sum by (cluster) (rate(nh_req_seconds[5m]))",
    "histogram_quantile(0.99, sum(rate(nh_req_seconds[5m])))",
    "histogram_quantile(0.5, sum by (cluster) (rate(nh_req_seconds[5m])))",
    "histogram_count(rate(nh_req_seconds[5m]))",
    "histogram_sum(sum by (cluster) (increase(nh_req_seconds[10m])))",
    "histogram_fraction(0, 2, sum by (cluster) (rate(nh_req_seconds[5m])))",
    "histogram_avg(sum(rate(nh_float_seconds[5m])))",
    "sum(rate(nh_float_seconds[5m]))",
    "max_over_time(histogram_count(nh_queue)[10m:1m])",
    "count_over_time(nh_req_seconds[5m])",
    "last_over_time(nh_queue[5m])",
    "sum by (cluster) (nh_queue)",
    "resets(nh_req_seconds[30m])",
];

#[tokio::test]
async fn federated_histogram_queries_equal_the_union() {
    let now = chrono::Utc::now().timestamp_millis();
    let start = now - (SAMPLES as i64) * 15_000 - 30_000;
    let k1 = start_receiver("nh-k8s-1", &[("cluster", "k8s-1")]).expect("k8s-1");
    let k2 = start_receiver("nh-k8s-2", &[("cluster", "k8s-2")]).expect("k8s-2");
    let k3a = start_receiver("nh-k8s-3-a", &[("cluster", "k8s-3"), ("replica", "a")]).expect("a");
    let k3b = start_receiver("nh-k8s-3-b", &[("cluster", "k8s-3"), ("replica", "b")]).expect("b");
    let union = start_receiver("nh-union", &[]).expect("union");
    let hole = (start + 60 * 15_000)..(start + 100 * 15_000);
    let mut union_series = Vec::new();
    for (cluster, servers) in [
        ("k8s-1", vec![&k1]),
        ("k8s-2", vec![&k2]),
        ("k8s-3", vec![&k3a, &k3b]),
    ] {
        let data = cluster_series(cluster, start);
        for (i, server) in servers.iter().enumerate() {
            let ts: Vec<_> = data
                .iter()
                .map(|(l, h)| {
                    let mut h = h.clone();
                    if i == 1 {
                        h.retain(|x| !hole.contains(&x.timestamp));
                    }
                    to_series(l, &[], h)
                })
                .collect();
            write(&server.url, &ts).await.expect("remote write");
        }
        union_series.extend(
            data.iter()
                .map(|(l, h)| to_series(l, &[("cluster", cluster)], h.clone())),
        );
    }
    write(&union.url, &union_series)
        .await
        .expect("remote write union");

    let config = config_yaml(
        &[
            ("k8s-1", &k1.url, &[("cluster", "k8s-1")]),
            ("k8s-2", &k2.url, &[("cluster", "k8s-2")]),
            (
                "k8s-3-a",
                &k3a.url,
                &[("cluster", "k8s-3"), ("replica", "a")],
            ),
            (
                "k8s-3-b",
                &k3b.url,
                &[("cluster", "k8s-3"), ("replica", "b")],
            ),
        ],
        "replica_labels: [replica]\n",
    );
    let pf = Promfed::start(&config).expect("promfed");
    // The same servers behind Thanos sidecars, read over the StoreAPI.
    let work = common::TempDir::new("promfed-nh-sidecars").expect("dir");
    let mut sidecars = Vec::new();
    let mut store_yaml =
        String::from("listen: 127.0.0.1:0\nreplica_labels: [replica]\nbackends:\n");
    for (name, server) in [
        ("k8s-1", &k1),
        ("k8s-2", &k2),
        ("k8s-3-a", &k3a),
        ("k8s-3-b", &k3b),
    ] {
        let sc = thanos_support::ThanosProc::sidecar(name, server, work.path()).expect("sidecar");
        store_yaml.push_str(&thanos_support::store_backend(
            name,
            &sc.grpc_url(),
            &[],
            "10s",
        ));
        sidecars.push(sc);
    }
    let pf_store = Promfed::start(&store_yaml).expect("promfed over sidecars");
    let at = (now - 60_000) as f64 / 1000.0;
    let mut failures = Vec::new();
    for q in QUERIES {
        let want = query(&union.url, q, at).await.expect("union");
        assert_eq!(want.status, 200, "{q}: {}", want.body);
        for (via, base) in [("remote read", &pf.url), ("storeapi", &pf_store.url)] {
            let got = query(base, q, at).await.expect("promfed");
            if normalized(&got.body) != normalized(&want.body) {
                failures.push(format!(
                    "instant {q} ({via}):\n got {}\nwant {}",
                    normalized(&got.body),
                    normalized(&want.body)
                ));
            }
        }
        assert!(
            want.body["data"]["result"]
                .as_array()
                .is_some_and(|a| !a.is_empty()),
            "{q}: the union answers nothing"
        );
        let (s, e) = (at - 1800.0, at);
        let want = query_range(&union.url, q, s, e, 60.0).await.expect("union");
        for (via, base) in [("remote read", &pf.url), ("storeapi", &pf_store.url)] {
            let got = query_range(base, q, s, e, 60.0).await.expect("promfed");
            if normalized(&got.body) != normalized(&want.body) {
                failures.push(format!(
                    "range {q} ({via}):\n got {}\nwant {}",
                    normalized(&got.body),
                    normalized(&want.body)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The query_api protocol cannot carry native histograms exactly: its
    // answers say which backend left them out, never a silently smaller
    // result.
    let api = Promfed::start(&format!(
        "listen: 127.0.0.1:0\nbackends:\n  - name: k8s-1\n    url: {}\n    protocol: query_api\n    timeout: 10s\n    external_labels: {{cluster: k8s-1}}\n",
        k1.url
    ))
    .expect("promfed over the query API");
    let got = query(&api.url, "count_over_time(nh_req_seconds[5m])", at)
        .await
        .expect("promfed query_api");
    assert_eq!(got.status, 200, "{}", got.body);
    let warnings = got.body["warnings"].to_string();
    assert!(
        warnings.contains("backend k8s-1") && warnings.contains("native histogram"),
        "no warning for the histograms left out: {}",
        got.body
    );
}
