//! The project's differential query set: queries whose federated answer must
//! equal the answer of one Prometheus 3.8 holding every cluster's data (the
//! union). Tests over any backend mix (remote read, HTTP API, StoreAPI,
//! promfed under Thanos Query or under promfed) and benchmarks that compare
//! against Thanos Query take their queries from here, so that "the
//! differential set" means one list.
//!
//! The data is istio-sim's (`istio_requests_total` counters and the
//! `istio_request_duration_milliseconds` classic histogram) with an external
//! `cluster` label per cluster.

use istio_sim::SUCCESS_RATE_QUERY;

/// Instant (and range) queries of the differential set. The seed's
/// success-rate query comes first.
pub fn queries() -> Vec<&'static str> {
    let mut q = vec![SUCCESS_RATE_QUERY];
    q.extend_from_slice(QUERIES);
    q
}

const QUERIES: &[&str] = &[
    "sum by (cluster) (rate(istio_requests_total{reporter=\"source\"}[5m]))",
    "sum by (cluster, destination_version) (increase(istio_requests_total{reporter=\"destination\"}[2m]))",
    "count by (cluster) (istio_requests_total)",
    "max by (cluster, response_code) (irate(istio_requests_total[1m]))",
    "sum by (destination_cluster) (rate(istio_requests_total{source_cluster!=\"\"}[5m])) / on() group_left sum(rate(istio_requests_total[5m]))",
    "avg without (instance, pod) (rate(istio_requests_total{reporter=\"source\",response_code=~\"5..\"}[5m]))",
    "sum(rate(istio_requests_total{cluster=\"k8s-2\",reporter=\"source\"}[5m]))",
    "istio_requests_total{cluster=~\"k8s-1\",destination_service=~\"helloworld.*\",reporter=\"source\"} offset 3m",
    "sum(irate(istio_requests_total{reporter=\"source\",response_code=~\"5.*\"}[40s]))",
    "count(istio_requests_total)",
    "count by (__name__) ({__name__=~\"istio_.*\"})",
    "topk(3, sum by (cluster, destination_workload) (rate(istio_requests_total[5m])))",
    "bottomk(2, sum by (cluster, source_workload) (rate(istio_requests_total[5m])))",
    "quantile by (cluster) (0.9, rate(istio_requests_total[5m]))",
    "histogram_quantile(0.99, sum by (cluster, le) (rate(istio_request_duration_milliseconds_bucket[5m])))",
    "histogram_quantile(0.5, sum by (le) (rate(istio_request_duration_milliseconds_bucket{reporter=\"source\"}[5m])))",
    "sum(rate(istio_request_duration_milliseconds_sum[5m])) / sum(rate(istio_request_duration_milliseconds_count[5m]))",
    "count_values by (cluster) (\"code\", max by (cluster, response_code) (istio_requests_total * 0 + 200))",
    "label_replace(sum by (cluster) (rate(istio_requests_total[5m])), \"region\", \"eu-$1\", \"cluster\", \"k8s-(.*)\")",
    "sum by (cluster) (rate(istio_requests_total[5m])) > bool 0.5",
    "rate(istio_requests_total{reporter=\"source\",response_code=\"200\"}[5m]) and on (cluster) (sum by (cluster) (rate(istio_requests_total[5m])) > 0)",
    "absent(istio_requests_total{cluster=\"nowhere\"})",
    "max_over_time(sum by (cluster) (rate(istio_requests_total[1m]))[10m:30s])",
    "deriv(sum by (cluster) (istio_requests_total)[5m:])",
    "sum by (cluster) (changes(istio_requests_total[5m]))",
    "group by (cluster, destination_version) (istio_requests_total)",
    "stddev by (cluster) (rate(istio_requests_total[5m]))",
    "sum by (cluster) (resets(istio_requests_total[10m]))",
    "timestamp(sum by (cluster) (istio_requests_total))",
    "vector(1) + on() group_left count(istio_requests_total)",
];

/// Range queries (query, range seconds, step seconds) of the set.
pub fn range_queries() -> Vec<(&'static str, f64, f64)> {
    vec![
        (SUCCESS_RATE_QUERY, 1200.0, 20.0),
        (QUERIES[0], 1200.0, 30.0),
        (QUERIES[3], 1200.0, 30.0),
        (QUERIES[14], 1200.0, 60.0),
        (QUERIES[11], 900.0, 45.0),
    ]
}
