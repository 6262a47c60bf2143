//! `aml-triage users ...`, `aml-triage qa ...`, `aml-triage canary ...`, and the review tick
//! of `serve` (missing cases, queue gauges, scheduled canaries).

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;

use aml_triage::domain::review::{SamplingPlan, UserRole};
use aml_triage::review::canary::{CanaryDef, default_canaries, load_canaries};
use aml_triage::review::{Review, ReviewConfig};
use aml_triage::{Engine, store};

/// The database of `users` and `qa` (accepted before or after the subcommand).
#[derive(clap::Args)]
pub struct ReviewDbArgs {
    /// Database URL (overrides DATABASE_URL).
    #[arg(long, global = true)]
    pub database_url: Option<String>,
}

/// `aml-triage users`.
#[derive(Subcommand)]
pub enum UsersCommand {
    /// Add a local user. The password is read from the first line of stdin with
    /// --password-stdin (never from the command line); without it the user can only log in
    /// through OIDC.
    Add {
        /// Login name.
        user_id: String,
        /// Comma list of roles: analyst, reviewer, qa, supervisor, admin.
        #[arg(long)]
        roles: String,
        /// Name shown to others.
        #[arg(long, default_value = "")]
        name: String,
        /// Read the password from stdin.
        #[arg(long)]
        password_stdin: bool,
        /// OIDC subject (`sub`) this user logs in as.
        #[arg(long)]
        oidc_subject: Option<String>,
    },
    /// Disable a user and end their sessions.
    Disable {
        /// Login name.
        user_id: String,
    },
    /// Set a new password (first line of stdin) and re-enable the user.
    Reset {
        /// Login name.
        user_id: String,
    },
    /// List users.
    List,
}

/// `aml-triage qa`.
#[derive(Subcommand)]
pub enum QaCommand {
    /// Draw a period's stratified sample of auto-clears into the blind QA queue.
    Draw {
        /// Month, `YYYY-MM`.
        #[arg(long)]
        period: String,
        /// Seed of the random draw (recorded in the audit chain).
        #[arg(long)]
        seed: Option<u64>,
        /// Samples per period.
        #[arg(long, default_value_t = 300)]
        size: usize,
    },
    /// The examiner report: JSON on stdout, and a printable HTML file with --html.
    Report {
        /// Month, `YYYY-MM` (default: every period).
        #[arg(long)]
        period: Option<String>,
        /// Also write the printable HTML report here.
        #[arg(long)]
        html: Option<PathBuf>,
    },
}

fn who() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

fn read_password() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

async fn review_on(store: store::Store, settings: &aml_triage::Settings) -> Result<Review> {
    store.migrate().await?;
    Ok(Review::new(
        Arc::new(store),
        aml_triage::metrics::Metrics::new(),
        ReviewConfig::from_settings(settings),
    ))
}

/// Runs `aml-triage users ...` on `store`.
pub async fn users(
    store: store::Store,
    settings: &aml_triage::Settings,
    cmd: UsersCommand,
) -> Result<ExitCode> {
    let review = review_on(store, settings).await?;
    let by = who();
    let r = match cmd {
        UsersCommand::Add {
            user_id,
            roles,
            name,
            password_stdin,
            oidc_subject,
        } => {
            let roles = UserRole::parse_list(&roles)?;
            let password = if password_stdin {
                Some(read_password()?)
            } else {
                None
            };
            let mut u = review
                .add_user(&by, &user_id, &name, roles, password.as_deref())
                .await?;
            if let Some(sub) = oidc_subject {
                review.link_oidc_subject(&by, &user_id, &sub).await?;
                u.oidc_subject = Some(sub);
            }
            println!("{}", serde_json::to_string_pretty(&u)?);
            Ok(ExitCode::SUCCESS)
        }
        UsersCommand::Disable { user_id } => {
            review.disable_user(&by, &user_id).await?;
            eprintln!("user {user_id} disabled; their sessions are ended");
            Ok(ExitCode::SUCCESS)
        }
        UsersCommand::Reset { user_id } => {
            let password = read_password()?;
            review.reset_password(&by, &user_id, &password).await?;
            eprintln!("password of {user_id} reset; their sessions are ended");
            Ok(ExitCode::SUCCESS)
        }
        UsersCommand::List => {
            let users = review.store().users().await?;
            println!("{}", serde_json::to_string_pretty(&users)?);
            Ok(ExitCode::SUCCESS)
        }
    };
    review.store().close().await;
    r
}

/// Runs `aml-triage qa ...` on `store`.
pub async fn qa(
    store: store::Store,
    settings: &aml_triage::Settings,
    cmd: QaCommand,
) -> Result<ExitCode> {
    let review = review_on(store, settings).await?;
    let r = match cmd {
        QaCommand::Draw { period, seed, size } => {
            let plan = SamplingPlan {
                sample_size: size,
                ..SamplingPlan::default_for(settings.risk_score_high_threshold)
            };
            let seed = seed.unwrap_or_else(|| fastrand::u64(..));
            let drawn = review.draw_qa_sample(&who(), &period, &plan, seed).await?;
            eprintln!("drew {} sample(s) for {period} (seed {seed})", drawn.len());
            Ok(ExitCode::SUCCESS)
        }
        QaCommand::Report { period, html } => {
            let report = review.qa_report(period.as_deref()).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if let Some(p) = html {
                std::fs::write(&p, aml_triage::review::qa::report_html(&report))
                    .with_context(|| format!("cannot write {}", p.display()))?;
                eprintln!("HTML report written to {}", p.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    };
    review.store().close().await;
    r
}

/// Canary options of `serve`.
#[derive(clap::Args, Clone)]
pub struct CanaryArgs {
    /// Inject the canaries every this many seconds (0: never).
    #[arg(long, default_value_t = 0)]
    pub canary_interval_seconds: u64,
    /// Canary definitions (JSON lines `{"name":..,"alert":{..}}`; default: the built-in set).
    #[arg(long)]
    pub canaries: Option<PathBuf>,
}

impl CanaryArgs {
    fn defs(&self) -> Result<Vec<CanaryDef>> {
        match &self.canaries {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                Ok(load_canaries(&text)?)
            }
            None => Ok(default_canaries()),
        }
    }
}

/// Starts the review tick of `serve`: opens missing cases at start, then every minute
/// refreshes the queue gauges and, on the canary schedule, injects the canaries. `None`
/// when the store has no review tables.
pub fn spawn_review_tick(
    engine: Arc<Engine>,
    canary: &CanaryArgs,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    if !engine.store().supports_review() {
        return Ok(None);
    }
    let defs = canary.defs()?;
    let interval = canary.canary_interval_seconds;
    Ok(Some(tokio::spawn(async move {
        let review = Review::new(
            engine.store().clone(),
            engine.metrics().clone(),
            ReviewConfig::from_settings(engine.settings()),
        );
        let mut last_canary: Option<tokio::time::Instant> = None;
        loop {
            if let Err(e) = review.open_missing_cases().await {
                tracing::warn!(error = %e, "review tick: opening missing cases failed");
            }
            if let Err(e) = review.refresh_gauges().await {
                tracing::warn!(error = %e, "review tick: queue gauges failed");
            }
            let due = interval > 0
                && last_canary.is_none_or(|t| t.elapsed() >= Duration::from_secs(interval));
            if due {
                last_canary = Some(tokio::time::Instant::now());
                if let Err(e) = review.inject_canaries(&*engine, &defs).await {
                    tracing::error!(error = %e, "canary injection failed");
                }
            }
            tokio::time::sleep(Duration::from_secs(60.min(interval.max(1)))).await;
        }
    })))
}
