//! Merges HA replicas of a series into one series by the penalty rule.
//!
//! Series that are equal once the replica labels are dropped are replicas of
//! one series. The merge stays on one replica and switches only when that
//! replica has been silent for more than twice its own scrape gap; the
//! other replica then fills the hole from half a gap after the last sample
//! taken, so the sample rate stays that of one replica.
//!
//! Float and native histogram samples are one stream here, as Thanos's
//! dedup iterator reads them: a series that turns from floats into
//! histograms (or back) is merged by time whatever the kind, and counter
//! adjustment applies only between two float samples (Thanos adjusts
//! float counters only; Prometheus has no replica dedup).

use std::collections::BTreeMap;

use super::points::{points_of, split, Timed};
use crate::model::{Labels, Series};

/// Deduplicates `series` (sorted by labels) over `replica_labels`. With
/// `counter_adjust`, a switch to a replica whose counter is behind shifts
/// that replica's values so the merged counter does not go backwards.
/// The result is sorted by its (replica-free) labels.
pub fn dedup(series: Vec<Series>, replica_labels: &[String], counter_adjust: bool) -> Vec<Series> {
    if replica_labels.is_empty() {
        return series;
    }
    let mut groups: BTreeMap<Labels, Vec<Series>> = BTreeMap::new();
    for mut s in series {
        let mut key = s.labels.clone();
        key.retain(|l| !replica_labels.iter().any(|r| r == &l.name));
        s.labels = key.clone();
        groups.entry(key).or_default().push(s);
    }
    groups
        .into_iter()
        .map(|(labels, mut replicas)| {
            let (samples, histograms) = if replicas.len() == 1 {
                replicas
                    .pop()
                    .map(|s| (s.samples, s.histograms))
                    .unwrap_or_default()
            } else if replicas.iter().all(|r| r.histograms.is_empty()) {
                let lists: Vec<&[_]> = replicas.iter().map(|r| r.samples.as_slice()).collect();
                (merge_replicas(&lists, counter_adjust), Vec::new())
            } else {
                let points: Vec<_> = replicas.iter().map(points_of).collect();
                let lists: Vec<&[_]> = points.iter().map(Vec::as_slice).collect();
                split(merge_replicas(&lists, counter_adjust))
            };
            Series {
                labels,
                samples,
                histograms,
            }
        })
        .collect()
}

