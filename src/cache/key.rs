//! Cache keys: a query's canonical text, the time grid and the options.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;
use std::sync::{Arc, RwLock};

use promql_parser::parser::{AtModifier, Expr};
use promql_parser::util::visitor::{walk_expr, walk_expr_mut, ExprVisitor, ExprVisitorMut};

use crate::promql::QueryOptions;

/// Bumped whenever the meaning of a stored entry changes, so replicas of
/// different versions sharing one Redis never read each other's entries.
pub const KEY_VERSION: &str = "v1";

/// A query as the cache keys and evaluates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical {
    /// The text that is evaluated and keyed: the parsed query printed back
    /// when that round-trips to the same query, else the text as sent.
    pub text: String,
    /// True when `text` is the printed AST (whitespace and matcher order do
    /// not matter), false when it is the raw text.
    pub printed: bool,
    /// False when the query uses `@ start()` or `@ end()`: its value at one
    /// step then depends on the range, so range extents cannot be reused.
    pub range_cacheable: bool,
}

impl Canonical {
    /// Canonicalises `query`; `None` when it does not parse (the engine then
    /// answers with its own error, uncached).
    pub fn of(query: &str) -> Option<Canonical> {
        let ast = crate::model::query_text::parse(query).ok()?;
        let printed = ast.to_string();
        // Printing must not lose meaning: the printed text has to parse back
        // to the same tree (up to matcher order, which Display sorts).
        let same = crate::model::query_text::parse(&printed)
            .map(|back| normalized(back) == normalized(ast.clone()))
            .unwrap_or(false);
        let range_cacheable = !uses_range_bounds(&ast);
        Some(if same {
            Canonical {
                text: printed,
                printed: true,
                range_cacheable,
            }
        } else {
            Canonical {
                text: query.to_string(),
                printed: false,
                range_cacheable,
            }
        })
    }

    /// Appends the query part of a key: the two kinds of text never
    /// collide.
    fn push_key_part(&self, k: &mut String) {
        k.push(if self.printed { 'c' } else { 'r' });
        k.push(':');
        k.push_str(&self.text);
    }
}

/// Raw query text → its canonical form (`None`: does not parse), so that a
/// query sent again is not parsed again. Bounded by bytes: when full it
/// starts over (the forms are a pure function of the text, so forgetting
/// costs only a re-parse). A plain map under a read-mostly lock: on the
/// hot path a lookup is one hash and one compare.
pub struct CanonMemo {
    map: RwLock<HashMap<String, Option<Arc<Canonical>>, foldhash::fast::RandomState>>,
    bytes: AtomicUsize,
    max_bytes: usize,
}

impl CanonMemo {
    pub fn new(max_bytes: usize) -> Self {
        CanonMemo {
            map: RwLock::new(HashMap::default()),
            bytes: AtomicUsize::new(0),
            max_bytes,
        }
    }

    /// The canonical form of `query` if it has been seen (the outer
    /// `None` when not): a lookup that never parses.
    pub fn peek(&self, query: &str) -> Option<Option<Arc<Canonical>>> {
        match self.map.read() {
            Ok(m) => m.get(query).cloned(),
            Err(poisoned) => poisoned.into_inner().get(query).cloned(),
        }
    }

    /// The canonical form of `query`, parsed on first sight.
    pub fn get(&self, query: &str) -> Option<Arc<Canonical>> {
        let held = match self.map.read() {
            Ok(m) => m.get(query).cloned(),
            Err(poisoned) => poisoned.into_inner().get(query).cloned(),
        };
        if let Some(c) = held {
            return c;
        }
        crate::telemetry::placement::needs_workers("parsing a query");
        let c = Canonical::of(query).map(Arc::new);
        let weight = query.len() + c.as_ref().map_or(0, |c| c.text.len()) + 64;
        let mut map = match self.map.write() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if self.bytes.load(Ordering::Relaxed) + weight > self.max_bytes {
            map.clear();
            self.bytes.store(0, Ordering::Relaxed);
        }
        if weight <= self.max_bytes && map.insert(query.to_string(), c.clone()).is_none() {
            self.bytes.fetch_add(weight, Ordering::Relaxed);
        }
        c
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.read().map_or(0, |m| m.len())
    }
}

/// `t` rounded down to a multiple of `grid` (both ms, `grid > 0`).
pub fn round_down(t: i64, grid: i64) -> i64 {
    t.div_euclid(grid) * grid
}

