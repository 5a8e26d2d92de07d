//! Meters the work one query does off the async runtime: what it builds is
//! charged to its budget before it is built, and long loops stop at the
//! query's deadline or when its caller is gone.
//!
//! A blocking evaluation (or encoding) runs inside [`Meter::enter`]; code
//! below it calls [`charge`], [`tick`] and [`settle`] without carrying the
//! meter through every signature: the meter lives in a thread-local for as
//! long as the guard does. Outside a metered section every call is free and
//! succeeds (tests, the conformance runner).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::QueryContext;

/// Units of work ([`tick`] counts one, [`tick_by`] many) between two looks
/// at the clock and the cancel flag.
const TICKS_PER_CHECK: u64 = 16 * 1024;

/// Why a query may not go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// More samples than `limits.max_samples` would be held at once.
    #[error("{}", super::TOO_MANY_SAMPLES)]
    Samples,
    /// More bytes than `limits.max_query_bytes` would be held at once.
    #[error(
        "query processing would use more than {limit} bytes of memory (limits.max_query_bytes)"
    )]
    Bytes { limit: u64 },
    /// The JSON answer would be larger than `limits.max_response_bytes`.
    #[error(
        "the response would be larger than the limit of {limit} bytes (limits.max_response_bytes)"
    )]
    Response { limit: u64 },
    /// Every query together would hold more than `limits.max_memory_bytes`.
    #[error("promfed is at its memory limit of {limit} bytes for all queries together (limits.max_memory_bytes); try again later")]
    Memory { limit: u64 },
    /// The query's deadline passed (`what`: the stage it was in).
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// Nobody waits for the answer any more.
    #[error("query was canceled in {0}")]
    Canceled(&'static str),
    /// The metered work ended without an outcome (it panicked).
    #[error("{0} aborted")]
    Aborted(&'static str),
}

/// Bytes of an `Option<f64>` (one point of an instant vector at one step).
pub const POINT_BYTES: u64 = 16;
/// Bytes of a `Sample` (timestamp and value).
pub const SAMPLE_BYTES: u64 = 16;

/// Heap bytes of a label set: every name and value plus the per-label and
/// per-set overhead of their allocations.
pub fn label_bytes(labels: &crate::model::Labels) -> u64 {
    24 + labels
        .iter()
        .map(|l| (l.name.len() + l.value.len()) as u64 + 48)
        .sum::<u64>()
}

/// One evaluation's meter: its query's context (budget and deadline), the
/// flag its caller sets when it stops waiting, and what the evaluation holds
/// now.
pub struct Meter {
    ctx: Option<Arc<QueryContext>>,
    canceled: Option<Arc<AtomicBool>>,
    deadline: Option<Instant>,
    /// Samples and bytes this evaluation holds now (charged to `ctx`).
    samples: Cell<u64>,
    bytes: Cell<u64>,
    ticks: Cell<u64>,
    next_check: Cell<u64>,
    /// Stage named in timeout and cancel errors.
    stage: &'static str,
}

thread_local! {
    static METER: RefCell<Option<Rc<Meter>>> = const { RefCell::new(None) };
}

/// Leaves the metered section (restoring the meter it replaced) on drop.
pub struct Entered {
    previous: Option<Rc<Meter>>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = self.previous.take();
        METER.with(|m| *m.borrow_mut() = previous);
    }
}

impl Meter {
    /// A meter for work of the query `ctx` (if any) in `stage`, stopped
    /// when `canceled` is set.
    pub fn new(
        ctx: Option<Arc<QueryContext>>,
        canceled: Option<Arc<AtomicBool>>,
        stage: &'static str,
    ) -> Meter {
        Meter {
            deadline: ctx.as_ref().and_then(|c| c.deadline()),
            ctx,
            canceled,
            samples: Cell::new(0),
            bytes: Cell::new(0),
            ticks: Cell::new(0),
            next_check: Cell::new(TICKS_PER_CHECK),
            stage,
        }
    }

    /// Makes this the current thread's meter until the guard drops.
    pub fn enter(self) -> Entered {
        let me = Rc::new(self);
        let previous = METER.with(|m| m.borrow_mut().replace(me));
        Entered { previous }
    }

    fn check(&self) -> Result<(), LimitError> {
        if self
            .canceled
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Err(LimitError::Canceled(self.stage));
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(LimitError::Timeout(self.stage));
        }
        Ok(())
    }

    fn charge(&self, samples: u64, bytes: u64) -> Result<(), LimitError> {
        self.check()?;
        if let Some(ctx) = &self.ctx {
            ctx.hold(samples, bytes)?;
        }
        self.samples.set(self.samples.get() + samples);
        self.bytes.set(self.bytes.get() + bytes);
        Ok(())
    }

    fn release(&self, samples: u64, bytes: u64) {
        let samples = samples.min(self.samples.get());
        let bytes = bytes.min(self.bytes.get());
        if let Some(ctx) = &self.ctx {
            ctx.unhold(samples, bytes);
        }
        self.samples.set(self.samples.get() - samples);
        self.bytes.set(self.bytes.get() - bytes);
    }
}

