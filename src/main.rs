//! The promfed command line: `serve`, `check-config`, `hash-password` and
//! `analyze`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use promfed::config::Config;

/// mimalloc: a request's many small, short-lived allocations cost less
/// than with glibc's allocator, and threads do not contend on its arenas.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Stack of each worker (and blocking-pool) thread.
const WORKER_STACK_BYTES: usize = 16 << 20;

#[derive(Parser)]
#[command(name = "promfed", version, about = "Federated PromQL gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Prometheus HTTP API over the configured backends.
    Serve {
        /// Path of the YAML configuration.
        #[arg(long, short)]
        config: PathBuf,
        /// Override the config's listen address (e.g. 127.0.0.1:0).
        #[arg(long)]
        listen: Option<String>,
        /// Log as JSON lines.
        #[arg(long)]
        log_json: bool,
        /// How often to check the config file for changes (a Prometheus
        /// duration; `0` turns the file watch off; SIGHUP always reloads).
        #[arg(long, default_value = "5s")]
        reload_interval: String,
    },
    /// Read a password on stdin and print its bcrypt hash for
    /// `auth.basic_auth_users`.
    HashPassword {
        /// bcrypt cost (4 to 31; each step doubles the work).
        #[arg(long, default_value_t = 12)]
        cost: u32,
    },
    /// Validate a configuration file and print every problem found.
    CheckConfig {
        /// Path of the YAML configuration.
        file: PathBuf,
    },
    /// Dry-run an Argo Rollouts AnalysisTemplate with Argo's rules, over a
    /// past window or live; exits 0 Successful, 1 Failed, 2 Error,
    /// 3 Inconclusive.
    Analyze {
        /// The AnalysisTemplate YAML (an AnalysisRun in the same file may
        /// supply args).
        template: PathBuf,
        /// An argument for `{{args.NAME}}` (repeatable), overriding the
        /// file's values.
        #[arg(long = "arg", value_name = "NAME=VALUE")]
        args: Vec<String>,
        /// The Prometheus API to query instead of the template's address.
        #[arg(long)]
        address: Option<String>,
        /// Start of a past window to replay (Unix seconds or RFC3339).
        #[arg(long, requires = "to", conflicts_with = "live")]
        from: Option<String>,
        /// End of the window: the run is terminated there, as when the
        /// rollout step ends (with --live: stop then).
        #[arg(long)]
        to: Option<String>,
        /// Measure now and as measurements come due.
        #[arg(long)]
        live: bool,
        /// Print JSON lines (each measurement, then the run) instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Analyze {
            template,
            args,
            address,
            from,
            to,
            live,
            json,
        } => analyze(&template, &args, address, from, to, live, json),
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(cfg) => {
                for w in cfg.warnings() {
                    eprintln!("warning: {w}");
                }
                println!(
                    "{}: valid ({} backend{})",
                    file.display(),
                    cfg.backends.len(),
                    if cfg.backends.len() == 1 { "" } else { "s" }
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::HashPassword { cost } => {
            let mut password = String::new();
            if let Err(e) = std::io::stdin().read_line(&mut password) {
                eprintln!("reading the password: {e}");
                return ExitCode::FAILURE;
            }
            let password = password.trim_end_matches(['\r', '\n']);
            match promfed::auth::hash_password(password, cost) {
                Ok(h) => {
                    println!("{h}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve {
            config,
            listen,
            log_json,
            reload_interval,
        } => {
            init_logging(log_json);
            if let Some((before, after)) = promfed::server::connections::raise_open_files_limit() {
                if after > before {
                    tracing::debug!(
                        before,
                        after,
                        "open-file soft limit raised to the hard limit"
                    );
                }
            }
            // The worker pool: evaluation, fan-out, probes, cache warming.
            // HTTP connections have threads of their own (`io_threads`).
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .thread_name("promfed-worker")
                // Parsing, planning and evaluating recurse once per operator:
                // a chain of `limits.max_query_operators` (1000) `or`s
                // overflowed the default 2 MiB stack.
                .thread_stack_size(WORKER_STACK_BYTES)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("starting runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let interval = match promfed::config::parse_prometheus_duration(&reload_interval) {
                Ok(ms) => std::time::Duration::from_millis(ms as u64),
                Err(e) => {
                    eprintln!("--reload-interval: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(run(config, listen, interval)) {
                Ok(()) => ExitCode::SUCCESS,
                // Printed once, plainly: the log may not be set up as the
                // operator expects when the config itself is broken.
                Err(e) => {
                    eprintln!("promfed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `promfed analyze`: prints each measurement and the run's phase; the
/// exit status is the phase's.
fn analyze(
    template: &std::path::Path,
    args: &[String],
    address: Option<String>,
    from: Option<String>,
    to: Option<String>,
    live: bool,
    json: bool,
) -> ExitCode {
    use promfed::analyze::{self, run::Window, AnalyzeError, Phase};
    let prepare = || -> Result<_, AnalyzeError> {
        let overrides = args
            .iter()
            .map(|a| analyze::template::parse_arg(a))
            .collect::<Result<Vec<_>, _>>()?;
        let metrics = analyze::template::Template::load(template)?.resolve(&overrides)?;
        let time = |name: &str, v: &str| {
            promfed::api::params::parse_time(v)
                .map_err(|e| AnalyzeError::Usage(format!("--{name}: {e}")))
        };
        let window = match (from, to, live) {
            (Some(f), Some(t), false) => {
                let (start_ms, end_ms) = (time("from", &f)?, time("to", &t)?);
                if end_ms < start_ms {
                    return Err(AnalyzeError::Usage("--to is before --from".into()));
                }
                Window::Replay { start_ms, end_ms }
            }
            (None, to, true) => Window::Live {
                end_ms: to.map(|t| time("to", &t)).transpose()?,
            },
            _ => {
                return Err(AnalyzeError::Usage(
                    "give a window (--from T --to T) or --live".into(),
                ))
            }
        };
        Ok((metrics, window))
    };
    let (metrics, window) = match prepare() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("promfed analyze: {e}");
            return ExitCode::from(Phase::Error.exit_code());
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("starting runtime: {e}");
            return ExitCode::from(Phase::Error.exit_code());
        }
    };
    let print = |m: &analyze::measure::Measurement| {
        if json {
            println!("{}", serde_json::json!({ "measurement": m }));
        } else {
            let at = chrono::DateTime::from_timestamp_millis(m.at_ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_else(|| m.at_ms.to_string());
            let warn = if m.warnings.is_empty() {
                String::new()
            } else {
                format!("  warnings: {}", m.warnings.join("; "))
            };
            let line = format!(
                "{at}  {:<16} {:<12} {:<14} {}{warn}",
                m.metric, m.phase, m.value, m.message
            );
            println!("{}", line.trim_end());
        }
    };
    let apis = match analyze::run::http_apis(&metrics, address.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("promfed analyze: {e}");
            return ExitCode::from(Phase::Error.exit_code());
        }
    };
    let ran = rt.block_on(analyze::run::run(
        &metrics,
        &apis,
        window,
        usize::MAX,
        print,
    ));
    match ran {
        Ok(report) => {
            if json {
                let summary = serde_json::json!({
                    "run": {"phase": report.phase, "message": report.message, "metrics": report.metrics}
                });
                println!("{summary}");
            } else {
                for m in &report.metrics {
                    println!(
                        "metric {:?}: {} ({} measurements: {} successful, {} failed, {} inconclusive, {} errors){}",
                        m.name,
                        m.phase,
                        m.counts.count + m.counts.error,
                        m.counts.successful,
                        m.counts.failed,
                        m.counts.inconclusive,
                        m.counts.error,
                        if m.message.is_empty() { String::new() } else { format!(": {}", m.message) }
                    );
                }
                println!("phase: {}", report.phase);
                if !report.message.is_empty() {
                    println!("message: {}", report.message);
                }
            }
            ExitCode::from(report.phase.exit_code())
        }
        Err(e) => {
            eprintln!("promfed analyze: {e}");
            ExitCode::from(Phase::Error.exit_code())
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a terminal, not for a log file or a pipe.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(
    config: PathBuf,
    listen: Option<String>,
    reload_interval: std::time::Duration,
) -> Result<(), String> {
    let mut cfg = Config::load(&config).map_err(|e| e.to_string())?;
    for w in cfg.warnings() {
        tracing::warn!("config: {w}");
    }
    let file_listen = cfg.listen.clone();
    if let Some(l) = listen {
        cfg.listen = l;
    }
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", cfg.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("reading listen address: {e}"))?;
    tracing::info!(%addr, backends = cfg.backends.len(), "promfed listening");
    // Tests and scripts read this line to learn the port when listening on :0.
    println!("listening on {addr}");
    // SIGHUP always reloads; a zero interval only turns the file watch off.
    let watch = promfed::server::reload::Watch {
        file_listen,
        path: config,
        interval: if reload_interval.is_zero() {
            std::time::Duration::from_secs(365 * 24 * 3600)
        } else {
            reload_interval
        },
    };
    promfed::server::reload::serve(cfg, Some(watch), listener, shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
