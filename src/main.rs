//! The `dbwarden` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use dbwarden::config::ServerConfig;
use dbwarden::server::{self, DevOptions, ServerError};

/// dbwarden issues short-lived database users on demand, through a Vault-compatible API.
#[derive(Debug, Parser)]
#[command(name = "dbwarden", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    ///
    /// With --dev: SQLite in a temporary directory, an in-memory seal key, the database
    /// engine mounted at database/, and a root token printed once. Nothing survives a restart.
    /// With --config FILE: the storage, seal and listener the file describes.
    Server(ServerArgs),
    /// Operator tasks.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Audit log tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Run the sidecar agent: log in, write credentials to files, renew them, replace them
    /// before their maximum TTL, reload the application, revoke the old ones.
    ///
    /// The configuration reference is in the README ("Sidecar agent and CSI provider").
    /// Exit codes: 0 clean shutdown (or --once done), 1 runtime failure, 2 bad configuration.
    Agent(AgentArgs),
    /// Run the Secrets Store CSI driver provider (gRPC on a unix socket).
    ///
    /// The driver calls Mount for every Pod volume with a SecretProviderClass whose provider
    /// is `dbwarden`; credentials are cached per Pod and renewed at each rotation poll, and
    /// replaced (with a new object version) only when the lease nears its maximum.
    #[cfg(feature = "csi")]
    CsiProvider(CsiProviderArgs),
    /// Measure a running server: credential throughput and latency, compared with the
    /// target database's own rate for the same statements (--baseline), or the behaviour of
    /// a server with many leases in storage (lease-scale).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Issue credentials (`GET <mount>/creds/<role>`); the leases are revoked afterwards,
    /// untimed.
    Creds(LoadArgs),
    /// Issue a credential and revoke its lease, timed together.
    CredsRevoke(LoadArgs),
    /// Renew one lease per worker (`PUT sys/leases/renew`).
    Renew(LoadArgs),
    /// Look up one lease per worker (`PUT sys/leases/lookup`).
    Lookup(LoadArgs),
    /// Read a static role's credentials (`GET <mount>/static-creds/<role>`).
    StaticRead(LoadArgs),
    /// Fill a fresh server's storage with N leases and measure start-up, memory and lookup
    /// latency; with --database-url, also the expiry throughput when real users all fall
    /// due at once.
    LeaseScale(LeaseScaleArgs),
}

#[derive(Debug, clap::Args)]
struct LoadArgs {
    /// The server address.
    #[arg(long, env = "DBWARDEN_ADDR", default_value = "http://127.0.0.1:8200")]
    address: String,
    /// A token allowed to use the role and sys/leases (prefer the environment variable:
    /// arguments are visible to other users of the machine).
    #[arg(long, env = "DBWARDEN_TOKEN", hide_env_values = true)]
    token: String,
    /// A PEM CA certificate to trust for an https address.
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// The database secrets engine's mount.
    #[arg(long, default_value = "database")]
    mount: String,
    /// The role (a static role for static-read).
    #[arg(long)]
    role: String,
    /// Workers; a comma-separated list runs once per level.
    #[arg(short, long, value_delimiter = ',', default_value = "8")]
    concurrency: Vec<usize>,
    /// How long each run lasts.
    #[arg(short, long, default_value = "10s", value_parser = humantime::parse_duration, conflicts_with = "count")]
    duration: std::time::Duration,
    /// Stop each run after this many operations instead.
    #[arg(short = 'n', long)]
    count: Option<u64>,
    /// Also run the role's own creation (and revocation) statements straight against the
    /// database at the same concurrency, and on one serialised connection, and print the
    /// ratios (creds and creds-revoke).
    #[arg(long, requires = "baseline_url")]
    baseline: bool,
    /// An admin URL of the target database for --baseline (postgres://... or mysql://...).
    #[arg(
        long,
        env = "DBWARDEN_BENCH_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    baseline_url: Option<String>,
    /// Run each level's phases this many times, alternating whether dbwarden or the database
    /// goes first, and report the merged figures (each phase runs for the full --duration or
    /// --count every round). Evens out drift on a busy machine.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    rounds: u16,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Debug, clap::Args)]
struct LeaseScaleArgs {
    /// Lease counts, one run each.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    leases: Vec<usize>,
    /// A PostgreSQL admin URL: also measure expiry with real users.
    #[arg(
        long,
        env = "DBWARDEN_BENCH_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    database_url: Option<String>,
    /// How many real users, besides the N leases, fall due at once (0 skips this phase).
    #[arg(long, default_value_t = 10_000)]
    expire: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Debug, clap::Args)]
