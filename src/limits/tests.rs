//! Unit tests of admission, the budget and query shapes, over a real
//! federation of memory sources.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::api::{ApiError, ErrorType};
use crate::federation::{Backend, Federation, FederationOptions};
use crate::model::Labels;
use crate::promql::{EngineError, QueryResult};
use crate::source::memory::MemorySource;
use crate::source::{Select, Source};
use axum::response::IntoResponse;
use promql_parser::label::{MatchOp, Matcher};

/// Two backends, each with `series` series of 10 samples.
fn federation(series: usize, partial: bool) -> Federation {
    let backend = |cluster: &str| {
        let mut m = MemorySource::new();
        for i in 0..series {
            let l = Labels::from_pairs([("__name__", "up"), ("i", &i.to_string())]);
            for t in 0..10 {
                m.add(l.clone(), t * 1000, 1.0);
            }
        }
        Backend {
            name: cluster.to_string(),
            external_labels: [("cluster".to_string(), cluster.to_string())].into(),
            source: Arc::new(m),
        }
    };
    Federation::new(
        vec![backend("k8s-1"), backend("k8s-2")],
        FederationOptions {
            partial_response: partial,
            replica_labels: vec![],
        },
    )
}

fn select_up() -> Select {
    Select {
        matchers: vec![Matcher::new(MatchOp::Equal, "__name__", "up")],
        start_ms: 0,
        end_ms: 60_000,
        hints: Default::default(),
        read: Default::default(),
    }
}

fn limits(f: impl FnOnce(&mut LimitsConfig)) -> Limits {
    let mut c = LimitsConfig::default();
    f(&mut c);
    Limits::new(c)
}

/// Runs one select of `up` as a query under `l`.
async fn run_select(l: &Limits, fed: Arc<Federation>) -> Result<QueryResult, ApiError> {
    l.run("instant", "up", Duration::from_secs(5), async move {
        let out = fed.select(&select_up()).await?;
        Ok(QueryResult {
            value: crate::promql::Value::Scalar {
                t: 0,
                v: out.series.len() as f64,
            },
            warnings: out.warnings,
            infos: vec![],
        })
    })
    .await
}

#[tokio::test]
async fn samples_are_counted_across_backends_and_limited() {
    // 2 backends x 3 series x 10 samples = 60 samples.
    let fed = Arc::new(federation(3, false));
    let at_limit = limits(|c| c.max_samples = 60);
    assert!(run_select(&at_limit, fed.clone()).await.is_ok());
    for partial in [false, true] {
        let fed = Arc::new(federation(3, partial));
        let over = limits(|c| c.max_samples = 59);
        let e = run_select(&over, fed).await.expect_err("over the limit");
        assert_eq!(e.kind, ErrorType::Execution, "partial={partial}");
        assert_eq!(e.message, TOO_MANY_SAMPLES);
        assert_eq!(e.into_response().status().as_u16(), 422);
    }
}

