//! The `aml-triage` command line.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use futures_util::StreamExt;

use aml_triage::domain::alert::{Alert, AlertError};
use aml_triage::evaluation::{self, Expected, Labelled};
use aml_triage::{Decision, Disposition, Engine, Settings, checkpoint, http, store, telemetry};

mod cli_review;

#[derive(Parser)]
#[command(
    name = "aml-triage",
    version,
    about = "Triage anti-money-laundering alerts into auditable decisions"
)]
struct Cli {
    /// TOML configuration file (default: $AML_TRIAGE_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decide every alert in a JSON-lines file (alert lines or labelled `{"alert":..}` lines).
    Triage(TriageArgs),
    /// Decide a labelled file (`{"alert":...,"expected":...}` lines) and compare with the
    /// labels. Uses an in-memory store unless --database-url is given.
    Eval(EvalArgs),
    /// Screening lists: fetch and install new versions, show what is loaded, or write a
    /// robustness set.
    Lists {
        #[command(subcommand)]
        command: ListsCommand,
    },
    /// Apply pending database migrations.
    Migrate(DbArgs),
    /// Audit trail: verify the hash chains, or export a regulator pack.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Remove records older than RETENTION_DAYS (and record the purge in the audit chain).
    Purge(DbArgs),
    /// Serve the HTTP API (and /metrics on PROMETHEUS_PORT) until SIGTERM or Ctrl-C, then drain.
    /// With AMQP_URL set, also consume alerts from RabbitMQ and publish decisions.
    Serve(ServeArgs),
    /// Print every live node's agent state from Redis (REDIS_URL): health, in-flight,
    /// processed and failed counts, restarts, last error, circuit state.
    Status(StatusArgs),
    /// Serve agent steps to other nodes over RabbitMQ (needs AMQP_URL) until SIGTERM or Ctrl-C.
    Worker(WorkerArgs),
    /// Analyst-review users: add, disable, reset a password, list.
    Users {
        #[command(subcommand)]
        command: cli_review::UsersCommand,
        #[command(flatten)]
        db: cli_review::ReviewDbArgs,
    },
    /// QA of auto-clears: draw a period's sample; the examiner report (JSON + HTML).
    Qa {
        #[command(subcommand)]
        command: cli_review::QaCommand,
        #[command(flatten)]
        db: cli_review::ReviewDbArgs,
    },
    /// Local customer-data API for tests and evaluation: serves each customer's transactions
    /// from AMLSim's raw CSVs (accounts.csv, transactions.csv) at
    /// GET /customers/{id}/history; point EXTERNAL_DATA_API_URL at it.
    HistoryServer {
        /// AMLSim output folder (e.g. ../shared/data/amlsim-extdata3k).
        #[arg(long)]
        amlsim: PathBuf,
        /// Simulation name prefixing the ids (default: the folder name after `amlsim-`).
        #[arg(long)]
        simulation: Option<String>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8089")]
        bind: String,
    },
    /// Transaction scorecard: fit one on labelled alerts (activated only by SCORECARD_PATH).
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Fit a scorecard on a labelled file with cross-validation grouped by customer; print
    /// the out-of-fold PR-AUC, clear rate at 0 misses and threshold, and write the file.
    Fit {
        /// Labelled file (`{"alert":...,"expected":...}` lines), or --from-store.
        #[arg(long, required_unless_present = "from_store")]
        from: Option<PathBuf>,
        /// Fit on the analyst outcomes the review workflow recorded: closed cases of
        /// transaction alerts (`true_positive_*` and filed SARs suspicious, `false_positive`
        /// not, `inconclusive` left out), joined to the stored alerts and decisions. Reads
        /// DATABASE_URL (or --database-url).
        #[arg(long, conflicts_with = "from")]
        from_store: bool,
        /// Database URL for --from-store (overrides DATABASE_URL).
        #[arg(long, requires = "from_store")]
        database_url: Option<String>,
        /// Cross-validation folds (grouped by customer).
        #[arg(long, default_value_t = aml_triage::model::FitOptions::default().folds)]
        folds: usize,
        /// Fewest alerts per bin; the fit needs at least 2 x folds x min-bin alerts.
        #[arg(long, default_value_t = aml_triage::model::FitOptions::default().min_bin)]
        min_bin: usize,
        /// Scorecard file to write.
        #[arg(long, default_value = "scorecard.json")]
        out: PathBuf,
        /// FATF jurisdiction list (CSV), for the clearance blockers.
        #[arg(long)]
        jurisdictions: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct StatusArgs {
    /// Print JSON (one array of node states) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct WorkerArgs {
    /// Agents to serve: comma list of enrichment, risk, context, decision.
    #[arg(long, value_delimiter = ',', required = true)]
    agents: Vec<String>,
    #[command(flatten)]
    refs: RefArgs,
    /// Database URL (overrides DATABASE_URL; enrichment reads customer history from it).
    #[arg(long)]
    database_url: Option<String>,
    /// Do not apply pending migrations at start.
    #[arg(long)]
    no_migrate: bool,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on (overrides HTTP_BIND; default 0.0.0.0:8000).
    #[arg(long)]
    bind: Option<std::net::SocketAddr>,
    #[command(flatten)]
    refs: RefArgs,
    /// Database URL (overrides DATABASE_URL).
    #[arg(long)]
    database_url: Option<String>,
    /// Do not apply pending migrations at start.
    #[arg(long)]
    no_migrate: bool,
    /// HTTP worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Do not resume alerts left undecided at start (for nodes sharing a database with live
    /// nodes: RabbitMQ redelivery, not a start-up scan, hands their alerts over).
    #[arg(long)]
    no_resume: bool,
    #[command(flatten)]
    canary: cli_review::CanaryArgs,
}

/// Where the reference data comes from.
#[derive(clap::Args)]
struct RefArgs {
    /// Screening lists: a file or a folder searched for the formats it recognises.
    #[arg(long)]
    lists: Vec<PathBuf>,
    /// FATF jurisdiction list (CSV).
    #[arg(long)]
    jurisdictions: Option<PathBuf>,
}

impl RefArgs {
    fn apply(&self, settings: &mut Settings) {
        if !self.lists.is_empty() {
            settings.list_paths = self.lists.clone();
        }
        if let Some(j) = &self.jurisdictions {
            settings.jurisdiction_path = Some(j.clone());
        }
    }
}

#[derive(clap::Args)]
struct DbArgs {
    /// Database URL (overrides DATABASE_URL).
    #[arg(long)]
    database_url: Option<String>,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute every audit hash chain and name the first bad entry (exit 1 if any).
    Verify {
        /// Check only this alert's entries and records.
        #[arg(long)]
        alert: Option<String>,
        /// Also check the signed checkpoints in this directory: no entry up to the last
        /// signed head of each chain was rewritten, re-inserted or removed.
        #[arg(long, requires = "public_key")]
        checkpoints: Option<PathBuf>,
        /// Public key (made by `audit keygen`) the checkpoints must be signed with.
        #[arg(long, requires = "checkpoints")]
        public_key: Option<PathBuf>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Sign the current head of every audit chain and write the checkpoint to
    /// AUDIT_CHECKPOINT_DIR (or --dir) with the key in AUDIT_SIGNING_KEY_FILE (or --key).
    Checkpoint {
        /// Directory to write the checkpoint to.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Private key file.
        #[arg(long)]
        key: Option<PathBuf>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Make a new Ed25519 signing key: FILE (private, mode 0600) and FILE.pub.
    Keygen {
        /// Private key file to create (must not exist).
        out: PathBuf,
    },
    /// Write the regulator pack of one alert (alert as received, every step, the decision,
    /// the chain proof, versions) as JSON.
    Export {
        /// The alert.
        alert_id: String,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(clap::Args)]
struct EvalArgs {
    /// Labelled file (or --from-store).
    #[arg(required_unless_present = "from_store")]
    file: Option<PathBuf>,
    /// Compare the stored decisions with analyst outcomes (closed cases, QA verdicts) instead
    /// of a file: precision and recall per rule, typology and alert type. Reads
    /// DATABASE_URL (or --database-url); decides nothing.
    #[arg(long, conflicts_with = "file")]
    from_store: bool,
    /// Print the report as one JSON object on the last line of standard output.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    refs: RefArgs,
    /// Database URL (default: memory, so earlier decisions are not reused).
    #[arg(long)]
    database_url: Option<String>,
    /// Challenger scorecard: scores the transaction alerts beside the champion (the
    /// configuration in force) and the report compares them; it never decides.
    #[arg(long)]
    shadow: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ListsCommand {
    /// Fetch every LIST_SOURCES file, verify the set (parses, at least LIST_MIN_ENTRIES per
    /// list, at most LIST_MAX_REMOVED_PERCENT of a list's entries removed) and install it as
    /// LIST_DIR/current; serving nodes pick it up within LIST_RELOAD_SECONDS. Exit 1 and
    /// nothing installed when a check fails.
    Update {
        /// Folder of installed versions (overrides LIST_DIR).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print every loaded list with its version, entries and age.
    Status {
        #[command(flatten)]
        refs: RefArgs,
    },
    /// Write a screening robustness set: labelled alerts built from loaded list entries by
    /// named perturbations of their names (true hits) plus namesakes with a real
    /// disqualifier.
    Robustness(RobustnessArgs),
}

#[derive(clap::Args)]
struct RobustnessArgs {
    /// Where to write the labelled lines.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    refs: RefArgs,
    /// True hits per perturbation class.
    #[arg(long, default_value_t = 150)]
    per_class: usize,
    /// Namesake negatives per perturbation class.
    #[arg(long, default_value_t = 40)]
    negatives_per_class: usize,
    /// Seed of the deterministic generator.
    #[arg(long, default_value_t = 20_261_205)]
    seed: u64,
    /// Labelled files whose claimed entries are left out (a development set).
    #[arg(long)]
    exclude: Vec<PathBuf>,
    /// Only entries of these lists (e.g. OFAC_SDN, UN_CONSOLIDATED); all when absent.
    #[arg(long = "list")]
    only_lists: Vec<String>,
}

#[derive(clap::Args)]
struct TriageArgs {
    /// Input file, one alert (or one `{"alert":...,"expected":...}` object) per line.
    file: PathBuf,
    /// Write decisions here, one JSON object per line (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    refs: RefArgs,
    /// Database URL (overrides DATABASE_URL).
    #[arg(long)]
    database_url: Option<String>,
    /// Do not apply pending migrations at start.
    #[arg(long)]
    no_migrate: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Logs, and traces when OTEL_EXPORTER_OTLP_ENDPOINT is set. Keep the guard alive: dropping
/// it flushes the spans still queued.
fn init_logging(settings: &Settings) -> Result<telemetry::Telemetry> {
    Ok(telemetry::init(settings)?)
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Triage(args) => {
            args.refs.apply(&mut settings);
            if let Some(db) = &args.database_url {
                settings.database_url = db.clone();
            }
            settings.validate()?;
            let _telemetry = init_logging(&settings)?;
            let migrate = !args.no_migrate;
            triage(settings, args, migrate).await
        }
        Command::Lists { command } => match command {
            ListsCommand::Robustness(args) => {
                args.refs.apply(&mut settings);
                robustness(&settings, &args)
            }
            ListsCommand::Status { refs } => {
                refs.apply(&mut settings);
                lists_status(&settings)
            }
            ListsCommand::Update { dir, json } => {
                if let Some(d) = dir {
                    settings.list_dir = d;
                }
                lists_update(&settings, json).await
            }
        },
        Command::Eval(args) if args.from_store => {
            if let Some(db) = &args.database_url {
                settings.database_url = db.clone();
            }
            settings.validate()?;
            eval_from_store(&settings, args.json).await
        }
        Command::HistoryServer {
            amlsim,
            simulation,
            bind,
        } => {
            let sim = simulation.unwrap_or_else(|| {
                let name = amlsim
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                name.strip_prefix("amlsim-").unwrap_or(&name).to_string()
            });
            let data = aml_triage::history_server::AmlsimHistory::load(&amlsim, &sim)?;
            let customers = data.customers();
            let (addr, task) =
                aml_triage::history_server::start(std::sync::Arc::new(data), &bind).await?;
            println!("serving the history of {customers} customers ({sim}) on http://{addr}");
            tokio::signal::ctrl_c().await?;
            task.abort();
            Ok(ExitCode::SUCCESS)
        }
        Command::Model {
            command:
                ModelCommand::Fit {
                    from,
                    from_store,
                    database_url,
                    folds,
                    min_bin,
                    out,
                    jurisdictions,
                },
        } => {
            let o = aml_triage::model::FitOptions {
                folds,
                min_bin,
                ..Default::default()
            };
            let source = match from {
                Some(f) if !from_store => FitSource::File(f),
                _ => {
                    if let Some(db) = database_url {
                        settings.database_url = db;
                    }
                    settings.validate()?;
                    FitSource::Store
                }
            };
            model_fit(&settings, &source, &out, jurisdictions.as_deref(), &o).await
        }
        Command::Eval(args) => {
            args.refs.apply(&mut settings);
            settings.database_url = args.database_url.clone().unwrap_or_else(|| "memory".into());
            settings.validate()?;
            let _telemetry = init_logging(&settings)?;
            eval(settings, args).await
        }
        Command::Serve(args) => {
            args.refs.apply(&mut settings);
            if let Some(db) = &args.database_url {
                settings.database_url = db.clone();
            }
            if let Some(b) = args.bind {
                settings.http_bind = b.to_string();
            }
            settings.validate()?;
            let _telemetry = init_logging(&settings)?;
            serve(
                settings,
                !args.no_migrate,
                !args.no_resume,
                args.workers,
                args.canary,
            )
            .await
        }
        Command::Worker(args) => {
            args.refs.apply(&mut settings);
            if let Some(db) = &args.database_url {
                settings.database_url = db.clone();
            }
            settings.validate()?;
            let _telemetry = init_logging(&settings)?;
            worker(settings, args).await
        }
        Command::Status(args) => status(settings, args.json).await,
        Command::Migrate(db) => {
            let (store, _telemetry) = admin_store(&mut settings, &db).await?;
            store.migrate().await?;
            store.close().await;
            eprintln!(
                "migrations applied to {}",
                store::redact_url(&settings.database_url)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command } => match command {
            AuditCommand::Keygen { out } => {
                let id = checkpoint::KeyFileSigner::generate(&out)?;
                eprintln!(
                    "key {id}: private key in {}, public key in {}",
                    out.display(),
                    checkpoint::public_path(&out).display()
                );
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::Checkpoint { dir, key, db } => {
                let (store, _telemetry) = admin_store(&mut settings, &db).await?;
                let key = key
                    .or(settings.audit_signing_key_file.clone())
                    .context("no signing key: set AUDIT_SIGNING_KEY_FILE or pass --key")?;
                let dir = dir
                    .or(settings.audit_checkpoint_dir.clone())
                    .context("no checkpoint directory: set AUDIT_CHECKPOINT_DIR or pass --dir")?;
                let signer = checkpoint::KeyFileSigner::from_file(&key)?;
                let (cp, path) = checkpoint::write_checkpoint(&store, &signer, &dir).await?;
                store.close().await;
                eprintln!(
                    "checkpoint of {} chain(s) signed with key {} written to {}",
                    cp.chains.len(),
                    cp.key_id,
                    path.display()
                );
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::Verify {
                alert,
                checkpoints,
                public_key,
                db,
            } => {
                let (store, _telemetry) = admin_store(&mut settings, &db).await?;
                let report = store.verify(alert.as_deref()).await?;
                let signed = match (checkpoints, public_key) {
                    (Some(dir), Some(key)) => {
                        let key = checkpoint::read_public_key(&key)?;
                        Some(
                            checkpoint::verify_checkpoints(
                                &store,
                                &dir,
                                &key,
                                settings.retention_days,
                            )
                            .await?,
                        )
                    }
                    _ => None,
                };
                store.close().await;
                println!("{}", serde_json::to_string_pretty(&report)?);
                if let Some(signed) = &signed {
                    println!("{}", serde_json::to_string_pretty(signed)?);
                    if !signed.ok {
                        eprintln!(
                            "SIGNED CHECKPOINT CONTRADICTED: {}",
                            signed.failure.as_deref().unwrap_or("-")
                        );
                        return Ok(ExitCode::from(1));
                    }
                    eprintln!(
                        "{} signed checkpoint(s) hold: {} head(s) matched, {} removed by retention",
                        signed.checkpoints, signed.heads_matched, signed.heads_purged
                    );
                }
                if report.ok {
                    eprintln!(
                        "audit chain intact: {} entries in {} chain(s), {} records checked",
                        report.entries_checked, report.chains, report.records_checked
                    );
                    Ok(ExitCode::SUCCESS)
                } else {
                    if let Some(f) = &report.failure {
                        eprintln!(
                            "AUDIT CHAIN BROKEN at chain {} seq {} (alert {}{}): {}",
                            f.chain_id.as_deref().unwrap_or("-"),
                            f.seq.map_or("-".to_string(), |s| s.to_string()),
                            f.alert_id.as_deref().unwrap_or("-"),
                            match (&f.table, &f.column) {
                                (Some(t), Some(c)) => format!(", table {t}, column {c}"),
                                _ => String::new(),
                            },
                            f.reason
                        );
                    }
                    Ok(ExitCode::from(1))
                }
            }
            AuditCommand::Export { alert_id, out, db } => {
                let (store, _telemetry) = admin_store(&mut settings, &db).await?;
                let pack = store.export(&alert_id).await?;
                store.close().await;
                let text = serde_json::to_string_pretty(&pack)?;
                match out {
                    Some(p) => std::fs::write(&p, text)
                        .with_context(|| format!("cannot write {}", p.display()))?,
                    None => println!("{text}"),
                }
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Users { command, db } => {
            let db = DbArgs {
                database_url: db.database_url,
            };
            let (store, _telemetry) = admin_store(&mut settings, &db).await?;
            cli_review::users(store, &settings, command).await
        }
        Command::Qa { command, db } => {
            let db = DbArgs {
                database_url: db.database_url,
            };
            let (store, _telemetry) = admin_store(&mut settings, &db).await?;
            cli_review::qa(store, &settings, command).await
        }
        Command::Purge(db) => {
            let (store, _telemetry) = admin_store(&mut settings, &db).await?;
            let report = store
                .purge(settings.retention_days, chrono::Utc::now())
                .await?;
            store.close().await;
            println!("{}", serde_json::to_string_pretty(&report)?);
            eprintln!(
                "purged {} alert(s) received before {} (retention {} days); kept {} undecided",
                report.alerts, report.cutoff, settings.retention_days, report.kept_undecided
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `aml-triage status`: reads the agent state every live node published to Redis.
async fn status(settings: Settings, json: bool) -> Result<ExitCode> {
    use aml_triage::state::StateStore;
    settings.validate()?;
    let Some(url) = settings.redis_url() else {
        eprintln!(
            "REDIS_URL is not set: agent state is kept in process by each node \
             (see GET /v1/status on a running node)"
        );
        return Ok(ExitCode::from(2));
    };
    let redis = aml_triage::state::open_redis(&settings, url, &tokio::runtime::Handle::current())?;
    let nodes = redis
        .nodes()
        .await
        .with_context(|| format!("cannot read agent state from {}", store::redact_url(url)))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
        return Ok(ExitCode::SUCCESS);
    }
    if nodes.is_empty() {
        println!("no live node has published agent state");
        return Ok(ExitCode::SUCCESS);
    }
    for n in &nodes {
        println!(
            "node {}  updated {}  in_flight {}  leases {}  takeovers {}  accepting {}  state {}",
            n.node_id,
            n.updated_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            n.in_flight,
            n.leases,
            n.takeovers,
            n.accepting,
            n.state_backend
        );
        println!(
            "  {:<17} {:<10} {:>9} {:>10} {:>7} {:>8} {:<9} last_error",
            "agent", "health", "in_flight", "processed", "failed", "restarts", "circuit"
        );
        for a in &n.agents {
            println!(
                "  {:<17} {:<10} {:>9} {:>10} {:>7} {:>8} {:<9} {}",
                a.agent,
                a.health,
                a.in_flight,
                a.processed,
                a.failed,
                a.restarts,
                a.circuit,
                a.last_error.as_deref().unwrap_or("-")
            );
        }
        if let Some(b) = &n.bridge {
            println!(
                "  bridge  connected {}  consuming {}  in_flight {}  restarts {}",
                b.connected, b.consuming, b.in_flight, b.restarts
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A store for an administrative command. It writes (purge records, verify reads) under its
/// own audit chain, `{NODE_ID}:admin`, so it can run beside an engine holding `NODE_ID`'s.
async fn admin_store(
    settings: &mut Settings,
    db: &DbArgs,
) -> Result<(store::Store, telemetry::Telemetry)> {
    if let Some(url) = &db.database_url {
        settings.database_url = url.clone();
    }
    settings.validate()?;
    let telemetry = init_logging(settings)?;
    let store = store::Store::connect(
        Some(&settings.database_url),
        &format!("{}:admin", settings.node_id),
        store::StoreOptions::default(),
    )
    .await?;
    Ok((store, telemetry))
}

/// Starts signing audit checkpoints periodically when a key and a directory are configured.
fn start_checkpoints(engine: &Engine) -> Result<Option<tokio::task::JoinHandle<()>>> {
    let s = engine.settings();
    let (Some(key), Some(dir)) = (&s.audit_signing_key_file, &s.audit_checkpoint_dir) else {
        return Ok(None);
    };
    let signer = checkpoint::KeyFileSigner::from_file(key)?;
    eprintln!(
        "signing audit checkpoints with key {} into {} every {} s",
        checkpoint::Signer::key_id(&signer),
        dir.display(),
        s.audit_checkpoint_seconds
    );
    Ok(Some(checkpoint::spawn_periodic(
        engine.store().clone(),
        std::sync::Arc::new(signer),
        dir.clone(),
        std::time::Duration::from_secs_f64(s.audit_checkpoint_seconds),
    )))
}

/// Runs the HTTP server until a termination signal, then stops taking requests, lets those
/// in progress finish, and drains the engine (in-flight alerts are decided or resume later).
async fn serve(
    settings: Settings,
    migrate: bool,
    resume: bool,
    workers: usize,
    canary: cli_review::CanaryArgs,
) -> Result<ExitCode> {
    let bind = settings.http_bind.clone();
    let listener =
        std::net::TcpListener::bind(&bind).with_context(|| format!("cannot listen on {bind}"))?;
    let metrics_listener = match settings.prometheus_port {
        0 => None,
        port => {
            let host = listener.local_addr()?.ip();
            let addr = std::net::SocketAddr::new(host, port);
            Some(
                std::net::TcpListener::bind(addr)
                    .with_context(|| format!("cannot listen on {addr} (PROMETHEUS_PORT)"))?,
            )
        }
    };
    let engine = std::sync::Arc::new(
        Engine::builder(settings)
            .migrate(migrate)
            .resume_unfinished(resume)
            .start()
            .await?,
    );
    let server = http::start(
        engine.clone(),
        listener,
        metrics_listener,
        tokio::runtime::Handle::current(),
        workers,
    )?;
    tracing::info!(
        addr = %server.addr,
        metrics_addr = ?server.metrics_addr,
        store = engine.store().backend_name(),
        "serving"
    );
    eprintln!("listening on http://{}", server.addr);
    if let Some(m) = server.metrics_addr {
        eprintln!("metrics on http://{m}/metrics");
    }
    let checkpoints = start_checkpoints(&engine)?;
    let bridge = match engine.settings().amqp_url {
        Some(_) => Some(aml_triage::bridge::Bridge::start(engine.clone())?),
        None => None,
    };
    if bridge.is_some() {
        eprintln!(
            "consuming alerts from {} on {}",
            engine.settings().amqp_alert_queue,
            engine
                .settings()
                .amqp_url
                .as_ref()
                .map(|u| u.redacted())
                .unwrap_or_default()
        );
    }
    let review_tick = cli_review::spawn_review_tick(engine.clone(), &canary)?;
    shutdown_signal().await;
    if let Some(t) = review_tick {
        t.abort();
    }
    eprintln!("signal received: stopping the server and draining in-flight alerts");
    if let Some(b) = bridge {
        // First: stop taking queue messages and finish (publish, ack) those taken.
        b.stop().await;
    }
    server.stop().await;
    if let Some(c) = checkpoints {
        c.abort();
    }
    let left = engine.shutdown().await;
    if left > 0 {
        eprintln!("{left} alert(s) still in flight at shutdown: they resume at the next start");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the worker until a termination signal, then answers the steps it holds and stops.
async fn worker(mut settings: Settings, args: WorkerArgs) -> Result<ExitCode> {
    let agents = aml_triage::mq::parse_agent_list(&args.agents.join(","))
        .map_err(|m| anyhow::anyhow!("--agents: {m}"))?;
    if agents.is_empty() {
        anyhow::bail!("--agents: name at least one of enrichment, risk, context, decision");
    }
    if settings.amqp_url.is_none() {
        anyhow::bail!("worker mode needs AMQP_URL");
    }
    // The worker runs its agents here, whatever REMOTE_AGENTS says; and it writes under an
    // audit chain of its own, so it can share a host name and database with a node.
    settings.remote_agents = String::new();
    settings.node_id = format!("{}:worker", settings.node_id);
    let engine = std::sync::Arc::new(
        Engine::builder(settings)
            .migrate(!args.no_migrate)
            .resume_unfinished(false)
            .take_over_alerts(false)
            .start()
            .await?,
    );
    let worker = aml_triage::worker::Worker::start(engine.clone(), agents.clone())?;
    // Probes and scraping on PROMETHEUS_PORT, as on a node (deploy/k8s probes the workers
    // there); a worker takes no alerts over HTTP.
    let ops = match engine.settings().prometheus_port {
        0 => None,
        port => {
            let addr = std::net::SocketAddr::from(([0, 0, 0, 0], port));
            let listener = std::net::TcpListener::bind(addr)
                .with_context(|| format!("cannot listen on {addr} (PROMETHEUS_PORT)"))?;
            Some(http::start_ops(
                engine.clone(),
                listener,
                tokio::runtime::Handle::current(),
            )?)
        }
    };
    let names: Vec<&str> = agents
        .iter()
        .map(|k| aml_triage::mq::agent_short_name(*k))
        .collect();
    eprintln!("worker serving {}", names.join(", "));
    shutdown_signal().await;
    eprintln!("signal received: answering the steps in hand, then stopping");
    worker.stop().await;
    if let Some(ops) = ops {
        ops.stop().await;
    }
    engine.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// One parsed input line: the alert text as received and, on labelled lines, the label.
struct Line {
    raw: String,
    expected: Option<Expected>,
}

/// One input line, or why it is malformed. Labelled evaluation lines wrap the alert; the
/// label is kept aside for `eval` and never reaches the engine.
fn parse_line(line: &str, max_bytes: usize) -> Result<Line, AlertError> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
        // Parsed as an alert, a bad string (a lone surrogate) is reported with its field.
        Alert::from_json_limited(line, max_bytes)
            .err()
            .unwrap_or_else(|| AlertError::new("$", format!("not JSON: {e}")))
    })?;
    let (raw, expected) = match value.get("alert") {
        Some(inner) if value.get("alert_id").is_none() => {
            let expected = match value.get("expected") {
                Some(e) => Some(
                    serde_json::from_value::<Expected>(e.clone())
                        .map_err(|err| AlertError::new("expected", err.to_string()))?,
                ),
                None => None,
            };
            (inner.to_string(), expected)
        }
        _ => (line.to_string(), None),
    };
    Alert::from_json_limited(&raw, max_bytes).map_err(|e| {
        if raw.len() != line.len() {
            AlertError::new(format!("alert.{}", e.field), e.message)
        } else {
            e
        }
    })?;
    Ok(Line { raw, expected })
}

/// What processing a file produced.
#[derive(Default)]
struct FileRun {
    decided: Vec<(Decision, Option<Expected>)>,
    malformed: usize,
    failed: usize,
    left: usize,
    elapsed: std::time::Duration,
}

/// Decides every valid line of `path`, at most `MAX_CONCURRENT_ALERTS` at a time, calling
/// `on_decision` in input order. Malformed lines are reported on standard error and counted;
/// a termination signal stops reading and drains what is in flight.
async fn run_file(
    settings: Settings,
    migrate: bool,
    path: &std::path::Path,
    mut on_decision: impl FnMut(&Decision) -> Result<()>,
) -> Result<FileRun> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let max_bytes = settings.max_alert_bytes;
    let width = settings.max_concurrent_alerts;
    let engine = Engine::builder(settings).migrate(migrate).start().await?;
    let resumed = engine.resumed().await;
    if resumed.found > 0 {
        eprintln!(
            "resumed {} unfinished alert(s): {} decided, {} failed, {} left to the live node holding them",
            resumed.found, resumed.decided, resumed.failed, resumed.held_elsewhere
        );
    }
    let total_lines = BufReader::new(std::fs::File::open(path)?).lines().count();
    let progress = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(total_lines as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut run = FileRun::default();
    let started = Instant::now();
    {
        let lines = BufReader::new(file).lines().enumerate();
        let inputs = futures_util::stream::iter(lines).filter_map(|(i, line)| {
            let parsed = match line {
                Err(e) => Some(Err(format!("line {}: cannot read: {e}", i + 1))),
                Ok(l) if l.trim().is_empty() => None,
                Ok(l) => {
                    Some(parse_line(&l, max_bytes).map_err(|e| format!("line {}: {e}", i + 1)))
                }
            };
            futures_util::future::ready(parsed.map(|p| (i + 1, p)))
        });
        let engine = &engine;
        let mut results = inputs
            .map(|(n, parsed)| async move {
                match parsed {
                    Err(e) => Err((true, e)),
                    Ok(line) => engine
                        .submit_json(&line.raw)
                        .await
                        .map(|d| (d, line.expected))
                        .map_err(|e| (false, format!("line {n}: {e}"))),
                }
            })
            .buffered(width);
        let mut shutdown = std::pin::pin!(shutdown_signal());
        loop {
            let next = tokio::select! {
                next = results.next() => next,
                _ = &mut shutdown => {
                    eprintln!("signal received: draining in-flight alerts");
                    break;
                }
            };
            let Some(result) = next else { break };
            progress.inc(1);
            match result {
                Ok((d, expected)) => {
                    on_decision(&d)?;
                    run.decided.push((d, expected));
                }
                Err((is_malformed, e)) => {
                    progress.suspend(|| eprintln!("{e}"));
                    if is_malformed {
                        run.malformed += 1;
                    } else {
                        run.failed += 1;
                    }
                }
            }
        }
    }
    progress.finish_and_clear();
    run.elapsed = started.elapsed();
    run.left = engine.shutdown().await;
    Ok(run)
}

fn exit_code(run: &FileRun) -> ExitCode {
    if run.malformed > 0 {
        ExitCode::from(2)
    } else if run.failed > 0 || run.left > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

async fn triage(settings: Settings, args: TriageArgs, migrate: bool) -> Result<ExitCode> {
    // Each decision is written (and flushed) as it is made, so an interrupted run keeps what
    // it decided; a rerun with the same --out appends only the alerts the file lacks (the
    // store returns the earlier decision of an alert already decided, without deciding again).
    let (mut out, mut written): (Box<dyn Write + Send>, std::collections::HashSet<String>) =
        match &args.out {
            Some(p) => {
                let written = resume_output(p)?;
                if !written.is_empty() {
                    eprintln!(
                        "{} decision(s) already in {}; appending the rest",
                        written.len(),
                        p.display()
                    );
                }
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("cannot open {}", p.display()))?;
                (Box::new(file), written)
            }
            None => (Box::new(std::io::stdout()), Default::default()),
        };
    let run = run_file(settings, migrate, &args.file, |d| {
        if written.insert(d.alert_id.clone()) {
            let mut line = serde_json::to_string(d)?;
            line.push('\n');
            out.write_all(line.as_bytes())?;
            out.flush()?;
        }
        Ok(())
    })
    .await?;
    out.flush()?;
    let decisions: Vec<Decision> = run.decided.iter().map(|(d, _)| d.clone()).collect();
    print_summary(&decisions, run.elapsed, run.malformed, run.failed, run.left);
    Ok(exit_code(&run))
}

/// The alert ids of the complete decision lines already in `path` (none if it does not
/// exist). A last line cut short by an interrupted run is removed, so appending continues
/// from a clean line boundary.
fn resume_output(path: &std::path::Path) -> Result<std::collections::HashSet<String>> {
    let mut ids = std::collections::HashSet::new();
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    // Only what follows the last newline can be a line cut short; any complete line that is
    // not a decision means --out names some other file, which is not ours to change.
    let keep = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    for (n, line) in text[..keep].split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let id = serde_json::from_slice::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get("alert_id")?.as_str().map(str::to_string));
        match id {
            Some(id) => {
                ids.insert(id);
            }
            None => anyhow::bail!(
                "{} line {} is not a decision; refusing to append to it (choose another --out)",
                path.display(),
                n + 1
            ),
        }
    }
    if keep < text.len() {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        f.set_len(keep as u64)
            .with_context(|| format!("cannot truncate {}", path.display()))?;
        eprintln!(
            "{}: dropped {} byte(s) of a decision cut short by an interrupted run",
            path.display(),
            text.len() - keep
        );
    }
    Ok(ids)
}

async fn lists_update(settings: &Settings, json: bool) -> Result<ExitCode> {
    use aml_triage::reference::update::{UpdatePolicy, parse_sources, update};
    let sources = parse_sources(&settings.list_sources)?;
    let policy = UpdatePolicy {
        min_entries: settings.list_min_entries,
        max_removed_percent: settings.list_max_removed_percent,
        timeout: std::time::Duration::from_secs_f64(settings.list_fetch_timeout_seconds),
    };
    match update(&settings.list_dir, &sources, &policy).await {
        Ok(report) => {
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("installed {}", report.installed.display());
                for (id, c) in &report.lists {
                    println!(
                        "  {id:<20} {:<14} {:>7} entries  +{} -{}",
                        c.version, c.entries, c.added, c.removed
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: list update refused, nothing installed: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

fn lists_status(settings: &Settings) -> Result<ExitCode> {
    use aml_triage::assessment::enrichment::ReferenceData;
    use aml_triage::reference::ReferenceHandle;
    let refs = ReferenceData::load(settings).map_err(anyhow::Error::msg)?;
    let handle = ReferenceHandle::new(refs, settings.list_paths.clone());
    let now = chrono::Utc::now();
    for f in handle.freshness() {
        println!(
            "{:<20} {:<14} {:>7} entries  fetched {}  ({:.1} h ago)",
            f.list_id,
            f.version,
            f.entries,
            f.fetched_at.format("%Y-%m-%d %H:%M:%SZ"),
            f.age_seconds(now) / 3600.0
        );
    }
    let stale = handle.stale(&settings.required_lists(), settings.list_max_age_hours, now);
    for s in &stale {
        println!("STALE {s}");
    }
    Ok(if stale.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn robustness(settings: &Settings, args: &RobustnessArgs) -> Result<ExitCode> {
    use aml_triage::screening::robustness::{SetOptions, build, claimed_entries};
    if settings.list_paths.is_empty() {
        anyhow::bail!("--lists (or LIST_PATHS) is required: the set is built from list entries");
    }
    let lists = aml_triage::screening::ScreeningLists::load_paths(&settings.list_paths)?;
    let mut exclude = Vec::new();
    for f in &args.exclude {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read --exclude {}", f.display()))?;
        exclude.extend(claimed_entries(&text));
    }
    let opts = SetOptions {
        per_class: args.per_class,
        negatives_per_class: args.negatives_per_class,
        seed: args.seed,
        exclude,
        lists: args.only_lists.clone(),
    };
    let (lines, summary) = build(&lists, &opts);
    let mut text = String::new();
    for l in &lines {
        text.push_str(&serde_json::to_string(l)?);
        text.push('\n');
    }
    std::fs::write(&args.out, text)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("wrote {} lines to {}", lines.len(), args.out.display());
    for (class, n) in &summary.true_hits {
        println!("  true hits  {class:<22} {n}");
    }
    for (class, n) in &summary.negatives {
        println!("  negatives  {class:<22} {n}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn eval_from_store(settings: &Settings, json: bool) -> Result<ExitCode> {
    use aml_triage::review::feedback::{GroupCounts, collect, report};
    let store = aml_triage::store::Store::connect(
        Some(&settings.database_url),
        &settings.node_id,
        aml_triage::store::StoreOptions::default(),
    )
    .await?;
    store.migrate().await?;
    let (rows, unlabelled) = collect(&store).await?;
    store.close().await;
    let r = report(&rows, unlabelled);
    if json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "labels: {} from closed cases, {} from QA verdicts; {} case(s) not labelled yet",
        r.from_cases, r.from_qa, r.unlabelled_cases
    );
    println!("recall counts only the auto-clears QA sampled (see docs/review.md)");
    let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.3}"));
    let table = |title: &str, groups: &std::collections::BTreeMap<String, GroupCounts>| {
        println!(
            "{title:<24} {:>8} {:>10} {:>9} {:>9} {:>7}",
            "labelled", "suspicious", "escalated", "precision", "recall"
        );
        for (k, g) in groups {
            println!(
                "  {k:<22} {:>8} {:>10} {:>9} {:>9} {:>7}",
                g.labelled,
                g.suspicious,
                g.escalated,
                pct(g.precision),
                pct(g.recall)
            );
        }
    };
    table("rule", &r.per_rule);
    table("typology", &r.per_typology);
    table("alert type", &r.per_alert_type);
    println!(
        "overall: {} labelled, precision {}, recall {}",
        r.overall.labelled,
        pct(r.overall.precision),
        pct(r.overall.recall)
    );
    Ok(ExitCode::SUCCESS)
}

async fn eval(settings: Settings, args: EvalArgs) -> Result<ExitCode> {
    // The challenger is loaded first so a bad file fails before the run.
    let challenger = match &args.shadow {
        Some(p) => Some(
            aml_triage::model::load_scorecard(Some(&p.to_string_lossy()))?
                .context("--shadow names no scorecard")?,
        ),
        None => None,
    };
    let champion_name = aml_triage::model::config_version_with(
        settings.config_version(),
        aml_triage::model::load_scorecard(settings.scorecard_path.as_deref())?.as_ref(),
    );
    let juris_path = settings.jurisdiction_path.clone();
    let thresholds = settings.thresholds();
    let history_settings = settings.clone();
    let file = args
        .file
        .clone()
        .context("a labelled file is required (or --from-store)")?;
    let run = run_file(settings, true, &file, |_| Ok(())).await?;
    let unlabelled = run.decided.iter().filter(|(_, e)| e.is_none()).count();
    if unlabelled > 0 {
        eprintln!("{unlabelled} line(s) carry no `expected` label and are left out of the report");
    }
    let rows: Vec<Labelled> = run
        .decided
        .iter()
        .filter_map(|(d, e)| {
            e.as_ref().map(|e| Labelled {
                alert_id: d.alert_id.clone(),
                disposition: d.disposition,
                risk_score: d.risk_score,
                expected: e.clone(),
            })
        })
        .collect();
    let report = evaluation::report(&rows);
    let decisions: Vec<Decision> = run.decided.iter().map(|(d, _)| d.clone()).collect();
    print_summary(&decisions, run.elapsed, run.malformed, run.failed, run.left);
    print_report(&report);
    if let Some(challenger) = &challenger {
        let juris = match &juris_path {
            Some(p) => aml_triage::jurisdiction::JurisdictionTable::load(p)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
            None => aml_triage::jurisdiction::JurisdictionTable::empty(),
        };
        let mut rows = shadow_rows(&file, &run.decided)?;
        if let Some(h) = fetch_histories(&history_settings, rows.iter().map(|r| &r.alert)).await? {
            for r in &mut rows {
                r.history = Some(h.get(&r.alert.alert_id).cloned().unwrap_or_default());
            }
        }
        let c = aml_triage::shadow::compare(&champion_name, &rows, challenger, &juris, &thresholds);
        print_shadow(&c);
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(exit_code(&run))
}

/// The labelled alerts of `file` joined to the champion's decisions.
fn shadow_rows(
    file: &std::path::Path,
    decided: &[(Decision, Option<evaluation::Expected>)],
) -> Result<Vec<aml_triage::shadow::ChampionRow>> {
    let by_id: std::collections::HashMap<&str, &Decision> = decided
        .iter()
        .map(|(d, _)| (d.alert_id.as_str(), d))
        .collect();
    let text = std::fs::read_to_string(file)?;
    let mut rows = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Ok(alert), Ok(expected)) = (
            aml_triage::domain::alert::Alert::from_value(v["alert"].clone()),
            serde_json::from_value::<evaluation::Expected>(v["expected"].clone()),
        ) else {
            continue;
        };
        if let Some(d) = by_id.get(alert.alert_id.as_str()) {
            rows.push(aml_triage::shadow::ChampionRow {
                history: None,
                disposition: d.disposition,
                risk_score: d.risk_score,
                alert,
                expected,
            });
        }
    }
    Ok(rows)
}

fn print_shadow(c: &aml_triage::shadow::Comparison) {
    println!("shadow comparison (the champion decided; the challenger only scored):");
    println!(
        "{:<48} {:>7} {:>7} {:>7} {:>9} {:>9}",
        "", "PR-AUC", "missed", "clear", "clear@0", "clear@1%"
    );
    for s in [&c.champion, &c.challenger] {
        println!(
            "{:<48} {:>7.3} {:>7} {:>7.3} {:>9.3} {:>9.3}",
            s.name,
            s.pr_auc,
            s.missed_positives,
            s.clear_rate,
            s.clear_rate_at_0_misses,
            s.clear_rate_at_1pct_misses
        );
        for (t, (n, cleared)) in &s.per_typology {
            println!("    {t:<22} positives {n:>4}  cleared {cleared}");
        }
    }
    println!(
        "alerts whose clear/escalate outcome would differ: {}",
        c.outcomes_differing
    );
}

/// With EXTERNAL_DATA_API_URL set, each alert's customer history from the customer-data API
/// as enrichment keeps it (by alert id); `None` without the API. One request per customer.
async fn fetch_histories<'a>(
    settings: &Settings,
    alerts: impl IntoIterator<Item = &'a aml_triage::domain::alert::Alert>,
) -> Result<Option<std::collections::HashMap<String, Vec<aml_triage::domain::alert::Transaction>>>>
{
    let Some(client) = aml_triage::customer_data::CustomerDataClient::from_settings(settings)?
    else {
        return Ok(None);
    };
    let mut by_customer: std::collections::HashMap<
        String,
        aml_triage::customer_data::ExternalHistory,
    > = std::collections::HashMap::new();
    let mut out = std::collections::HashMap::new();
    for a in alerts {
        let cid = &a.customer.customer_id;
        if !by_customer.contains_key(cid) {
            let h = client
                .history(cid)
                .await
                .with_context(|| format!("customer-data API, customer {cid}"))?;
            by_customer.insert(cid.clone(), h);
        }
        out.insert(
            a.alert_id.clone(),
            aml_triage::domain::features::history_window(a, &by_customer[cid].transactions()),
        );
    }
    eprintln!(
        "history: {} customer(s) from EXTERNAL_DATA_API_URL",
        by_customer.len()
    );
    Ok(Some(out))
}

/// Where `model fit` reads its labelled alerts.
enum FitSource {
    /// A labelled file.
    File(PathBuf),
    /// The analyst outcomes in DATABASE_URL's review tables.
    Store,
}

async fn model_fit(
    settings: &Settings,
    from: &FitSource,
    out: &std::path::Path,
    jurisdictions: Option<&std::path::Path>,
    o: &aml_triage::model::FitOptions,
) -> Result<ExitCode> {
    use aml_triage::model;
    use sha2::Digest;
    let juris = match jurisdictions {
        Some(p) => aml_triage::jurisdiction::JurisdictionTable::load(p)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        None => aml_triage::jurisdiction::JurisdictionTable::empty(),
    };
    let (rows, sha, source) = match from {
        FitSource::File(from) => {
            let bytes =
                std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
            let text = String::from_utf8(bytes.clone()).context("training file is not UTF-8")?;
            let rows = model::rows_from_jsonl(&text, &juris)?;
            let sha = hex::encode(sha2::Sha256::digest(&bytes));
            let source = from
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (rows, sha, source)
        }
        FitSource::Store => {
            let store = aml_triage::store::Store::connect(
                Some(&settings.database_url),
                &settings.node_id,
                aml_triage::store::StoreOptions::default(),
            )
            .await?;
            store.migrate().await?;
            let t = aml_triage::review::feedback::training_outcomes(&store).await;
            store.close().await;
            let t = t?;
            println!(
                "analyst outcomes: {} labelled ({} positive: true_positive_* or SAR filed; {} \
                 negative: false_positive); {} inconclusive and {} without a stored \
                 alert/decision left out",
                t.outcomes.len(),
                t.positives,
                t.negatives,
                t.inconclusive,
                t.missing
            );
            if t.capped {
                eprintln!(
                    "warning: a case listing hit the store's page of 1000 rows: some outcomes \
                     are not used"
                );
            }
            let need = model::min_alerts(o);
            if t.outcomes.len() < need || t.positives == 0 || t.negatives == 0 {
                anyhow::bail!(
                    "too few labelled outcomes to fit: {} ({} positive, {} negative); need at \
                     least {need} (2 x {} folds x {} per bin) with both classes",
                    t.outcomes.len(),
                    t.positives,
                    t.negatives,
                    o.folds,
                    o.min_bin
                );
            }
            let (rows, sha) = model::rows_from_labelled_json(
                t.outcomes
                    .iter()
                    .map(|x| (x.alert_json.as_str(), x.suspicious, x.typology.as_str())),
                &juris,
            )?;
            (rows, sha, "store".to_string())
        }
    };
    // With the customer-data API configured, the rows carry the customers' history (the
    // `hist_*` features), as the engine's enrichment would give them.
    // The training digest then covers the history too, and the version says `history`.
    let (rows, sha, source) = match fetch_histories(settings, rows.iter().map(|r| &r.alert)).await?
    {
        None => (rows, sha, source),
        Some(h) => {
            let mut d = sha2::Sha256::new();
            d.update(sha.as_bytes());
            let rows: Vec<model::Row> = rows
                .into_iter()
                .map(|r| {
                    let txs = h.get(&r.alert.alert_id).cloned().unwrap_or_default();
                    d.update(r.alert.alert_id.as_bytes());
                    d.update(serde_json::to_string(&txs).unwrap_or_default().as_bytes());
                    model::Row::with_history(r.alert, r.suspicious, r.typology, &juris, Some(&txs))
                })
                .collect();
            (rows, hex::encode(d.finalize()), format!("{source}+history"))
        }
    };
    let (sc, r) = model::fit(&rows, &source, &sha, o, &settings.thresholds())?;
    let show = |name: &str, m: &model::Metrics| {
        println!(
            "{name:<28} PR-AUC {:.3}  missed positives {}  clear rate {:.3}",
            m.pr_auc, m.missed_positives, m.clear_rate
        );
    };
    println!(
        "{} alerts, {} suspicious; scorecard {}",
        sc.training.alerts, sc.training.positives, sc.version
    );
    show("out of fold (grouped)", &r.out_of_fold);
    println!(
        "  threshold (log-odds) with 0 misses out of fold: {:.4}; clear rate at <= 1% misses: {:.3}",
        r.threshold_logit, r.clear_rate_at_1pct_misses
    );
    show("in sample (final scorecard)", &r.in_sample);
    show("current rule points", &r.rule_points);
    std::fs::write(out, serde_json::to_string_pretty(&sc)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &evaluation::Report) {
    println!(
        "alerts {}  positives {}  negatives {}",
        r.alerts, r.positives, r.negatives
    );
    println!(
        "{:<18} {:>10} {:>10}",
        "disposition", "positives", "negatives"
    );
    for (d, n) in &r.positives_by_disposition {
        println!(
            "{d:<18} {n:>10} {:>10}",
            r.negatives_by_disposition.get(d).copied().unwrap_or(0)
        );
    }
    println!(
        "missed positives (suspicious but auto-cleared): {}",
        r.missed_positives
    );
    for id in &r.missed_positive_ids {
        println!("  {id}");
    }
    println!(
        "auto-clear rate among negatives: {:.3}",
        r.auto_clear_rate_negatives
    );
    println!(
        "escalation recall among positives: {:.3}",
        r.escalation_recall
    );
    println!("PR-AUC of the risk score: {:.3}", r.pr_auc);
    for (t, rec) in &r.per_typology {
        println!(
            "  recall {t:<22} {}/{} = {:.3}  (cleared {})",
            rec.escalated,
            rec.positives,
            rec.recall,
            rec.positives - rec.escalated
        );
    }
    for (t, c) in &r.negatives_per_typology {
        println!(
            "  cleared {t:<21} {}/{} = {:.3}",
            c.cleared, c.negatives, c.clear_rate
        );
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn print_summary(
    decisions: &[Decision],
    elapsed: std::time::Duration,
    malformed: usize,
    failed: usize,
    left: usize,
) {
    let mut latencies: Vec<u64> = decisions.iter().map(|d| d.processing_time_ms).collect();
    latencies.sort_unstable();
    eprintln!(
        "decided {} alert(s) in {:.2}s ({:.0} alerts/s)",
        decisions.len(),
        elapsed.as_secs_f64(),
        decisions.len() as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    for d in Disposition::ALL {
        let n = decisions.iter().filter(|x| x.disposition == d).count();
        eprintln!("  {:<18} {n}", d.as_str());
    }
    let degraded = decisions.iter().filter(|d| d.degraded).count();
    eprintln!("  degraded           {degraded}");
    eprintln!(
        "latency p50 {} ms, p99 {} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99)
    );
    if malformed > 0 {
        eprintln!(
            "{malformed} malformed line(s) rejected (see above); nothing was stored for them"
        );
    }
    if failed > 0 {
        eprintln!("{failed} alert(s) not decided (see above)");
    }
    if left > 0 {
        eprintln!("{left} alert(s) still in flight at shutdown: they resume at the next start");
    }
}