fn with<T>(f: impl FnOnce(&Meter) -> T) -> Option<T> {
    METER.with(|m| m.borrow().as_ref().map(|m| f(m)))
}

/// Charges `samples` points and `bytes` about to be built to the current
/// query; `Err` (nothing charged) when that would break a limit, or the
/// query is past its deadline or canceled.
pub fn charge(samples: u64, bytes: u64) -> Result<(), LimitError> {
    with(|m| m.charge(samples, bytes)).unwrap_or(Ok(()))
}

/// Gives back a charge for values that were not built after all.
pub fn release(samples: u64, bytes: u64) {
    with(|m| m.release(samples, bytes));
}

/// What the current evaluation holds now: pass it to [`settle`] when the
/// values built since are gone but one result of `size` remains.
pub fn mark() -> (u64, u64) {
    with(|m| (m.samples.get(), m.bytes.get())).unwrap_or((0, 0))
}

/// Sets what the current evaluation holds to `mark` plus `size` (samples,
/// bytes): values built since `mark` were dropped, one of `size` remains.
pub fn settle(mark: (u64, u64), size: (u64, u64)) -> Result<(), LimitError> {
    with(|m| {
        let want = (mark.0 + size.0, mark.1 + size.1);
        let have = (m.samples.get(), m.bytes.get());
        m.release(have.0.saturating_sub(want.0), have.1.saturating_sub(want.1));
        m.charge(want.0.saturating_sub(have.0), want.1.saturating_sub(have.1))
    })
    .unwrap_or(Ok(()))
}

/// Counts one turn of a long loop; every `TICKS_PER_CHECK` turns, `Err`
/// when the query is past its deadline or canceled.
pub fn tick() -> Result<(), LimitError> {
    tick_by(1)
}

/// Counts `n` units of work done (e.g. the samples of one window), looking
/// at the clock and the cancel flag every `TICKS_PER_CHECK` units.
pub fn tick_by(n: usize) -> Result<(), LimitError> {
    with(|m| {
        let t = m.ticks.get().saturating_add(n as u64);
        m.ticks.set(t);
        if t >= m.next_check.get() {
            m.next_check.set(t.saturating_add(TICKS_PER_CHECK));
            m.check()
        } else {
            Ok(())
        }
    })
    .unwrap_or(Ok(()))
}

/// `Err` at once when the query is past its deadline or canceled.
pub fn check() -> Result<(), LimitError> {
    with(Meter::check).unwrap_or(Ok(()))
}

/// Sorts `v` by `cmp` in runs, looking at the deadline between runs and
/// while merging them, so that sorting many series ends with its query.
pub fn sort_by<T>(
    v: Vec<T>,
    cmp: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> Result<Vec<T>, LimitError> {
    const RUN: usize = 4096;
    let mut runs: Vec<Vec<T>> = Vec::with_capacity(v.len() / RUN + 1);
    let mut rest = v.into_iter().peekable();
    while rest.peek().is_some() {
        let mut run: Vec<T> = rest.by_ref().take(RUN).collect();
        run.sort_by(&cmp);
        tick_by(run.len() * 12)?;
        runs.push(run);
    }
    while runs.len() > 1 {
        let mut merged = Vec::with_capacity(runs.len() / 2 + 1);
        let mut pairs = runs.into_iter();
        while let Some(a) = pairs.next() {
            let Some(b) = pairs.next() else {
                merged.push(a);
                break;
            };
            let mut out = Vec::with_capacity(a.len() + b.len());
            let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
            loop {
                tick()?;
                let take_a = match (a.peek(), b.peek()) {
                    (Some(x), Some(y)) => cmp(x, y) != std::cmp::Ordering::Greater,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (None, None) => break,
                };
                out.extend(if take_a { a.next() } else { b.next() });
            }
            merged.push(out);
        }
        runs = merged;
    }
    Ok(runs.pop().unwrap_or_default())
}

/// The response-size limit of the current query, if metered.
pub fn max_response_bytes() -> Option<u64> {
    with(|m| m.ctx.as_ref().map(|c| c.max_response_bytes())).flatten()
}

/// Runs `work` on a blocking thread, metered as stage `stage` of the
/// current query (its budget and deadline), and waits for it. When this
/// future is dropped (the caller is gone) the work sees a cancel flag.
pub async fn blocking<T: Send + 'static>(
    stage: &'static str,
    work: impl FnOnce() -> Result<T, LimitError> + Send + 'static,
) -> Result<T, LimitError> {
    let canceled = Arc::new(AtomicBool::new(false));
    let _cancel = CancelOnDrop(canceled.clone());
    let meter = Meter::new(super::current(), Some(canceled), stage);
    match tokio::task::spawn_blocking(move || {
        let _entered = meter.enter();
        work()
    })
    .await
    {
        Ok(out) => out,
        // A panic (logged by the runtime) or the runtime shutting down.
        Err(_) => Err(LimitError::Aborted(stage)),
    }
}