#[tokio::test]
async fn series_per_backend_are_limited() {
    let fed = Arc::new(federation(5, true));
    assert!(
        run_select(&limits(|c| c.max_series_per_backend = 5), fed.clone())
            .await
            .is_ok()
    );
    let e = run_select(&limits(|c| c.max_series_per_backend = 4), fed)
        .await
        .expect_err("over the limit");
    assert_eq!(e.kind, ErrorType::Execution);
    assert!(
        e.message.contains("returned 5 series")
            && e.message.contains("limits.max_series_per_backend"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn context_records_backends_and_samples() {
    let fed = federation(2, false);
    let ctx = Arc::new(QueryContext::new(&LimitsConfig::default()));
    scope(ctx.clone(), fed.select(&select_up()))
        .await
        .expect("select");
    assert_eq!(ctx.samples(), 40);
    assert_eq!(ctx.backends(), ["k8s-1", "k8s-2"]);
    // Outside a scope nothing is charged and nothing fails.
    assert!(current().is_none());
}

#[test]
fn queries_share_one_memory_pool() {
    let pool = Arc::new(memory::MemoryPool::new(1000));
    let cfg = LimitsConfig::default();
    let a = QueryContext::new(&cfg).with_memory(pool.clone(), 800);
    let b = QueryContext::new(&cfg).with_memory(pool.clone(), 800);
    a.hold(0, 700).expect("fits the pool");
    // Within its own budget, but not within what is left of the pool.
    assert_eq!(
        b.hold(0, 400),
        Err(meter::LimitError::Memory { limit: 1000 })
    );
    b.hold(0, 300).expect("fits");
    assert_eq!(b.bytes(), 300);
    // Over its own budget.
    assert_eq!(a.hold(0, 101), Err(meter::LimitError::Bytes { limit: 800 }));
    // An answer kept past its query stays taken until sent.
    let kept = a.keep_bytes(500);
    drop(a);
    assert_eq!(pool.used(), 800);
    drop(kept);
    drop(b);
    assert_eq!(pool.used(), 0);
}

#[test]
fn an_answer_kept_past_its_query_moves_what_it_holds_and_takes_the_rest() {
    let pool = Arc::new(memory::MemoryPool::new(1000));
    let cfg = LimitsConfig::default();
    let q = QueryContext::new(&cfg).with_memory(pool.clone(), 1000);
    q.hold(0, 400).expect("fits");
    // 400 held by the query move, 200 more are taken.
    let kept = q.keep_answer(600).expect("fits the pool");
    assert_eq!((q.bytes(), pool.used(), kept.bytes()), (0, 600, 600));
    drop(q);
    assert_eq!(pool.used(), 600);
    // No room for another 500: refused, nothing taken or moved.
    let r = QueryContext::new(&cfg).with_memory(pool.clone(), 1000);
    r.hold(0, 100).expect("fits");
    assert_eq!(
        r.keep_answer(600).err(),
        Some(meter::LimitError::Memory { limit: 1000 })
    );
    assert_eq!((r.bytes(), pool.used()), (100, 700));
    drop(r);
    drop(kept);
    assert_eq!(pool.used(), 0);
}

#[tokio::test]
async fn fetched_series_are_charged_to_the_byte_budget() {
    // 2 backends x 2 series x 10 samples of 16 bytes, plus labels.
    let fed = federation(2, false);
    let ctx = Arc::new(QueryContext::new(&LimitsConfig::default()));
    scope(ctx.clone(), fed.select(&select_up()))
        .await
        .expect("select");
    assert!(ctx.bytes() > 40 * meter::SAMPLE_BYTES, "{}", ctx.bytes());
    let ctx = Arc::new(QueryContext::new(&LimitsConfig {
        max_query_bytes: Some(40 * meter::SAMPLE_BYTES),
        ..LimitsConfig::default()
    }));
    let e = scope(ctx, fed.select(&select_up()))
        .await
        .expect_err("over the byte budget");
    assert!(e.to_string().contains("limits.max_query_bytes"), "{e}");
}

#[test]
fn timeout_parameter_is_capped() {
    let l = limits(|c| c.query_timeout = Duration::from_secs(10));
    assert_eq!(l.timeout_for(None), Duration::from_secs(10));
    assert_eq!(l.timeout_for(Some(0)), Duration::from_secs(10));
    assert_eq!(l.timeout_for(Some(2_000)), Duration::from_secs(2));
    assert_eq!(l.timeout_for(Some(3_600_000)), Duration::from_secs(10));
}

#[test]
fn query_length_is_limited() {
    let l = limits(|c| c.max_query_length = 8);
    assert!(l.check_query_text("query", "up{a=\"b\"}").is_err());
    assert!(l.check_query_text("query", "sum(up)").is_ok());
}

#[test]
fn query_shape_skips_strings_and_counts_nesting_and_operators() {
    let s = |q: &str| {
        let s = QueryShape::of(q);
        (s.depth, s.operators)
    };
    assert_eq!(s("up"), (0, 0));
    assert_eq!(s("sum(rate(x[5m]))"), (3, 0));
    assert_eq!(s("a + b * c or d"), (0, 3));
    assert_eq!(s(r#"up{job=~"((((a-b)))){}", x!="+"}"#), (1, 1));
    assert_eq!(s(r#"x{a="\"(("}"#), (1, 0));
    assert_eq!(s("`((`"), (0, 0));
    assert_eq!(s("1 >= bool 2 == 3"), (0, 2));
    assert_eq!(s("sum by (order, or_not) (x)"), (1, 0));
    // Unterminated strings and stray closers do not panic.
    assert_eq!(s("\"((("), (0, 0));
    assert_eq!(s(")))(").0, 1);
    assert_eq!(s("é(ü"), (1, 0));
    // Escapes: an escaped quote does not end the literal, an escaped
    // backslash does not escape the quote after it; a trailing escape.
    assert_eq!(s(r#"x{a="\\"}(("#), (2, 0));
    assert_eq!(s(r#"x{a="\"(("}"#), (1, 0));
    assert_eq!(s(r#"'it\'s ( a'(b)"#), (1, 0));
    assert_eq!(s("x{a=\"\\"), (1, 0));
    assert_eq!(s("`a\\`(b)"), (1, 0));
}

#[test]
fn remembered_shapes_are_the_shapes() {
    for i in 0..80 {
        let q = format!(
            "sum(rate(x{{a=\"{}\"}}[5m])) / sum(rate(y[5m])) + {i}",
            "(".repeat(i)
        );
        for _ in 0..2 {
            assert_eq!(QueryShape::remembered(&q), QueryShape::of(&q), "{q}");
        }
    }
    let deep = format!("{}up{}", "sum(".repeat(30), ")".repeat(30));
    assert_eq!(QueryShape::remembered(&deep).depth, 30);
    assert_eq!(QueryShape::remembered(&deep).depth, 30);
}

#[test]
fn deep_and_long_queries_are_refused() {
    let l = Limits::default();
    let deep = format!("{}up{}", "sum(".repeat(200), ")".repeat(200));
    let e = ApiError::from(l.check_query_text("query", &deep).expect_err("too deep"));
    assert!(
        e.message.contains("limits.max_query_depth"),
        "{}",
        e.message
    );
    let chain = vec!["1"; 1500].join("+");
    let e = ApiError::from(
        l.check_query_text("query", &chain)
            .expect_err("too many operators"),
    );
    assert!(
        e.message.contains("limits.max_query_operators"),
        "{}",
        e.message
    );
    let fine = format!("{}up{}", "sum(".repeat(100), ")".repeat(100));
    assert!(l.check_query_text("match[]", &fine).is_ok());
}

/// A query that holds its slot until `release` fires.
async fn held(
    l: &Limits,
    release: tokio::sync::oneshot::Receiver<()>,
) -> Result<QueryResult, ApiError> {
    l.run("instant", "held", Duration::from_secs(5), async move {
        let _ = release.await;
        Ok(QueryResult {
            value: crate::promql::Value::Scalar { t: 0, v: 1.0 },
            warnings: vec![],
            infos: vec![],
        })
    })
    .await
}

#[tokio::test]
async fn a_full_queue_answers_unavailable_at_once() {
    let l = Arc::new(limits(|c| {
        c.max_concurrent_queries = 1;
        c.max_queued_queries = 1;
    }));
    let (tx1, rx1) = tokio::sync::oneshot::channel();
    let (tx2, rx2) = tokio::sync::oneshot::channel();
    let first = tokio::spawn({
        let l = l.clone();
        async move { held(&l, rx1).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = tokio::spawn({
        let l = l.clone();
        async move { held(&l, rx2).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (_tx3, rx3) = tokio::sync::oneshot::channel();
    let started = Instant::now();
    let e = held(&l, rx3).await.expect_err("queue is full");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(e.kind, ErrorType::Unavailable);
    assert!(e.message.contains("too many queries"), "{}", e.message);
    assert_eq!(e.into_response().status().as_u16(), 503);
    // The queued query runs once the first one ends.
    let _ = tx1.send(());
    assert!(first.await.expect("join").is_ok());
    let _ = tx2.send(());
    assert!(second.await.expect("join").is_ok());
}

#[tokio::test]
async fn waiting_in_the_queue_counts_against_the_timeout() {
    let l = Arc::new(limits(|c| c.max_concurrent_queries = 1));
    let (tx1, rx1) = tokio::sync::oneshot::channel();
    let first = tokio::spawn({
        let l = l.clone();
        async move { held(&l, rx1).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let e = l
        .run("instant", "q", Duration::from_millis(200), async {
            Err::<(), _>(ApiError::from(EngineError::Execution(
                "must not run".into(),
            )))
        })
        .await
        .expect_err("times out in the queue");
    assert_eq!(e.kind, ErrorType::Timeout);
    assert!(started.elapsed() < Duration::from_secs(2));
    let _ = tx1.send(());
    assert!(first.await.expect("join").is_ok());
}

#[tokio::test]
async fn evaluation_past_the_deadline_is_a_timeout() {
    let l = Limits::default();
    let e = l
        .run("range", "slow", Duration::from_millis(100), async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Err::<(), _>(ApiError::from(EngineError::Execution("unreachable".into())))
        })
        .await
        .expect_err("times out");
    assert_eq!(e.kind, ErrorType::Timeout);
    assert_eq!(e.into_response().status().as_u16(), 503);
}

#[test]
fn limits_config_validates_and_refuses_unknown_fields() {
    let c: LimitsConfig =
        serde_yaml_ng::from_str("max_samples: 0\nquery_timeout: 0s\n").expect("parses");
    assert_eq!(c.validate().len(), 2, "{:?}", c.validate());
    assert!(serde_yaml_ng::from_str::<LimitsConfig>("max_sampels: 3\n").is_err());
}
