//! promfed: a federated PromQL gateway. To its clients it is a Prometheus;
//! behind that API it reads raw series from every cluster's Prometheus,
//! merges them and evaluates PromQL itself.
//!
//! # Layout
//! A query travels through the modules in this order:
//! - [`analyze`]: `promfed analyze`, a client of the API that dry-runs an
//!   Argo Rollouts AnalysisTemplate with Argo's rules.
//! - [`ui`]: the web UI at `/` (pages that call the API).
//! - [`api`]: HTTP routes, parameter parsing, JSON encoding, error mapping.
//! - [`storeapi`]: the Thanos StoreAPI (Info, Series, LabelNames,
//!   LabelValues) answered from the federation, for Thanos Query or
//!   another promfed.
//! - [`cache`]: instant answers on a time grid with single flight, range
//!   answers as step-aligned extents; in memory or shared through Redis.
//! - [`promql`]: the engine: parse, fetch selectors, evaluate.
//! - [`federation`]: fans a select out to every backend, adds external
//!   labels, merges by label set.
//! - [`source`]: the `Source` trait and its implementations (Prometheus
//!   remote read and HTTP API, the Thanos StoreAPI over gRPC, in-memory).
//! - [`server`]: builds the service from a config and serves it;
//!   [`reload`] swaps in a new one on SIGHUP or a config file change.
//! - [`config`]: the YAML configuration and its validation.
//! - [`model`]: labels, samples and series, shared by all of the above.
//! - [`limits`]: query admission, deadlines and the per-query budget.
//! - [`auth`], [`tls`]: client authentication, HTTPS, backends' TLS and credentials.
//! - [`telemetry`]: promfed's own metrics on `/metrics` and the query log.
//! - [`recent`]: per-thread memos of recent long inputs (query text).
//! - [`sim`]: simulated Istio canary traffic (the demo's and tests' data).

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
pub mod reload;
pub mod server;
pub mod sim;
pub mod source;
pub mod storeapi;
pub mod telemetry;
pub mod tls;
pub mod ui;
