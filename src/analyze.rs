//! `promfed analyze`: dry-runs an Argo Rollouts AnalysisTemplate against a
//! Prometheus API (promfed or any other) with Argo's own rules, over a past
//! window or live. A client of the API: it imports nothing of the server.
//!
//! - [`template`]: the YAML and its `{{args.*}}`.
//! - [`expr`], [`condition`]: the `expr` subset Argo's conditions use, and
//!   how two conditions make a measurement's phase.
//! - [`measure`]: one measurement, as Argo's Prometheus provider takes it.
//! - [`run`]: when measurements are taken and how they decide the run.

pub mod condition;
pub mod expr;
pub mod measure;
pub mod run;
pub mod template;

/// An analysis phase, as Argo names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Phase {
    Successful,
    Running,
    Inconclusive,
    Error,
    Failed,
}

impl Phase {
    /// Argo's order from best to worst (`analysisStatusOrder`).
    fn rank(self) -> u8 {
        match self {
            Phase::Successful => 0,
            Phase::Running => 1,
            Phase::Inconclusive => 3,
            Phase::Error => 4,
            Phase::Failed => 5,
        }
    }

    /// `IsWorse(other, self)`.
    pub fn worse_than(self, other: Phase) -> bool {
        self.rank() > other.rank()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Successful => "Successful",
            Phase::Running => "Running",
            Phase::Inconclusive => "Inconclusive",
            Phase::Error => "Error",
            Phase::Failed => "Failed",
        }
    }

    /// `promfed analyze`'s exit status for a run that ended in this phase:
    /// 0 Successful, 1 Failed, 2 Error, 3 Inconclusive.
    pub fn exit_code(self) -> u8 {
        match self {
            Phase::Successful | Phase::Running => 0,
            Phase::Failed => 1,
            Phase::Error => 2,
            Phase::Inconclusive => 3,
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Why an analysis could not run at all (exit status 2, as Argo marks such
/// a run Error).
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error(transparent)]
    Template(#[from] template::TemplateError),
    #[error("metric {0:?} has no provider.prometheus.address: pass --address")]
    NoAddress(String),
    #[error("HTTP client: {0}")]
    Client(String),
    #[error("{0}")]
    Usage(String),
}
