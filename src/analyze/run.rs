//! Runs an analysis as Argo Rollouts' analysis controller does
//! (`analysis/analysis.go`: `generateMetricTasks`, `runMeasurements`,
//! `assessMetricStatus`, `assessRunStatus`): when each measurement is due,
//! how its phase counts, when a metric and the run complete and with what
//! phase. Over a past window the measurements are replayed at the times
//! they would have been taken; live, they are taken as those times come.

use std::sync::Arc;
use std::time::Duration;

use super::measure::{measure, HttpApi, Measurement, QueryApi};
use super::template::Metric;
use super::Phase;

/// After an Error measurement the next one comes this much later
/// (`DefaultErrorRetryInterval`).
pub const ERROR_RETRY_INTERVAL: Duration = Duration::from_secs(10);

/// The counters of one metric (`MetricResult`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Counts {
    pub count: i64,
    pub successful: i64,
    pub failed: i64,
    pub inconclusive: i64,
    pub error: i64,
    pub consecutive_error: i64,
    pub consecutive_success: i64,
}

impl Counts {
    /// Counts a completed measurement as `runMeasurements` does.
    pub fn add(&mut self, phase: Phase) {
        match phase {
            Phase::Successful => {
                self.successful += 1;
                self.count += 1;
                self.consecutive_error = 0;
                self.consecutive_success += 1;
            }
            Phase::Failed => {
                self.failed += 1;
                self.count += 1;
                self.consecutive_error = 0;
                self.consecutive_success = 0;
            }
            Phase::Inconclusive => {
                self.inconclusive += 1;
                self.count += 1;
                self.consecutive_error = 0;
                self.consecutive_success = 0;
            }
            Phase::Error => {
                self.error += 1;
                self.consecutive_error += 1;
                self.consecutive_success = 0;
            }
            Phase::Running => {}
        }
    }
}

/// `assessMetricFailureInconclusiveOrError`: the phase a limit forces, and why.
pub fn limit_reached(metric: &Metric, c: &Counts) -> Option<(Phase, String)> {
    let mut out = None;
    let failure_limit = metric.failure_limit();
    if failure_limit >= 0 && c.failed > failure_limit {
        out = Some((
            Phase::Failed,
            format!("failed ({}) > failureLimit ({failure_limit})", c.failed),
        ));
    }
    let inconclusive_limit = metric.inconclusive_limit();
    if c.inconclusive > inconclusive_limit {
        out = Some((
            Phase::Inconclusive,
            format!(
                "inconclusive ({}) > inconclusiveLimit ({inconclusive_limit})",
                c.inconclusive
            ),
        ));
    }
    let error_limit = metric.consecutive_error_limit();
    if c.consecutive_error > error_limit {
        out = Some((
            Phase::Error,
            format!(
                "consecutiveErrors ({}) > consecutiveErrorLimit ({error_limit})",
                c.consecutive_error
            ),
        ));
    }
    out
}

/// `assessMetricStatus` once a measurement has completed: `None` while the
/// metric is still running.
pub fn assess_metric(
    metric: &Metric,
    c: &Counts,
    measured: bool,
    terminating: bool,
) -> Option<Phase> {
    if !measured {
        return terminating.then_some(Phase::Successful);
    }
    if let Some((phase, _)) = limit_reached(metric, c) {
        return Some(phase);
    }
    let success_limit = metric.consecutive_success_limit();
    if success_limit > 0 && c.consecutive_success >= success_limit {
        return Some(Phase::Successful);
    }
    if let Some(n) = metric.effective_count() {
        if c.count >= n {
            let failure_applicable = metric.failure_limit() >= 0;
            let success_applicable = success_limit > 0;
            return Some(match (failure_applicable, success_applicable) {
                (true, true) => Phase::Inconclusive,
                (false, true) => Phase::Failed,
                _ => Phase::Successful,
            });
        }
    }
    terminating.then_some(Phase::Successful)
}

/// One metric's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MetricReport {
    pub name: String,
    pub phase: Phase,
    pub message: String,
    pub counts: Counts,
}

/// The run's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub phase: Phase,
    pub message: String,
    pub metrics: Vec<MetricReport>,
    pub measurements: Vec<Measurement>,
}

/// When the run happens.
#[derive(Debug, Clone, Copy)]
pub enum Window {
    /// Replays measurements at their would-be times from `start_ms`; the
    /// run is terminated at `end_ms` (as when the rollout step ends).
    Replay { start_ms: i64, end_ms: i64 },
    /// Takes measurements now and as they come due, until every metric is
    /// complete or `end_ms` passes.
    Live { end_ms: Option<i64> },
}