struct AgentArgs {
    /// The agent configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Log in, write every secret once, record the state and exit (for init containers);
    /// the same as `exit_after_auth = true`.
    #[arg(long)]
    once: bool,
}

#[cfg(feature = "csi")]
#[derive(Debug, clap::Args)]
struct CsiProviderArgs {
    /// The unix socket to serve on, e.g. /var/run/secrets-store-csi-providers/dbwarden.sock.
    #[arg(long, value_name = "PATH")]
    endpoint: PathBuf,
    /// The ServiceAccount token audience used when the SecretProviderClass sets none.
    #[arg(long, value_name = "AUDIENCE", default_value = "dbwarden")]
    default_audience: String,
    /// The server address used when the SecretProviderClass sets none.
    #[arg(long, value_name = "URL", env = "DBWARDEN_ADDR")]
    default_address: Option<String>,
    /// `host:port` for /healthz and /metrics.
    #[arg(long, value_name = "HOST:PORT")]
    listen_address: Option<SocketAddr>,
    /// Fetch new credentials when this fraction of the time left before the lease's maximum
    /// has passed.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.9)]
    rotate_threshold: f64,
    /// Log level (tracing filter syntax); DBWARDEN_LOG overrides.
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
    /// Log one JSON object per line instead of text.
    #[arg(long = "log-json")]
    log_format_json: bool,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check an audit file's hash chain: any edited, removed, inserted or reordered line
    /// is reported with its line number (exit 1).
    ///
    /// A file must start the chain (seq 1) unless --continues-from names the hash its first
    /// line continues from (the last hash of the file before it, after log rotation).
    /// --expect-last-hash (the `last_hash` that `GET sys/audit` shows) also catches lines
    /// cut from the end.
    Verify {
        /// The audit file.
        file: PathBuf,
        /// The hash the first line continues from (after log rotation).
        #[arg(long, value_name = "HASH")]
        continues_from: Option<String>,
        /// The hash the last line must have.
        #[arg(long, value_name = "HASH")]
        expect_last_hash: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
struct ServerArgs {
    /// Run a throwaway development server (never for production).
    #[arg(long, conflicts_with = "config")]
    dev: bool,
    /// The root token id to use in dev mode (at least 8 characters).
    #[arg(long, requires = "dev", value_name = "TOKEN")]
    dev_root_token_id: Option<String>,
    /// The address of the dev server.
    #[arg(
        long,
        requires = "dev",
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:8200"
    )]
    dev_listen_address: SocketAddr,
    /// The directory external plugins are registered from, in dev mode
    /// (`plugin_directory` in a configuration file).
    #[arg(long, requires = "dev", value_name = "DIR")]
    dev_plugin_dir: Option<PathBuf>,
    /// The configuration file (TOML).
    #[arg(long, value_name = "FILE", required_unless_present = "dev")]
    config: Option<PathBuf>,
    /// Async worker threads (default: one per CPU core). Where the server shares a few
    /// cores with the database it manages, fewer threads spend less CPU waking each other:
    /// see docs/performance.md.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    worker_threads: Option<u16>,
}

