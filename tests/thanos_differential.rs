//! The project's differential query set (`common::differential`) over real
//! Thanos sidecars: promfed over the sidecars must answer every query as
//! the Prometheus 3.8 union does, instant at times across the rollout (and
//! in and around the HA pair's gap) and as range queries; `thanos query`
//! over the same sidecars is asked the same, and where it answers
//! differently from the union that is printed as a fact, not a failure
//! (docs/benchmarks.md keeps the table).
//!
//! Peers from `scripts/peers`; run with `PROMFED_PEERS_DIR=... cargo test
//! --test thanos_differential -- --nocapture` to see the table.

mod common;
mod thanos_support;

use std::collections::BTreeMap;

use common::compare::{assert_same, difference};
use common::differential::{queries, range_queries};
use common::{query, query_range, ApiResponse, HarnessError, Promfed};
use thanos_support::{sidecars, store_backend, Sidecars, HOLE_SECS};

type R = Result<(), HarnessError>;

/// promfed over the three sidecars, deduplicating on `replica`, the
/// labels from each sidecar's Info.
fn start_promfed(h: &Sidecars) -> Result<Promfed, HarnessError> {
    let mut cfg = String::from("listen: 127.0.0.1:0\nreplica_labels: [replica]\nbackends:\n");
    for s in &h.sidecars {
        cfg.push_str(&store_backend(&s.name, &s.grpc_url(), &[], "20s"));
    }
    Promfed::start(&cfg)
}

/// Instant times: the middle of every step, a counter reset, inside
/// replica b's hole and just after it.
fn instant_times(h: &Sidecars) -> Vec<f64> {
    let s = &h.schedule;
    let mut ts: Vec<f64> = s.steps.iter().map(|x| x.mid() + 0.321).collect();
    ts.push(s.counter_reset.at as f64 + 31.0);
    ts.push((s.start + HOLE_SECS.0) as f64 + 250.5);
    ts.push((s.start + HOLE_SECS.1) as f64 + 20.5);
    ts
}

/// Range windows `end` times: one across the hole, one at the run's end.
fn range_ends(h: &Sidecars) -> Vec<f64> {
    let s = &h.schedule;
    vec![(s.start + HOLE_SECS.1) as f64 + 300.0, s.end as f64 - 0.5]
}

/// Thanos Query's differences from the union, per query.
#[derive(Default)]
struct Differences {
    /// query -> (evaluations, differing, first description)
    rows: BTreeMap<(usize, String), (usize, usize, Option<String>)>,
}

impl Differences {
    fn note(&mut self, order: usize, what: &str, d: Option<String>) {
        let e = self.rows.entry((order, what.to_string())).or_default();
        e.0 += 1;
        if let Some(d) = d {
            e.1 += 1;
            e.2.get_or_insert(d);
        }
    }

    fn print(&self) {
        println!("\n| query | Thanos Query differs from the union | how (first case) |");
        println!("|---|---:|---|");
        for ((_, q), (n, bad, how)) in &self.rows {
            let how = how.as_deref().unwrap_or("same");
            let q = q.replace('|', "\\|");
            println!("| `{q}` | {bad} of {n} | {how} |");
        }
        let bad = self.rows.values().filter(|r| r.1 > 0).count();
        println!(
            "\nThanos Query differs on {bad} of {} queries; promfed on none.\n",
            self.rows.len()
        );
    }
}

/// Compares promfed's and Thanos Query's answers with the union's:
/// promfed must be equal, Thanos Query's difference is noted.
fn judge(
    diffs: &mut Differences,
    order: usize,
    label: &str,
    what: &str,
    got: &ApiResponse,
    thanos: &ApiResponse,
    want: &ApiResponse,
) -> bool {
    let has_data = assert_same(what, got, want);
    diffs.note(order, label, difference(thanos, want));
    has_data
}

#[tokio::test]
async fn the_differential_set_matches_the_union_and_thanos_query_is_reported() -> R {
    let h = sidecars();
    let p = start_promfed(h)?;
    let thanos = h.query.http_url.clone();
    let mut diffs = Differences::default();
    let set = queries();
    for (i, q) in set.iter().enumerate() {
        let mut non_empty = 0;
        for t in instant_times(h) {
            let got = query(&p.url, q, t).await?;
            let th = query(&thanos, q, t).await?;
            let want = query(&h.union.url, q, t).await?;
            if judge(&mut diffs, i, q, &format!("{q} at {t}"), &got, &th, &want) {
                non_empty += 1;
            }
        }
        // A query that is empty everywhere proves nothing: the set must
        // hold queries with answers on this data.
        assert!(non_empty > 0, "{q}: the union answers nothing at any time");
    }
    for (j, (q, range, step)) in range_queries().into_iter().enumerate() {
        let label = format!("{q} [range {range} s, step {step} s]");
        for end in range_ends(h) {
            let start = end - range;
            let got = query_range(&p.url, q, start, end, step).await?;
            let th = query_range(&thanos, q, start, end, step).await?;
            let want = query_range(&h.union.url, q, start, end, step).await?;
            let what = format!("range {q} {start}..{end} step {step}");
            assert!(
                judge(&mut diffs, set.len() + j, &label, &what, &got, &th, &want),
                "{what}: the union answers nothing"
            );
        }
    }
    diffs.print();
    Ok(())
}