/// A key under construction: `kind|version|options|variant|` and room for
/// the rest. Every option that can change an answer is in it as text: the
/// `Debug` form of [`QueryOptions`] names every field, so a field added
/// later is keyed too; `variant` is the key of the request's federation
/// options. (Built by hand, not with `format!`: this runs on every hit.)
fn key_start(kind: &str, q: &Canonical, opts: &QueryOptions, variant: &str) -> String {
    let mut k = String::with_capacity(q.text.len() + variant.len() + 96);
    k.push_str(kind);
    k.push('|');
    k.push_str(KEY_VERSION);
    k.push('|');
    if *opts == QueryOptions::default() {
        k.push_str(&DEFAULT_OPTIONS);
    } else {
        let _ = write!(k, "{opts:?}");
    }
    k.push('|');
    k.push_str(variant);
    k.push('|');
    k
}

/// The `Debug` text of the default options, written once.
static DEFAULT_OPTIONS: LazyLock<String> =
    LazyLock::new(|| format!("{:?}", QueryOptions::default()));

/// Appends `n` and a `|`.
fn push_int(k: &mut String, n: i64) {
    let _ = write!(k, "{n}|");
}

/// Key of an instant answer at the rounded time `t_rounded`.
pub fn instant_key(q: &Canonical, t_rounded: i64, opts: &QueryOptions, variant: &str) -> String {
    let mut k = key_start("i", q, opts, variant);
    push_int(&mut k, t_rounded);
    q.push_key_part(&mut k);
    k
}

/// Key of the extents of a range query: points at `offset + k * step`.
pub fn range_key(
    q: &Canonical,
    step: i64,
    start: i64,
    opts: &QueryOptions,
    variant: &str,
) -> String {
    let mut k = key_start("r", q, opts, variant);
    push_int(&mut k, step);
    push_int(&mut k, start.rem_euclid(step));
    q.push_key_part(&mut k);
    k
}

/// The tree with the matchers of every selector in a fixed order.
fn normalized(mut e: Expr) -> Expr {
    struct SortMatchers;
    impl ExprVisitorMut for SortMatchers {
        type Error = Infallible;
        fn pre_visit(&mut self, e: &mut Expr) -> Result<bool, Infallible> {
            let ms = match e {
                Expr::VectorSelector(vs) => &mut vs.matchers,
                Expr::MatrixSelector(m) => &mut m.vs.matchers,
                _ => return Ok(true),
            };
            ms.matchers.sort_by_cached_key(|m| m.to_string());
            Ok(true)
        }
    }
    // Infallible: the walk cannot fail.
    let _ = walk_expr_mut(&mut SortMatchers, &mut e);
    e
}

