//! Shares one read between selectors that differ only in matchers the
//! engine can apply itself: with `x{a="1"}` read anyway,
//! `x{a="1", b!~"5.*"}` over the same time range is not read again but
//! taken from its series, keeping those whose `b` matches.

use promql_parser::label::Matcher;

use crate::model::Labels;
use crate::source::matches_all;

/// What the narrowing needs to know about one planned read.
pub(super) struct ReadShape<'a> {
    /// The function hint (reads are shared only under the same one).
    pub func: &'a str,
    /// The read's matcher alternatives (only single sets take part).
    pub sets: &'a [Vec<Matcher>],
    pub mint: i64,
    pub maxt: i64,
}

/// A read answered from another read's series.
#[derive(Debug, Clone)]
pub(super) struct Narrowed {
    /// The read whose series it filters.
    pub base: usize,
    /// The matchers the base lacks, applied to its series.
    pub extra: Vec<Matcher>,
}

impl Narrowed {
    /// Whether a series of the base belongs to this read.
    pub fn keeps(&self, labels: &Labels) -> bool {
        matches_all(labels, &self.extra)
    }
}

fn key(m: &Matcher) -> String {
    format!("{}{}{:?}", m.name, m.op, m.value)
}

/// For each read, `Some` when it can be answered from a wider read of the
/// same function hint whose matchers are a strict subset of its own and
/// whose time range covers its own, none of the missing matchers being on
/// a replica label (`replicas`: dedup merges over those, so they must
/// reach the source; `None`, unknown, turns narrowing off).
pub(super) fn narrow(
    reads: &[ReadShape<'_>],
    replicas: Option<&[String]>,
) -> Vec<Option<Narrowed>> {
    let mut out: Vec<Option<Narrowed>> = vec![None; reads.len()];
    let Some(replicas) = replicas else {
        return out;
    };
    let keys: Vec<Option<Vec<String>>> = reads
        .iter()
        .map(|r| match r.sets {
            [one] => Some(one.iter().map(key).collect()),
            _ => None,
        })
        .collect();
    // Widest first: a read can only narrow one with more matchers.
    let mut order: Vec<usize> = (0..reads.len()).filter(|&i| keys[i].is_some()).collect();
    order.sort_by_key(|&i| keys[i].as_ref().map_or(0, Vec::len));
    let mut bases: Vec<usize> = Vec::new();
    for i in order {
        let (Some(mine), [set]) = (&keys[i], reads[i].sets) else {
            continue;
        };
        let best = bases
            .iter()
            .copied()
            .filter(|&b| {
                reads[b].func == reads[i].func
                    && reads[b].mint <= reads[i].mint
                    && reads[b].maxt >= reads[i].maxt
            })
            .filter_map(|b| {
                let theirs = keys[b].as_ref()?;
                let subset = theirs.len() < mine.len() && theirs.iter().all(|k| mine.contains(k));
                subset.then_some((b, theirs))
            })
            .max_by_key(|(_, theirs)| theirs.len());
        let narrowed = best.and_then(|(b, theirs)| {
            let extra: Vec<Matcher> = set
                .iter()
                .zip(mine)
                .filter(|(_, k)| !theirs.contains(k))
                .map(|(m, _)| m.clone())
                .collect();
            let safe = !extra.is_empty() && extra.iter().all(|m| !replicas.contains(&m.name));
            safe.then_some(Narrowed { base: b, extra })
        });
        match narrowed {
            Some(n) => out[i] = Some(n),
            None => bases.push(i),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql_parser::label::MatchOp;

    fn set(ms: &[(&str, &str)]) -> Vec<Matcher> {
        ms.iter()
            .map(|(n, v)| Matcher::new(MatchOp::Equal, n, v))
            .collect()
    }

    #[test]
    fn a_selector_with_one_more_matcher_is_taken_from_the_wider_one() {
        let wide = [set(&[("__name__", "x"), ("a", "1")])];
        let narrow_set = [set(&[("__name__", "x"), ("a", "1"), ("b", "2")])];
        let other = [set(&[("__name__", "y"), ("a", "1"), ("b", "2")])];
        let shape = |sets, func, mint, maxt| ReadShape {
            func,
            sets,
            mint,
            maxt,
        };
        let reads = [
            shape(&narrow_set[..], "irate", 0, 10),
            shape(&wide[..], "irate", 0, 10),
            shape(&other[..], "irate", 0, 10),
        ];
        let got = narrow(&reads, Some(&[]));
        let n = got[0].as_ref().expect("narrowed");
        assert_eq!(n.base, 1);
        assert_eq!(n.extra.len(), 1);
        assert_eq!(n.extra[0].name, "b");
        assert!(got[1].is_none() && got[2].is_none());
        // Not across function hints, wider ranges, replica labels, or
        // when the source does not say.
        let reads = [
            shape(&narrow_set[..], "rate", 0, 10),
            shape(&wide[..], "irate", 0, 10),
        ];
        assert!(narrow(&reads, Some(&[])).iter().all(Option::is_none));
        let reads = [
            shape(&narrow_set[..], "irate", 0, 11),
            shape(&wide[..], "irate", 0, 10),
        ];
        assert!(narrow(&reads, Some(&[])).iter().all(Option::is_none));
        let reads = [
            shape(&narrow_set[..], "irate", 0, 10),
            shape(&wide[..], "irate", 0, 10),
        ];
        assert!(narrow(&reads, Some(&["b".to_string()]))
            .iter()
            .all(Option::is_none));
        assert!(narrow(&reads, None).iter().all(Option::is_none));
    }
}