/// Like [`blocking`], but when `small` runs `work` right here, metered the
/// same way: for small work, the hop to a blocking thread and back (two
/// wake-ups, two context switches) costs more than the work.
pub async fn blocking_unless_small<T: Send + 'static>(
    stage: &'static str,
    small: bool,
    work: impl FnOnce() -> Result<T, LimitError> + Send + 'static,
) -> Result<T, LimitError> {
    if small {
        let _entered = Meter::new(super::current(), None, stage).enter();
        return work();
    }
    blocking(stage, work).await
}

/// Sets a flag when dropped: tells blocking work its caller went away.
pub struct CancelOnDrop(pub Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::LimitsConfig;

    fn ctx(f: impl FnOnce(&mut LimitsConfig)) -> Arc<QueryContext> {
        let mut c = LimitsConfig::default();
        f(&mut c);
        Arc::new(QueryContext::new(&c))
    }

    #[test]
    fn outside_a_metered_section_everything_is_allowed() {
        assert_eq!(charge(u64::MAX, u64::MAX), Ok(()));
        assert_eq!(settle((0, 0), (u64::MAX / 2, 0)), Ok(()));
        assert_eq!(check(), Ok(()));
        assert_eq!(max_response_bytes(), None);
    }

    #[test]
    fn held_samples_are_limited_and_settling_releases_them() {
        let c = ctx(|c| c.max_samples = 100);
        let _m = Meter::new(Some(c.clone()), None, "test").enter();
        let m0 = mark();
        charge(60, 0).expect("fits");
        assert_eq!(charge(41, 0), Err(LimitError::Samples));
        // The 60 built are dropped; a result of 10 remains.
        settle(m0, (10, 0)).expect("settles");
        assert_eq!(mark(), (10, 0));
        charge(90, 0).expect("fits again");
        assert_eq!(charge(1, 0), Err(LimitError::Samples));
        // Fetched samples count on their own, not with held ones.
        assert_eq!(c.samples(), 0);
    }

    #[test]
    fn the_checked_sort_sorts_stably_and_stops_when_canceled() {
        let v: Vec<(u32, usize)> = (0..20_000).map(|i| ((i * 7919 % 1000) as u32, i)).collect();
        let mut want = v.clone();
        want.sort_by_key(|p| p.0);
        assert_eq!(sort_by(v.clone(), |a, b| a.0.cmp(&b.0)), Ok(want));
        assert_eq!(sort_by(Vec::<u8>::new(), |a, b| a.cmp(b)), Ok(vec![]));
        let flag = Arc::new(AtomicBool::new(true));
        let _m = Meter::new(None, Some(flag), "sorting").enter();
        assert_eq!(
            sort_by(v, |a, b| a.0.cmp(&b.0)),
            Err(LimitError::Canceled("sorting"))
        );
    }

    #[test]
    fn held_bytes_are_limited() {
        let c = ctx(|c| c.max_query_bytes = Some(1000));
        let _m = Meter::new(Some(c), None, "test").enter();
        charge(0, 900).expect("fits");
        assert_eq!(charge(0, 101), Err(LimitError::Bytes { limit: 1000 }));
    }

    #[test]
    fn a_canceled_or_late_query_stops_at_the_next_check() {
        let flag = Arc::new(AtomicBool::new(false));
        let _m = Meter::new(None, Some(flag.clone()), "test stage").enter();
        assert_eq!(check(), Ok(()));
        flag.store(true, Ordering::Relaxed);
        assert_eq!(check(), Err(LimitError::Canceled("test stage")));
        let mut stopped = false;
        for _ in 0..=TICKS_PER_CHECK {
            if tick().is_err() {
                stopped = true;
            }
        }
        assert!(stopped, "tick checks within {TICKS_PER_CHECK} turns");
        drop(_m);
        let c = Arc::new(QueryContext::new(&LimitsConfig::default()).with_deadline(Instant::now()));
        let _m = Meter::new(Some(c), None, "evaluation").enter();
        assert_eq!(charge(1, 1), Err(LimitError::Timeout("evaluation")));
    }
}
