//! Query limits: admission (concurrency with a bounded queue), deadlines,
//! and the per-query budget of samples and series fetched from backends.
//!
//! A query runs inside [`Limits::run`]: it waits for a slot, then evaluates
//! with a [`QueryContext`] in a task-local scope. The federation reports each
//! backend answer to `federation::observe::observe_select`, which records the backend's latency
//! and charges the answer to the query's budget. Code that moves an
//! evaluation to another task must carry the context with [`scope`]: the
//! context holds the query's admission slot, deadline and budget, so work
//! carried elsewhere (a cache's single flight) keeps them while it runs.
//! What the engine builds is charged through [`meter`]; all queries
//! together draw their memory from one [`memory`] pool.

pub mod admission;
pub mod budget;
pub mod config;
pub mod error;
pub mod fetched;
pub mod memory;
pub mod meter;
pub mod shape;
pub mod shares;

#[cfg(test)]
mod tests;

pub use admission::Limits;
pub use budget::{
    carry, current, note_cache, note_plan, sample_count, scope, QueryContext, TOO_MANY_SAMPLES,
};
pub use config::LimitsConfig;
pub use error::{AdmissionError, ChargeError, QueryFailure, QueryTextError};
pub use shape::QueryShape;