/// The penalty merge of several replicas' samples (each in time order).
fn merge_replicas<P: Timed>(samples: &[&[P]], counter_adjust: bool) -> Vec<P> {
    let n = samples.len();
    // Next unread index per replica.
    let mut next = vec![0usize; n];
    // Offset added to each replica's values (counter adjustment).
    let mut adj = vec![0.0f64; n];
    let total: usize = samples.iter().map(|s| s.len()).sum();
    let mut out: Vec<P> = Vec::with_capacity(total / n + 1);

    // Start on the replica with the earliest sample (the first on a tie).
    let Some(mut cur) = (0..n)
        .filter(|&r| !samples[r].is_empty())
        .min_by_key(|&r| (samples[r][0].time(), r))
    else {
        return out;
    };
    loop {
        let last_t = out.last().map(Timed::time);
        // Skip what is not after the last sample taken.
        if let Some(lt) = last_t {
            for r in 0..n {
                while next[r] < samples[r].len() && samples[r][next[r]].time() <= lt {
                    next[r] += 1;
                }
            }
        }
        let t_cur = samples[cur].get(next[cur]).map(Timed::time);
        // The current replica's own scrape gap, from its last two samples.
        let gap = (next[cur] >= 2)
            .then(|| samples[cur][next[cur] - 1].time() - samples[cur][next[cur] - 2].time());
        let stay = match (last_t, t_cur, gap) {
            (None, _, _) => true,
            (Some(_), Some(_), None) => true,
            (Some(lt), Some(tc), Some(g)) => tc <= lt + 2 * g,
            (Some(_), None, _) => false,
        };
        let mut pick = if stay && t_cur.is_some() {
            Some(cur)
        } else {
            None
        };
        if pick.is_none() {
            // The current replica is silent: the earliest sample of another
            // replica from half a gap after the last one taken, if it comes
            // before the current replica's next.
            let lt = last_t.unwrap_or(i64::MIN);
            let from = lt.saturating_add(gap.unwrap_or(0) / 2);
            let mut best: Option<(i64, usize, usize)> = None;
            for r in (0..n).filter(|&r| r != cur) {
                let i = next[r] + samples[r][next[r]..].partition_point(|s| s.time() <= from);
                if let Some(s) = samples[r].get(i) {
                    if best.is_none_or(|(bt, _, _)| s.time() < bt) {
                        best = Some((s.time(), r, i));
                    }
                }
            }
            match (best, t_cur) {
                (Some((bt, r, i)), tc) if tc.is_none_or(|tc| bt < tc) => {
                    next[r] = i;
                    if counter_adjust {
                        let prev = out.last().and_then(Timed::float);
                        if let (Some(prev), Some(v)) = (prev, samples[r][i].float()) {
                            let v = v + adj[r];
                            if v < prev {
                                adj[r] += prev - v;
                            }
                        }
                    }
                    cur = r;
                    pick = Some(r);
                }
                (_, Some(_)) => pick = Some(cur),
                (_, None) => {}
            }
        }
        let Some(r) = pick else { break };
        out.push(samples[r][next[r]].shifted(adj[r]));
        next[r] += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::histogram::{FloatHistogram, HistogramSample};
    use crate::model::Sample;
    use proptest::prelude::*;
    use std::sync::Arc;

    /// A replica that turns from floats into histograms at `switch_t`.
    fn mixed(name: &str, times: &[i64], switch_t: i64) -> Series {
        let mut s = replica(name, &[]);
        for &t in times {
            if t < switch_t {
                s.samples.push(Sample { t, v: t as f64 });
            } else {
                s.histograms.push(HistogramSample {
                    t,
                    h: Arc::new(FloatHistogram {
                        count: t as f64,
                        sum: 1.0,
                        ..FloatHistogram::default()
                    }),
                });
            }
        }
        s
    }

    #[test]
    fn histograms_and_floats_are_one_stream_for_the_penalty_rule() {
        let full: Vec<i64> = (0..80).map(|i| i * 15_000 + 3).collect();
        let holed: Vec<i64> = full
            .iter()
            .copied()
            .filter(|t| !(300_000..900_000).contains(t))
            .collect();
        for order in [["a", "b"], ["b", "a"]] {
            let out = dedup(
                vec![
                    mixed(order[0], &holed, 600_000),
                    mixed(order[1], &full, 600_000),
                ],
                &replicas(),
                true,
            );
            assert_eq!(out.len(), 1);
            let want = mixed("x", &full, 600_000);
            assert_eq!(out[0].samples, want.samples, "order {order:?}");
            assert_eq!(out[0].histograms, want.histograms, "order {order:?}");
        }
    }

    fn replica(name: &str, samples: &[(i64, f64)]) -> Series {
        Series {
            labels: Labels::from_pairs([("__name__", "x"), ("replica", name)]),
            samples: samples.iter().map(|&(t, v)| Sample { t, v }).collect(),
            histograms: Vec::new(),
        }
    }

    fn replicas() -> Vec<String> {
        vec!["replica".to_string()]
    }

    fn regular(from: i64, to: i64, step: i64, jitter: i64) -> Vec<(i64, f64)> {
        (from..to)
            .step_by(step as usize)
            .map(|t| (t + jitter, (t / step) as f64))
            .collect()
    }

    #[test]
    fn identical_replicas_give_one_back() {
        let data = regular(0, 300_000, 15_000, 7);
        let out = dedup(
            vec![replica("a", &data), replica("b", &data)],
            &replicas(),
            false,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].labels, Labels::from_pairs([("__name__", "x")]));
        let want: Vec<Sample> = data.iter().map(|&(t, v)| Sample { t, v }).collect();
        assert_eq!(out[0].samples, want);
    }

    #[test]
    fn a_hole_is_filled_from_the_other_replica() {
        let full = regular(0, 1_200_000, 15_000, 3);
        let holed: Vec<(i64, f64)> = full
            .iter()
            .copied()
            .filter(|&(t, _)| !(300_000..900_000).contains(&t))
            .collect();
        for order in [["a", "b"], ["b", "a"]] {
            let out = dedup(
                vec![replica(order[0], &holed), replica(order[1], &full)],
                &replicas(),
                false,
            );
            let want: Vec<Sample> = full.iter().map(|&(t, v)| Sample { t, v }).collect();
            assert_eq!(out[0].samples, want, "order {order:?}");
        }
    }

    #[test]
    fn offset_replicas_keep_one_replicas_rate() {
        // b scrapes 1 s after a; a stops at 150 s.
        let a = regular(0, 150_000, 15_000, 0);
        let b = regular(0, 300_000, 15_000, 1000);
        let out = dedup(vec![replica("a", &a), replica("b", &b)], &replicas(), false);
        let ts: Vec<i64> = out[0].samples.iter().map(|s| s.t).collect();
        for w in ts.windows(2) {
            assert!(w[1] - w[0] >= 7_500, "samples too close: {w:?}");
            assert!(w[1] - w[0] <= 30_000, "hole left: {w:?}");
        }
        assert_eq!(ts.last(), Some(&286_000));
    }

    #[test]
    fn counter_switch_does_not_go_backwards() {
        // b's counter lags a's by 15; a stops half way.
        let a: Vec<(i64, f64)> = (0..10)
            .map(|i| (i * 15_000, 100.0 + i as f64 * 10.0))
            .collect();
        let b: Vec<(i64, f64)> = (0..20)
            .map(|i| (i * 15_000 + 1, 85.0 + i as f64 * 10.0))
            .collect();
        let out = dedup(vec![replica("a", &a), replica("b", &b)], &replicas(), true);
        let vs: Vec<f64> = out[0].samples.iter().map(|s| s.v).collect();
        assert!(vs.windows(2).all(|w| w[1] >= w[0]), "{vs:?}");
        let plain = dedup(vec![replica("a", &a), replica("b", &b)], &replicas(), false);
        assert!(plain[0].samples.windows(2).any(|w| w[1].v < w[0].v));
    }

    #[test]
    fn no_replica_labels_leaves_series_alone() {
        let s = vec![replica("a", &[(1, 1.0)]), replica("b", &[(1, 1.0)])];
        assert_eq!(dedup(s.clone(), &[], false), s);
    }

    fn arb_replica() -> impl Strategy<Value = Vec<(i64, f64)>> {
        prop::collection::btree_map(0i64..200, -10i32..10, 0..40)
            .prop_map(|m| m.into_iter().map(|(t, v)| (t * 1000, v as f64)).collect())
    }

    proptest! {
        #[test]
        fn order_of_sources_does_not_matter(a in arb_replica(), b in arb_replica(), c in arb_replica()) {
            let one = dedup(vec![replica("a", &a), replica("b", &b), replica("c", &c)], &replicas(), true);
            let mut shuffled = vec![replica("c", &c), replica("a", &a), replica("b", &b)];
            shuffled.sort_by(|x, y| x.labels.cmp(&y.labels));
            let two = dedup(shuffled, &replicas(), true);
            prop_assert_eq!(one, two);
        }

        #[test]
        fn output_is_time_ordered_and_drawn_from_inputs(a in arb_replica(), b in arb_replica()) {
            let out = dedup(vec![replica("a", &a), replica("b", &b)], &replicas(), false);
            for s in &out {
                prop_assert!(s.samples.windows(2).all(|w| w[0].t < w[1].t));
                for smp in &s.samples {
                    prop_assert!(a.iter().chain(b.iter()).any(|&(t, v)| t == smp.t && v == smp.v));
                }
            }
        }

        #[test]
        fn a_replica_with_itself_is_itself(a in arb_replica()) {
            let out = dedup(vec![replica("a", &a), replica("b", &a)], &replicas(), true);
            let want: Vec<Sample> = a.iter().map(|&(t, v)| Sample { t, v }).collect();
            if want.is_empty() {
                prop_assert!(out.is_empty() || out[0].samples.is_empty());
            } else {
                prop_assert_eq!(&out[0].samples, &want);
            }
        }
    }
}
