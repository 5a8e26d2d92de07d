//! Arbitrary queries (bounded as the API bounds them) evaluated by the
//! engine over fixed data holding NaN, ±Inf, staleness markers, counter
//! resets and gaps: instant and range. Nothing may panic or hang.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use promfed::limits::{Limits, LimitsConfig};
use promfed::model::{stale_nan, Labels};
use promfed::promql::{Engine, QueryOptions};
use promfed::source::memory::MemorySource;

struct Harness {
    rt: tokio::runtime::Runtime,
    engine: Engine,
    limits: Limits,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let mut m = MemorySource::new();
        let specials = [
            0.0,
            1.0,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e308,
            -0.0,
        ];
        for (i, job) in ["api", "web", "db"].iter().enumerate() {
            for inst in 0..2 {
                let base = [
                    ("job", job.to_string()),
                    ("instance", format!("i{inst}")),
                    ("cluster", format!("k8s-{}", inst + 1)),
                ];
                let labels = |name: &str, extra: &[(&str, &str)]| {
                    let mut pairs: Vec<(String, String)> = vec![("__name__".into(), name.into())];
                    pairs.extend(base.iter().map(|(k, v)| (k.to_string(), v.clone())));
                    pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
                    Labels::from_pairs(pairs)
                };
                for s in 0..40i64 {
                    let t = s * 15_000 + (i as i64) * 7 + inst;
                    // A counter with a reset, a gauge with specials, a stale end.
                    let counter = if s < 25 {
                        s as f64 * 3.0
                    } else {
                        (s - 25) as f64
                    };
                    m.add(
                        labels("http_requests_total", &[("code", "200")]),
                        t,
                        counter,
                    );
                    m.add(
                        labels("gauge", &[]),
                        t,
                        specials[(s as usize + i) % specials.len()],
                    );
                    if s < 30 {
                        m.add(labels("up", &[]), t, 1.0);
                    } else if s == 30 {
                        m.add(labels("up", &[]), t, stale_nan());
                    }
                    for le in ["0.1", "1", "+Inf"] {
                        let n = (s as f64) * le.len() as f64;
                        m.add(labels("latency_bucket", &[("le", le)]), t, n);
                    }
                }
            }
        }
        Harness {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            engine: Engine::new(Arc::new(m)),
            limits: Limits::new(LimitsConfig {
                max_query_length: 4096,
                ..LimitsConfig::default()
            }),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    let h = harness();
    // What the API refuses before parsing never reaches the engine.
    if h.limits.check_query_text("query", q).is_err() {
        return;
    }
    let opts = QueryOptions::default();
    h.rt.block_on(async {
        let limit = std::time::Duration::from_secs(5);
        let _ = tokio::time::timeout(limit, h.engine.instant(q, 300_000, &opts)).await;
        let _ = tokio::time::timeout(limit, h.engine.range(q, 0, 600_000, 30_000, &opts)).await;
    });
});
