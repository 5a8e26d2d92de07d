//! The promfed command line: `serve`, `check-config` and `hash-password`.

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(cfg) => {
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
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("promfed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
    let watch = promfed::reload::Watch {
        file_listen,
        path: config,
        interval: if reload_interval.is_zero() {
            std::time::Duration::from_secs(365 * 24 * 3600)
        } else {
            reload_interval
        },
    };
    promfed::reload::serve(cfg, Some(watch), listener, shutdown_signal()).await
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