/// Per-metric progress.
struct State {
    counts: Counts,
    measured: bool,
    next_ms: i64,
    phase: Option<Phase>,
    last_message: String,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The HTTP API each metric is measured through: its template's
/// `address`, or `address_override`.
pub fn http_apis(
    metrics: &[Metric],
    address_override: Option<&str>,
) -> Result<Vec<Arc<dyn QueryApi>>, super::AnalyzeError> {
    let client = reqwest::Client::builder()
        .build()
        .map_err(|e| super::AnalyzeError::Client(e.to_string()))?;
    metrics
        .iter()
        .map(|m| {
            let address = address_override.map(str::to_string).unwrap_or_else(|| {
                m.provider
                    .prometheus
                    .as_ref()
                    .map(|p| p.address.clone())
                    .unwrap_or_default()
            });
            if address.is_empty() {
                return Err(super::AnalyzeError::NoAddress(m.name.clone()));
            }
            let api: Arc<dyn QueryApi> = Arc::new(HttpApi {
                client: client.clone(),
                address,
            });
            Ok(api)
        })
        .collect()
}

/// Runs `metrics` over `window`, each through its API in `apis`, taking at
/// most `max_measurements`; `on_measurement` sees each measurement as it
/// is taken.
pub async fn run(
    metrics: &[Metric],
    apis: &[Arc<dyn QueryApi>],
    window: Window,
    max_measurements: usize,
    mut on_measurement: impl FnMut(&Measurement),
) -> Result<RunReport, super::AnalyzeError> {
    if apis.len() != metrics.len() {
        return Err(super::AnalyzeError::Usage(
            "one query API per metric is needed".into(),
        ));
    }
    let start_ms = match window {
        Window::Replay { start_ms, .. } => start_ms,
        Window::Live { .. } => now_ms(),
    };
    let end_ms = match window {
        Window::Replay { end_ms, .. } => Some(end_ms),
        Window::Live { end_ms } => end_ms,
    };
    let mut plans = Vec::with_capacity(metrics.len());
    for (m, api) in metrics.iter().zip(apis) {
        plans.push((api.clone(), m.interval()?, m.initial_delay()?));
    }
    let mut states: Vec<State> = plans
        .iter()
        .map(|(_, _, delay)| State {
            counts: Counts::default(),
            measured: false,
            next_ms: start_ms.saturating_add(ms(*delay)),
            phase: None,
            last_message: String::new(),
        })
        .collect();
    let mut measurements = Vec::new();
    loop {
        // A metric that failed, errored or was inconclusive terminates the run.
        let terminating = states.iter().any(|s| {
            matches!(
                s.phase,
                Some(Phase::Failed | Phase::Error | Phase::Inconclusive)
            )
        });
        if terminating {
            break;
        }
        let Some(i) = (0..states.len())
            .filter(|&i| states[i].phase.is_none())
            .min_by_key(|&i| states[i].next_ms)
        else {
            break;
        };
        let due = states[i].next_ms;
        if end_ms.is_some_and(|end| due > end) {
            break;
        }
        if measurements.len() >= max_measurements {
            return Err(super::AnalyzeError::Usage(format!(
                "more than {max_measurements} measurements: shorten the window"
            )));
        }
        if let Window::Live { .. } = window {
            let wait = due - now_ms();
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            }
        }
        let at = match window {
            Window::Replay { .. } => due,
            Window::Live { .. } => now_ms(),
        };
        let (metric, (api, interval, _)) = (&metrics[i], &plans[i]);
        let m = measure(api.as_ref(), metric, at).await;
        on_measurement(&m);
        let st = &mut states[i];
        st.counts.add(m.phase);
        st.measured = true;
        st.last_message = m.message.clone();
        st.phase = assess_metric(metric, &st.counts, true, false);
        let gap = if m.phase == Phase::Error {
            ERROR_RETRY_INTERVAL
        } else {
            interval.unwrap_or(ERROR_RETRY_INTERVAL)
        };
        let finished = match window {
            Window::Replay { .. } => at,
            Window::Live { .. } => now_ms(),
        };
        st.next_ms = finished.saturating_add(ms(gap));
        measurements.push(m);
    }
    // The window is over (or a metric completed badly): the run terminates
    // and every metric still running is assessed as terminated.
    for (metric, st) in metrics.iter().zip(states.iter_mut()) {
        if st.phase.is_none() {
            st.phase = assess_metric(metric, &st.counts, st.measured, true);
        }
    }
    Ok(assess_run(metrics, &states, measurements))
}