/// True when any selector or subquery uses `@ start()` or `@ end()`.
fn uses_range_bounds(e: &Expr) -> bool {
    struct Finder(bool);
    impl ExprVisitor for Finder {
        type Error = Infallible;
        fn pre_visit(&mut self, e: &Expr) -> Result<bool, Infallible> {
            let at = match e {
                Expr::VectorSelector(vs) => &vs.at,
                Expr::MatrixSelector(m) => &m.vs.at,
                Expr::Subquery(s) => &s.at,
                _ => return Ok(true),
            };
            if matches!(at, Some(AtModifier::Start | AtModifier::End)) {
                self.0 = true;
                return Ok(false);
            }
            Ok(true)
        }
    }
    let mut f = Finder(false);
    let _ = walk_expr(&mut f, e);
    f.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(q: &str) -> Canonical {
        Canonical::of(q).unwrap_or_else(|| panic!("{q} parses"))
    }

    #[test]
    fn whitespace_and_matcher_order_do_not_matter() {
        let variants = [
            r#"sum(rate(istio_requests_total{reporter="destination",response_code!~"5.*"}[1m])) / sum(rate(istio_requests_total{reporter="destination"}[1m]))"#,
            r#"sum( rate( istio_requests_total{ response_code!~"5.*", reporter="destination" }[1m] ) )
               /
               sum(rate(istio_requests_total{reporter="destination"}[60s]))"#,
        ];
        let a = canon(variants[0]);
        let b = canon(variants[1]);
        assert!(a.printed && b.printed, "{a:?} {b:?}");
        assert_eq!(a.text, b.text);
        assert_eq!(
            instant_key(&a, 10_000, &QueryOptions::default(), ""),
            instant_key(&b, 10_000, &QueryOptions::default(), "")
        );
    }

    #[test]
    fn different_queries_get_different_keys() {
        let qs = [
            "up",
            "up{job=\"a\"}",
            "up{job=\"b\"}",
            "up{job!=\"a\"}",
            "up{job=~\"a\"}",
            "rate(up[1m])",
            "rate(up[2m])",
            "up offset 1m",
            "sum by (job) (up)",
            "sum without (job) (up)",
            "1 + 2",
            "1 - 2",
            "0.1",
            "1e-10",
        ];
        let keys: std::collections::HashSet<String> = qs
            .iter()
            .map(|q| instant_key(&canon(q), 0, &QueryOptions::default(), ""))
            .collect();
        assert_eq!(keys.len(), qs.len());
    }

    #[test]
    fn printed_text_means_the_same_query() {
        // Whatever the printer does, the printed text parses back to the
        // same tree, or the raw text is used.
        for q in [
            "up @ 100",
            "up @ start()",
            "rate(up[5m:30s] offset -1m)",
            "histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))",
            "a * on (x) group_left (y) b",
            "a and on (x) b",
            r#"{__name__="up", job="a\"b"}"#,
            r#"label_replace(up, "dst", "$1", "src", "(.*)")"#,
            "-(+1)",
            "topk(3, up) > bool 0.5",
        ] {
            let c = canon(q);
            let orig = promql_parser::parser::parse(q).expect("parses");
            let back = promql_parser::parser::parse(&c.text).expect("canonical parses");
            assert_eq!(normalized(orig), normalized(back), "{q} -> {}", c.text);
        }
    }

    #[test]
    fn start_and_end_block_range_reuse() {
        assert!(canon("rate(up[1m])").range_cacheable);
        assert!(canon("up @ 100").range_cacheable);
        assert!(!canon("up @ start()").range_cacheable);
        assert!(!canon("sum(rate(up[1m] @ end()))").range_cacheable);
        assert!(!canon("max_over_time(up[5m:1m] @ start())").range_cacheable);
    }

    #[test]
    fn unparsable_queries_have_no_canonical_form() {
        assert!(Canonical::of("sum(").is_none());
        assert!(Canonical::of("").is_none());
    }

    #[test]
    fn the_memo_parses_once_and_starts_over_when_full() {
        let memo = CanonMemo::new(400);
        let a = memo.get("sum(up)").expect("parses");
        assert_eq!(a.text, canon("sum(up)").text);
        // The same Arc: not parsed again.
        assert!(Arc::ptr_eq(&a, &memo.get("sum(up)").expect("parses")));
        assert!(memo.get("sum(").is_none());
        assert_eq!(memo.len(), 2);
        // Filling past the bound drops everything, then keeps going.
        for i in 0..10 {
            assert!(memo.get(&format!("up + {i}")).is_some());
        }
        assert!(memo.len() < 10, "bounded: {}", memo.len());
        let again = memo.get("sum(up)").expect("parses");
        assert_eq!(again.text, a.text);
        // Text longer than the whole bound is answered, not kept.
        let long = format!("up{{a=\"{}\"}}", "x".repeat(500));
        assert!(memo.get(&long).is_some());
        assert!(memo.len() <= 10);
    }

    /// Keys are shared through Redis between promfed versions with the same
    /// KEY_VERSION, so their text must not drift: the layout as documented.
    #[test]
    #[allow(clippy::field_reassign_with_default)]
    fn key_text_layout_is_stable() {
        let c = canon("sum by (a) (rate(x{b=\"1\"}[5m]))");
        let raw = Canonical {
            text: "raw text".into(),
            printed: false,
            range_cacheable: true,
        };
        let mut o = QueryOptions::default();
        for lookback in [300_000, 60_000] {
            o.lookback_delta_ms = lookback;
            assert_eq!(
                instant_key(&c, -20_000, &o, "v"),
                format!("i|v1|{o:?}|v|-20000|c:{}", c.text)
            );
            assert_eq!(
                range_key(&raw, 15_000, 1_000_003, &o, ""),
                format!("r|v1|{o:?}||15000|10003|r:raw text")
            );
        }
        assert_eq!(
            format!("{:?}", QueryOptions::default()),
            "QueryOptions { lookback_delta_ms: 300000 }"
        );
    }

    #[test]
    #[allow(clippy::field_reassign_with_default)]
    fn options_and_grid_are_part_of_the_key() {
        let c = canon("up");
        let d = QueryOptions::default();
        let mut o = QueryOptions::default();
        o.lookback_delta_ms = 60_000;
        assert_ne!(instant_key(&c, 0, &d, ""), instant_key(&c, 0, &o, ""));
        assert_ne!(instant_key(&c, 0, &d, ""), instant_key(&c, 10_000, &d, ""));
        // Federation options (partial response, dedup) are part of the key.
        assert_ne!(
            instant_key(&c, 0, &d, ""),
            instant_key(&c, 0, &d, "partial_response=true")
        );
        assert_eq!(round_down(19_999, 10_000), 10_000);
        assert_eq!(round_down(20_000, 10_000), 20_000);
        assert_eq!(round_down(-1, 10_000), -10_000);
        // Range keys: same offset within the step share extents.
        assert_eq!(
            range_key(&c, 30_000, 0, &d, ""),
            range_key(&c, 30_000, 90_000, &d, "")
        );
        assert_ne!(
            range_key(&c, 30_000, 0, &d, ""),
            range_key(&c, 30_000, 1_000, &d, "")
        );
        assert_ne!(
            range_key(&c, 30_000, 0, &d, ""),
            range_key(&c, 15_000, 0, &d, "")
        );
    }
}
