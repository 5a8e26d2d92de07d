//! Re-ranks `topk`/`bottomk` across backends: the union's pick from every
//! backend's own pick, where it is certain.
//!
//! Prometheus keeps a group's best k in a heap: without ties the set it
//! keeps is the k best values whatever order it saw them in, and its
//! answer lists them best first (groups in first-seen order). A tie at the
//! k-th place, among the kept ones, or a NaN makes the pick or its order
//! depend on that heap: not re-ranked. Each backend is asked for its best
//! k + 1, so that a tie at the k-th place shows: a backend's series left
//! out are no better than its last, which is then either worse than the
//! k-th value overall or equal to it (a tie: not re-ranked).

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use crate::model::Labels;
use crate::promql::steps::VSeries;

/// Most `k` re-ranked (a larger one is read raw).
const MAX_K: f64 = 100_000.0;

/// `all`: every backend's answer series with the backend's rank, in the
/// union's order; `top` for topk (else bottomk); `group` a series' group
/// labels; `instant` for a one-step evaluation, answered in Prometheus's
/// order (else the series in first-seen order). `None` when not certain.
pub(super) fn rerank(
    all: Vec<(usize, VSeries)>,
    k: f64,
    top: bool,
    group: impl Fn(&Labels) -> Labels,
    instant: bool,
) -> Option<Vec<VSeries>> {
    if !(1.0..=MAX_K).contains(&k) || k.fract() != 0.0 {
        return None;
    }
    let k = k as usize;
    let mut seen = HashSet::new();
    if !all.iter().all(|(_, s)| seen.insert(&s.labels)) {
        return None;
    }
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (i, (_, s)) in all.iter().enumerate() {
        let g = group(&s.labels);
        let at = *index.entry(g).or_insert_with(|| {
            members.push(Vec::new());
            members.len() - 1
        });
        members.get_mut(at)?.push(i);
    }
    let n = all.first().map(|(_, s)| s.vals.len()).unwrap_or(0);
    let mut keep = vec![vec![false; n]; all.len()];
    let mut order = Vec::new();
    let better = |a: f64, b: f64| {
        let o = a.partial_cmp(&b).unwrap_or(Ordering::Equal);
        if top {
            o.reverse()
        } else {
            o
        }
    };
    for step in 0..n {
        for m in &members {
            let mut c: Vec<(usize, f64)> = m
                .iter()
                .filter_map(|&i| {
                    all.get(i)?
                        .1
                        .vals
                        .get(step)
                        .copied()
                        .flatten()
                        .map(|v| (i, v))
                })
                .collect();
            if c.iter().any(|(_, v)| v.is_nan()) {
                return None;
            }
            c.sort_by(|a, b| better(a.1, b.1));
            let kk = k.min(c.len());
            if kk == 0 {
                continue;
            }
            // Pairs among the kept ones and the one at the boundary.
            if c.windows(2).take(kk).any(|w| w[0].1 == w[1].1) {
                return None;
            }
            let t = c[kk - 1].1;
            let mut per: HashMap<usize, (usize, f64)> = HashMap::new();
            for &(i, v) in &c {
                let e = per.entry(all.get(i)?.0).or_insert((0, v));
                *e = (e.0 + 1, v);
            }
            if per.values().any(|&(count, last)| count > k && last == t) {
                return None;
            }
            for &(i, _) in &c[..kk] {
                if let Some(kept) = keep.get_mut(i).and_then(|r| r.get_mut(step)) {
                    *kept = true;
                }
                if instant {
                    order.push(i);
                }
            }
        }
    }
    let mut all: Vec<Option<VSeries>> = all.into_iter().map(|(_, s)| Some(s)).collect();
    let mut out = Vec::new();
    let picked: Vec<usize> = if instant {
        order
    } else {
        (0..all.len()).collect()
    };
    for i in picked {
        let Some(mut s) = all.get_mut(i).and_then(Option::take) else {
            continue;
        };
        for (v, &kept) in s.vals.iter_mut().zip(&keep[i]) {
            if !kept {
                *v = None;
            }
        }
        if s.vals.iter().any(Option::is_some) {
            out.push(s);
        }
    }
    Some(out)
}