/// `assessRunStatus`: the worst metric phase, with the message of the
/// limit that caused it.
fn assess_run(metrics: &[Metric], states: &[State], measurements: Vec<Measurement>) -> RunReport {
    let mut worst: Option<Phase> = None;
    let mut message = String::new();
    let mut reports = Vec::new();
    for (metric, st) in metrics.iter().zip(states) {
        let phase = st.phase.unwrap_or(Phase::Successful);
        let why = limit_reached(metric, &st.counts).map(|(_, m)| m);
        if worst.is_none_or(|w| phase.worse_than(w)) {
            worst = Some(phase);
            if let Some(why) = &why {
                message = format!("Metric \"{}\" assessed {} due to {why}", metric.name, phase);
                if !st.last_message.is_empty() {
                    message += &format!(": \"Error Message: {}\"", st.last_message);
                }
            }
        }
        reports.push(MetricReport {
            name: metric.name.clone(),
            phase,
            message: why.unwrap_or_default(),
            counts: st.counts.clone(),
        });
    }
    RunReport {
        phase: worst.unwrap_or(Phase::Successful),
        message,
        metrics: reports,
        measurements,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::template::Template;

    fn metric(extra: &str) -> Metric {
        let yaml = format!(
            "kind: AnalysisTemplate\nspec:\n  metrics:\n  - name: m\n    successCondition: result[0] > 0.9\n{extra}"
        );
        Template::parse(&yaml)
            .expect("parses")
            .resolve(&[])
            .expect("resolves")
            .remove(0)
    }

    fn counts_of(phases: &[Phase]) -> Counts {
        let mut c = Counts::default();
        for p in phases {
            c.add(*p);
        }
        c
    }

    use Phase::*;

    // The expectations restate the rules of Argo's analysis controller
    // (assessMetricStatus / assessMetricFailureInconclusiveOrError); the
    // integration tests check whole runs against Argo's provider.
    #[test]
    fn failure_limit_is_exceeded_not_reached() {
        let m = metric("    interval: 20s\n    failureLimit: 3\n");
        assert_eq!(
            assess_metric(&m, &counts_of(&[Failed; 3]), true, false),
            None
        );
        assert_eq!(
            assess_metric(&m, &counts_of(&[Failed; 4]), true, false),
            Some(Failed)
        );
        // Indefinite metric, terminated without reaching a limit: Successful.
        assert_eq!(
            assess_metric(&m, &counts_of(&[Failed, Successful]), true, true),
            Some(Successful)
        );
    }

    #[test]
    fn default_failure_limit_zero_and_count_one_without_interval() {
        let m = metric("");
        assert_eq!(m.effective_count(), Some(1));
        assert_eq!(
            assess_metric(&m, &counts_of(&[Failed]), true, false),
            Some(Failed)
        );
        assert_eq!(
            assess_metric(&m, &counts_of(&[Successful]), true, false),
            Some(Successful)
        );
        // Errors do not count towards `count`; the fifth in a row is too many.
        assert_eq!(
            assess_metric(&m, &counts_of(&[Error; 4]), true, false),
            None
        );
        assert_eq!(
            assess_metric(&m, &counts_of(&[Error; 5]), true, false),
            Some(Error)
        );
        // An error streak broken by a success starts again.
        let c = counts_of(&[Error, Error, Error, Error, Inconclusive]);
        assert_eq!(c.consecutive_error, 0);
        // inconclusiveLimit 0: one inconclusive is too many.
        assert_eq!(assess_metric(&m, &c, true, false), Some(Inconclusive));
    }

    #[test]
    fn counts_and_consecutive_success() {
        let m = metric("    interval: 1m\n    count: 3\n    failureLimit: 1\n");
        assert_eq!(
            assess_metric(&m, &counts_of(&[Successful, Failed]), true, false),
            None
        );
        assert_eq!(
            assess_metric(
                &m,
                &counts_of(&[Successful, Failed, Successful]),
                true,
                false
            ),
            Some(Successful)
        );
        let m = metric(
            "    interval: 1m\n    count: 3\n    consecutiveSuccessLimit: 2\n    failureLimit: 5\n",
        );
        assert_eq!(
            assess_metric(
                &m,
                &counts_of(&[Failed, Successful, Successful]),
                true,
                false
            ),
            Some(Successful)
        );
        assert_eq!(
            assess_metric(
                &m,
                &counts_of(&[Successful, Failed, Successful]),
                true,
                false
            ),
            Some(Inconclusive)
        );
        let m = metric("    interval: 1m\n    count: 2\n    consecutiveSuccessLimit: 2\n    failureLimit: -1\n");
        assert_eq!(
            assess_metric(&m, &counts_of(&[Failed, Successful]), true, false),
            Some(Failed)
        );
        // Never measured, terminated: Successful.
        assert_eq!(
            assess_metric(&m, &Counts::default(), false, true),
            Some(Successful)
        );
        assert_eq!(assess_metric(&m, &Counts::default(), false, false), None);
    }
}