#[derive(Debug, Subcommand)]
enum OperatorCommand {
    /// Initialise storage: create the seal key file (mode 0400) and the schema, and print
    /// the initial root token once. Refuses, changing nothing, if already initialised.
    Init {
        /// The configuration file (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// How a command ended: 0 success, 1 runtime failure, 2 usage or configuration error.
enum Failure {
    Runtime(String),
    Config(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match &cli.command {
        // The agent is a sidecar in every Pod: one thread is plenty and keeps its memory
        // small. The bench is a load generator on the machine it measures: one thread (about
        // 0.1 ms of CPU per request) takes less from what it measures than several that keep
        // waking each other.
        Command::Agent(_) | Command::Bench(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Command::Server(args) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(threads) = args.worker_threads {
                builder.worker_threads(usize::from(threads));
            }
            builder.enable_all().build()
        }
        _ => tokio::runtime::Runtime::new(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Runtime(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
        Err(Failure::Config(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(level: Option<&str>) {
    init_logging_as(level, false);
}

/// Logs to stderr as text, or as one JSON object per line (`json`) for log pipelines.
fn init_logging_as(level: Option<&str>, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DBWARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.unwrap_or("info")));
    // Colours only on a terminal: container runtimes and log shippers get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

fn load_config(path: &std::path::Path) -> Result<ServerConfig, Failure> {
    ServerConfig::load(path).map_err(|e| Failure::Config(e.to_string()))
}

fn server_failure(e: ServerError) -> Failure {
    match e {
        ServerError::Engine(dbwarden::engine::error::EngineError::Barrier(
            dbwarden::crypto::BarrierError::NotInitialized,
        )) => Failure::Config(format!("{e}")),
        ServerError::Engine(dbwarden::engine::error::EngineError::Seal(_))
        | ServerError::Tls(_) => Failure::Config(e.to_string()),
        other => Failure::Runtime(other.to_string()),
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Server(args) if args.dev => {
            init_logging(None);
            server::run_dev(DevOptions {
                listen: args.dev_listen_address,
                root_token_id: args.dev_root_token_id,
                plugin_directory: args.dev_plugin_dir,
            })
            .await
            .map_err(server_failure)
        }
        Command::Server(args) => {
            let path = args
                .config
                .ok_or_else(|| Failure::Config("--config FILE or --dev is required".into()))?;
            let config = load_config(&path)?;
            init_logging(config.log_level.as_deref());
            server::run(config).await.map_err(server_failure)
        }
        Command::Agent(args) => {
            let config = dbwarden::agent::config::AgentConfig::load(&args.config)
                .map_err(|e| Failure::Config(e.to_string()))?;
            init_logging_as(
                config.log_level.as_deref(),
                config.log_format == dbwarden::agent::config::LogFormat::Json,
            );
            dbwarden::agent::run(config, args.once).await.map_err(|e| {
                if e.is_config() {
                    Failure::Config(e.to_string())
                } else {
                    Failure::Runtime(e.to_string())
                }
            })
        }
        #[cfg(feature = "csi")]
        Command::CsiProvider(args) => {
            init_logging_as(args.log_level.as_deref(), args.log_format_json);
            if !(args.rotate_threshold > 0.0 && args.rotate_threshold < 1.0) {
                return Err(Failure::Config(
                    "--rotate-threshold must be between 0 and 1".into(),
                ));
            }
            dbwarden::csi::run(dbwarden::csi::ProviderOptions {
                endpoint: args.endpoint,
                default_audience: args.default_audience,
                default_address: args.default_address,
                listen_address: args.listen_address,
                rotate_threshold: args.rotate_threshold,
            })
            .await
            .map_err(|e| Failure::Runtime(e.to_string()))
        }
        Command::Bench(command) => bench(command).await,
        Command::Audit(AuditCommand::Verify {
            file,
            continues_from,
            expect_last_hash,
        }) => verify_audit(
            &file,
            continues_from.as_deref(),
            expect_last_hash.as_deref(),
        ),
        Command::Operator(OperatorCommand::Init { config, format }) => {
            let config = load_config(&config)?;
            let token = dbwarden::operator::init(&config)
                .await
                .map_err(|e| match e {
                    dbwarden::operator::InitError::AlreadyInitialized
                    | dbwarden::operator::InitError::KeyFileExists(_) => {
                        Failure::Config(e.to_string())
                    }
                    other => Failure::Runtime(other.to_string()),
                })?;
            match format {
                Format::Json => println!("{}", serde_json::json!({ "root_token": token.as_str() })),
                Format::Text => {
                    println!("Initial Root Token: {}", token.as_str());
                    println!(
                        "\nStore it safely: it is shown once and dbwarden keeps only its HMAC."
                    );
                }
            }
            Ok(())
        }
    }
}

async fn bench(command: BenchCommand) -> Result<(), Failure> {
    use dbwarden::bench::{self, BenchError, Workload, drive::Limit};
    let failure = |e: BenchError| match e {
        BenchError::Usage(_) => Failure::Config(e.to_string()),
        other => Failure::Runtime(other.to_string()),
    };
    let (workload, args) = match command {
        BenchCommand::LeaseScale(args) => {
            let server_binary = std::env::current_exe()
                .map_err(|e| Failure::Runtime(format!("cannot find the dbwarden binary: {e}")))?;
            let figures = bench::lease_scale::run(&bench::lease_scale::ScaleOptions {
                server_binary,
                sizes: args.leases,
                database_url: args.database_url.map(Into::into),
                expire: args.expire,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            })
            .await
            .map_err(failure)?;
            match args.format {
                Format::Json => println!("{}", serde_json::json!({ "lease_scale": figures })),
                Format::Text => bench::print_scale_table(&figures),
            }
            return Ok(());
        }
        BenchCommand::Creds(args) => (Workload::Creds, args),
        BenchCommand::CredsRevoke(args) => (Workload::CredsRevoke, args),
        BenchCommand::Renew(args) => (Workload::Renew, args),
        BenchCommand::Lookup(args) => (Workload::Lookup, args),
        BenchCommand::StaticRead(args) => (Workload::StaticRead, args),
    };
    let ca_pem = match &args.ca_cert {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| Failure::Config(format!("cannot read {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let report = bench::run_load(bench::LoadOptions {
        workload,
        address: args.address,
        ca_pem,
        token: args.token.into(),
        mount: args.mount,
        role: args.role,
        concurrency: args.concurrency,
        limit: match args.count {
            Some(n) => Limit::Count(n),
            None => Limit::Duration(args.duration),
        },
        baseline_url: args.baseline_url.filter(|_| args.baseline).map(Into::into),
        rounds: usize::from(args.rounds),
    })
    .await
    .map_err(failure)?;
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ),
        Format::Text => bench::print_load_table(&report),
    }
    Ok(())
}

fn verify_audit(
    file: &std::path::Path,
    continues_from: Option<&str>,
    expect_last: Option<&str>,
) -> Result<(), Failure> {
    use dbwarden::audit::chain;
    let contents = std::fs::read_to_string(file)
        .map_err(|e| Failure::Config(format!("cannot read {}: {e}", file.display())))?;
    let summary = chain::verify(&contents)
        .map_err(|e| Failure::Runtime(format!("{}: chain broken at {e}", file.display())))?;
    let anchor_ok = match continues_from {
        Some(hash) => summary.anchor == hash,
        None => summary.first_seq == 1 && summary.anchor == chain::GENESIS,
    };
    if !anchor_ok {
        return Err(Failure::Runtime(format!(
            "{}: the chain starts at seq {} continuing from {}, not where expected (lines removed from the start, or a rotated file: pass --continues-from)",
            file.display(),
            summary.first_seq,
            summary.anchor
        )));
    }
    if let Some(hash) = expect_last
        && summary.last_hash != hash
    {
        return Err(Failure::Runtime(format!(
            "{}: the last line's hash is {}, not {hash} (lines removed from the end?)",
            file.display(),
            summary.last_hash
        )));
    }
    println!(
        "{}: OK: {} entries (seq {}..{}), last hash {}",
        file.display(),
        summary.lines,
        summary.first_seq,
        summary.first_seq + summary.lines - 1,
        summary.last_hash
    );
    Ok(())
}
