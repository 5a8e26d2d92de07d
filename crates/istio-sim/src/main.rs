//! `istio-sim`: writes simulated Istio canary traffic as OpenMetrics files
//! (one per cluster, one union file) and the rollout's `schedule.json`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use istio_sim::{self as sim, Canary, SimConfig, Simulation};

/// Simulated Istio traffic of the helloworld canary, as OpenMetrics files
/// for `promtool tsdb create-blocks-from openmetrics`.
#[derive(Debug, Parser)]
#[command(name = "istio-sim", version)]
struct Args {
    /// Directory to write `<cluster>.om`, `union.om` and `schedule.json` into.
    #[arg(long)]
    out: PathBuf,
    /// Comma-separated cluster names.
    #[arg(long, default_value = "k8s-1,k8s-2")]
    clusters: String,
    /// Start of the run, unix seconds (default 2024-08-18T12:00:00Z).
    #[arg(long, default_value_t = sim::DEFAULT_START)]
    start: i64,
    /// Length of the run (e.g. 1h, 30m, 900s), split evenly between steps.
    #[arg(long, default_value = "1h")]
    duration: String,
    /// Seed of every random choice.
    #[arg(long, default_value_t = sim::DEFAULT_SEED)]
    seed: u64,
    /// good: v2 fails about as often as v1; bad: v2 fails 30% of requests.
    #[arg(long, default_value = "good", value_parser = ["good", "bad"])]
    canary: String,
    /// Plain (non-Istio) background series per cluster.
    #[arg(long, default_value_t = sim::DEFAULT_BACKGROUND_SERIES)]
    background_series: usize,
    /// `istio_requests_total` series of the background services per cluster.
    #[arg(long, default_value_t = 0)]
    background_mesh_series: usize,
    /// Canary weight of each rollout step, percent, comma-separated.
    #[arg(long, default_value = "0,20,40,60,80,100")]
    weights: String,
}

fn config(args: &Args) -> Result<SimConfig, sim::SimError> {
    let weights = args
        .weights
        .split(',')
        .map(|w| {
            w.trim().parse::<u32>().map_err(|_| {
                sim::SimError::Config(vec![format!("bad weight {w:?} (want 0..=100)")])
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SimConfig {
        clusters: args
            .clusters
            .split(',')
            .map(|c| c.trim().to_string())
            .collect(),
        start: args.start,
        duration_secs: sim::parse_duration_secs(&args.duration)?,
        seed: args.seed,
        canary: args.canary.parse::<Canary>()?,
        background_series: args.background_series,
        background_mesh_series: args.background_mesh_series,
        weights,
    })
}

fn run(args: &Args) -> Result<(), sim::SimError> {
    let cfg = config(args)?;
    let sim = Simulation::generate(&cfg)?;
    let files = sim.write_dir(&args.out)?;
    for (i, (name, path)) in files.clusters.iter().enumerate() {
        let c = sim.counts(i);
        println!(
            "{name}: {} series, {} samples -> {}",
            c.series,
            c.samples,
            path.display()
        );
    }
    println!("union -> {}", files.union.display());
    println!("schedule -> {}", files.schedule.display());
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("istio-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["istio-sim", "--out", "/tmp/x"];
        v.extend_from_slice(extra);
        Args::parse_from(v)
    }

    #[test]
    fn defaults_are_the_library_defaults() {
        let cfg = config(&args(&[])).expect("valid");
        assert_eq!(cfg, SimConfig::default());
    }

    #[test]
    fn flags_reach_the_config() {
        let cfg = config(&args(&[
            "--clusters",
            "a, b,c",
            "--duration",
            "30m",
            "--seed",
            "9",
            "--canary",
            "bad",
            "--weights",
            "10,50,100",
            "--background-series",
            "7",
            "--background-mesh-series",
            "5",
            "--start",
            "1700000000",
        ]))
        .expect("valid");
        assert_eq!(cfg.clusters, ["a", "b", "c"]);
        assert_eq!(cfg.duration_secs, 1800);
        assert_eq!(cfg.seed, 9);
        assert_eq!(cfg.canary, Canary::Bad);
        assert_eq!(cfg.weights, [10, 50, 100]);
        assert_eq!(cfg.background_series, 7);
        assert_eq!(cfg.background_mesh_series, 5);
        assert_eq!(cfg.start, 1_700_000_000);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(config(&args(&["--weights", "10,x"])).is_err());
        assert!(config(&args(&["--duration", "soon"])).is_err());
        assert!(Args::try_parse_from(["istio-sim", "--out", "d", "--canary", "meh"]).is_err());
        let err = run(&args(&["--clusters", "a,a"])).expect_err("duplicate cluster");
        assert!(err.to_string().contains("listed twice"), "{err}");
    }
}
