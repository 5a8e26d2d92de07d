//! promfed: a federated PromQL gateway. To its clients it is a Prometheus;
//! behind that API it reads raw series from every cluster's Prometheus,
//! merges them and evaluates PromQL itself.
//!
//! # Layout
//! The modules are layers: each uses only the ones listed after it
//! (docs/architecture.md gives the order; `tests/layers.rs` checks it,
//! and that each layer returns its own typed error, never a `String`).
//! A query travels down the first group:
//! - [`server`]: builds the service from a config ([`server::build()`]),
//!   serves HTTP on the connection threads ([`server::threads`],
//!   [`server::connections`]) and swaps in a new service on SIGHUP or a
//!   config file change ([`server::reload`]).
//! - [`ui`]: the web UI at `/` (pages that call the API).
//! - [`analyze`]: `promfed analyze`, a client of the API that dry-runs an
//!   Argo Rollouts AnalysisTemplate with Argo's rules.
//! - [`storeapi`]: the Thanos StoreAPI (Info, Series, LabelNames,
//!   LabelValues) answered from the federation, for Thanos Query or
//!   another promfed (served by [`server::grpc`]).
//! - [`api`]: HTTP routes, parameter parsing, the one mapping of every
//!   layer's error to Prometheus's `errorType` and status.
//! - [`cache`]: instant answers on a time grid with single flight, range
//!   answers as step-aligned extents; in memory or shared through Redis.
//! - [`wire`]: Prometheus JSON of answers (what the API sends and the
//!   cache stores).
//! - [`promql`]: the engine: parse, fetch selectors, evaluate.
//! - [`federation`]: fans a select out to every backend, adds external
//!   labels, merges by label set.
//! - [`source`]: the `Source` trait and its implementations (Prometheus
//!   remote read and HTTP API, the Thanos StoreAPI over gRPC, in-memory).
//!
//! Services every layer above may use, each only the ones after it:
//! - [`config`]: the YAML configuration and its validation.
//! - [`tls`], [`auth`]: HTTPS, backends' TLS, client authentication and
//!   backends' credentials.
//! - [`limits`]: query admission, deadlines and the per-query budget.
//! - [`telemetry`]: promfed's own metrics on `/metrics` and the query log.
//! - [`recent`]: per-thread memos of recent long inputs (query text).
//! - [`model`]: labels, samples, series, time bounds and durations, the one
//!   PromQL parse entry point, Go's logarithms.
//!
//! The demo's traffic simulator is a crate of its own (`crates/istio-sim`),
//! not part of this library.

pub mod analyze;
pub mod api;
pub mod auth;
pub mod cache;
pub mod config;
pub mod federation;
pub mod limits;
pub mod model;
pub mod promql;
pub mod recent;
pub mod server;
pub mod source;
pub mod storeapi;
pub mod telemetry;
pub mod tls;
pub mod ui;
pub mod wire;
