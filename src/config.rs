//! Configuration: built-in defaults < TOML file < environment variables.
//!
//! Keys are the seed's environment names (`AUTO_CLEAR_THRESHOLD`, `MAX_CONCURRENT_ALERTS`, ...).
//! In a TOML file the same keys are written in lower case (`auto_clear_threshold = 0.9`).
//! Unknown keys in the file and invalid values anywhere fail at start with an error naming the
//! key. Every key listed here is read by the engine; none is decorative.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::AgentKind;
use crate::domain::policy::Thresholds;

/// The environment-key prefix of `agent`'s per-agent settings (`DECISION_MAKER` in
/// `DECISION_MAKER_MAX_RETRIES`).
pub fn agent_key_prefix(agent: AgentKind) -> &'static str {
    match agent {
        AgentKind::DataEnrichment => "DATA_ENRICHMENT",
        AgentKind::RiskScoring => "RISK_SCORING",
        AgentKind::ContextBuilder => "CONTEXT_BUILDER",
        AgentKind::DecisionMaker | AgentKind::SupervisorCheck => "DECISION_MAKER",
    }
}

/// Default `ANTHROPIC_BASE_URL`.
pub const ANTHROPIC_DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// Default `OPENAI_BASE_URL`.
pub const OPENAI_DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// How the JSON answer is requested (`OPENAI_RESPONSE_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonMode {
    /// `{"type":"json_object"}`: any JSON object; the schema is in the prompt.
    JsonObject,
    /// `{"type":"json_schema","json_schema":{"name","schema"}}` (OpenAI structured outputs).
    JsonSchema,
    /// `{"type":"json_object","schema":{...}}` (llama-cpp-python's server).
    JsonObjectSchema,
    /// No `response_format` at all: plain text, the schema only in the prompt (the last
    /// fallback for servers that know no JSON mode).
    Text,
}

impl JsonMode {
    /// Parses the config value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "json_object" => Some(Self::JsonObject),
            "json_schema" => Some(Self::JsonSchema),
            "json_object_schema" => Some(Self::JsonObjectSchema),
            "text" => Some(Self::Text),
            _ => None,
        }
    }

    /// The config value naming this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JsonObject => "json_object",
            Self::JsonSchema => "json_schema",
            Self::JsonObjectSchema => "json_object_schema",
            Self::Text => "text",
        }
    }

    /// The format to try when a server rejects this one: `json_schema` and
    /// `json_object_schema` fall back to `json_object`, which falls back to `text`.
    pub fn fallback(self) -> Option<Self> {
        match self {
            Self::JsonSchema | Self::JsonObjectSchema => Some(Self::JsonObject),
            Self::JsonObject => Some(Self::Text),
            Self::Text => None,
        }
    }
}

/// Environment variable naming the TOML configuration file when `--config` is not given.
pub const CONFIG_FILE_ENV: &str = "AML_TRIAGE_CONFIG";

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key has a value the engine cannot use.
    #[error("invalid configuration: {key}: {message}")]
    Invalid {
        /// The key, as its environment name.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The TOML file names a key the engine does not know.
    #[error("invalid configuration: unknown key {key:?} in {file}")]
    UnknownKey {
        /// The key as written.
        key: String,
        /// The file.
        file: String,
    },
    /// The file could not be read or parsed.
    #[error("invalid configuration: {0}")]
    Source(String),
}

/// Every key the engine reads, as environment names.
pub const KNOWN_KEYS: &[&str] = &[
    "AUTO_CLEAR_THRESHOLD",
    "ESCALATE_L2_THRESHOLD",
    "RISK_SCORE_MEDIUM_THRESHOLD",
    "RISK_SCORE_HIGH_THRESHOLD",
    "RISK_SCORE_SEVERE_THRESHOLD",
    "MAX_CONCURRENT_ALERTS",
    "ADMISSION_WAIT_SECONDS",
    "AGENT_TIMEOUT_SECONDS",
    "DATA_ENRICHMENT_TIMEOUT_SECONDS",
    "RISK_SCORING_TIMEOUT_SECONDS",
    "CONTEXT_BUILDER_TIMEOUT_SECONDS",
    "DECISION_MAKER_TIMEOUT_SECONDS",
    "MAX_RETRIES",
    "RETRY_BASE_DELAY_MS",
    "RETRY_MAX_DELAY_MS",
    "DATA_ENRICHMENT_MAX_RETRIES",
    "DATA_ENRICHMENT_RETRY_BASE_DELAY_MS",
    "DATA_ENRICHMENT_RETRY_MAX_DELAY_MS",
    "RISK_SCORING_MAX_RETRIES",
    "RISK_SCORING_RETRY_BASE_DELAY_MS",
    "RISK_SCORING_RETRY_MAX_DELAY_MS",
    "CONTEXT_BUILDER_MAX_RETRIES",
    "CONTEXT_BUILDER_RETRY_BASE_DELAY_MS",
    "CONTEXT_BUILDER_RETRY_MAX_DELAY_MS",
    "DECISION_MAKER_MAX_RETRIES",
    "DECISION_MAKER_RETRY_BASE_DELAY_MS",
    "DECISION_MAKER_RETRY_MAX_DELAY_MS",
    "RESTART_MAX",
    "RESTART_WINDOW_SECONDS",
    "RESTART_BACKOFF_MS",
    "FAILED_AGENT_COOLDOWN_SECONDS",
    "SHUTDOWN_GRACE_SECONDS",
    "DATA_ENRICHMENT_MODEL",
    "RISK_SCORING_MODEL",
    "CONTEXT_BUILDER_MODEL",
    "DECISION_MAKER_MODEL",
    "SUPERVISOR_MODEL",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "DATABASE_URL",
    "NODE_ID",
    "MAX_ALERT_BYTES",
    "LIST_PATHS",
    "JURISDICTION_PATH",
    // Transaction scorecard (issue 20).
    "SCORECARD_PATH",
    "SCORECARD_SHADOW_PATH",
    // List freshness (issue 13).
    "LIST_SOURCES",
    "LIST_DIR",
    "LIST_MIN_ENTRIES",
    "LIST_MAX_REMOVED_PERCENT",
    "LIST_MAX_AGE_HOURS",
    "LIST_REQUIRED",
    "LIST_RELOAD_SECONDS",
    "LIST_FETCH_TIMEOUT_SECONDS",
    "RETENTION_DAYS",
    "OFFLINE_LATENCY_MS",
    "CONTEXT_BUILDER_PROVIDER",
    "DECISION_MAKER_PROVIDER",
    "SUPERVISOR_PROVIDER",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_RESPONSE_FORMAT",
    "LLM_REQUEST_TIMEOUT_SECONDS",
    "LLM_PII_MINIMISATION",
    "LLM_PRICES",
    "LLM_CIRCUIT_FAILURES",
    "LLM_CIRCUIT_COOLDOWN_SECONDS",
    // Cluster-wide request rate per model provider (issue 16).
    "ANTHROPIC_RATE_LIMIT_RPM",
    "OPENAI_RATE_LIMIT_RPM",
    "LLM_FIRST_TOKEN_TIMEOUT_SECONDS",
    "ANTHROPIC_MAX_CONCURRENCY",
    "OPENAI_MAX_CONCURRENCY",
    "ANTHROPIC_DAILY_TOKEN_BUDGET",
    "OPENAI_DAILY_TOKEN_BUDGET",
    "ANTHROPIC_DAILY_COST_BUDGET_USD",
    "OPENAI_DAILY_COST_BUDGET_USD",
    // HTTP ingress, metrics and traces (issue 7).
    "HTTP_BIND",
    "PROMETHEUS_PORT",
    "API_KEYS",
    "MAX_BATCH_ALERTS",
    "HTTP_WAIT_SECONDS",
    "HTTP_MAX_BODY_BYTES",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_SERVICE_NAME",
    // Agent state, leases and caches in Redis; external customer data (issue 6).
    "REDIS_URL",
    "REDIS_KEY_PREFIX",
    "REDIS_TIMEOUT_MS",
    "CACHE_TTL",
    "LEASE_TTL_SECONDS",
    "LEASE_HEARTBEAT_SECONDS",
    "STATE_PUBLISH_SECONDS",
    "EXTERNAL_DATA_API_URL",
    "EXTERNAL_DATA_API_KEY",
    "EXTERNAL_DATA_TIMEOUT_SECONDS",
    "EXTERNAL_DATA_MAX_RETRIES",
    // RabbitMQ bridge and remote agents (issue 8).
    "AMQP_URL",
    "AMQP_ALERT_QUEUE",
    "AMQP_DECISION_EXCHANGE",
    "AMQP_DEAD_LETTER_QUEUE",
    "AMQP_AGENT_QUEUE_PREFIX",
    "AMQP_PREFETCH",
    "REMOTE_AGENTS",
    // Signed audit checkpoints and HTTP connection limits (issue 19).
    "AUDIT_SIGNING_KEY_FILE",
    "AUDIT_CHECKPOINT_DIR",
    "AUDIT_CHECKPOINT_SECONDS",
    "HTTP_CLIENT_TIMEOUT_SECONDS",
    "HTTP_KEEP_ALIVE_SECONDS",
    "HTTP_MAX_CONNECTIONS",
    // Analyst review: OIDC login, authorization code + PKCE (issue 14).
    "OIDC_ISSUER",
    "OIDC_CLIENT_ID",
    "OIDC_REDIRECT_URI",
    "SAR_FILE_DAYS",
    "SAR_FILE_DAYS_NO_SUSPECT",
    "SAR_CONTINUING_REVIEW_DAYS",
    "SAR_CONTINUING_FILE_DAYS",
    "REVIEW_SESSION_HOURS",
    "REVIEW_LOCK_MINUTES",
    "REVIEW_SLA_HOURS",
    "QA_CONFIDENCE",
    "CANARY_DEADLINE_SECONDS",
    "LOGIN_MAX_FAILURES",
    "LOGIN_WINDOW_MINUTES",
];

/// Environment variable holding API keys as `key:role,key:role` (file key: `api_keys`).
pub const API_KEYS_ENV: &str = "AML_TRIAGE_API_KEYS";

/// Roles an API key may have.
pub const API_ROLES: &[&str] = &["submitter", "reader", "auditor", "admin"];

/// API keys as `key:role` entries. Neither its Debug nor its serialised form shows a key.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiKeys(pub Vec<String>);

impl Serialize for ApiKeys {
    // Like `ApiKey`: serialised settings (dumps, `Settings`' Debug) must not carry the keys.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|_| crate::secret::REDACTED))
    }
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} redacted)", self.0.len())
    }
}

impl<'de> Deserialize<'de> for ApiKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A TOML list of entries, or one `key:role,key:role` string as in the environment.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            List(Vec<String>),
            Text(String),
        }
        Ok(match Form::deserialize(d)? {
            Form::List(v) => ApiKeys(v),
            Form::Text(t) => ApiKeys::parse(&t),
        })
    }
}

impl ApiKeys {
    /// Splits `key:role,key:role`.
    pub fn parse(text: &str) -> ApiKeys {
        ApiKeys(
            text.split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }

    /// `(key, role)` pairs; errors say which entry is wrong but never echo a key.
    pub fn entries(&self) -> Result<Vec<(String, String)>, String> {
        self.0
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let (key, role) = e
                    .rsplit_once(':')
                    .ok_or_else(|| format!("entry {}: expected key:role", i + 1))?;
                if key.len() < 16 {
                    return Err(format!("entry {}: key shorter than 16 characters", i + 1));
                }
                if !API_ROLES.contains(&role) {
                    return Err(format!(
                        "entry {}: unknown role {role:?} (expected one of {})",
                        i + 1,
                        API_ROLES.join(", ")
                    ));
                }
                Ok((key.to_string(), role.to_string()))
            })
            .collect()
    }
}

/// The engine's settings after merging and validation. Its `Debug` form hides the passwords
/// of `DATABASE_URL` and `REDIS_URL` (API keys and `AMQP_URL` are redacted types already).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Minimum confidence for AUTO_CLEAR.
    pub auto_clear_threshold: f64,
    /// Escalations whose confidence falls below this go to senior (L3) review.
    pub escalate_l2_threshold: f64,
    /// Risk score from which an alert is at least MEDIUM and cannot be auto-cleared.
    pub risk_score_medium_threshold: f64,
    /// Risk score from which an alert is HIGH (hard stop: never auto-cleared; L3).
    pub risk_score_high_threshold: f64,
    /// Risk score from which an alert is SEVERE (SAR recommended).
    pub risk_score_severe_threshold: f64,
    /// Alerts in flight per node.
    pub max_concurrent_alerts: usize,
    /// How long `submit` waits for admission before telling the caller the node is busy.
    pub admission_wait_seconds: f64,
    /// Default per-attempt timeout of every agent.
    pub agent_timeout_seconds: f64,
    /// Per-agent override of the timeout.
    #[serde(default)]
    pub data_enrichment_timeout_seconds: Option<f64>,
    /// Per-agent override of the timeout.
    #[serde(default)]
    pub risk_scoring_timeout_seconds: Option<f64>,
    /// Per-agent override of the timeout.
    #[serde(default)]
    pub context_builder_timeout_seconds: Option<f64>,
    /// Per-agent override of the timeout.
    #[serde(default)]
    pub decision_maker_timeout_seconds: Option<f64>,
    /// Retries after the first attempt for retryable errors.
    pub max_retries: u32,
    /// First retry delay; doubles each attempt, with full jitter.
    pub retry_base_delay_ms: u64,
    /// Cap on one retry delay.
    pub retry_max_delay_ms: u64,
    /// Per-agent override of `max_retries` (`DATA_ENRICHMENT_MAX_RETRIES`).
    #[serde(default)]
    pub data_enrichment_max_retries: Option<u32>,
    /// Per-agent override of `retry_base_delay_ms`.
    #[serde(default)]
    pub data_enrichment_retry_base_delay_ms: Option<u64>,
    /// Per-agent override of `retry_max_delay_ms`.
    #[serde(default)]
    pub data_enrichment_retry_max_delay_ms: Option<u64>,
    /// Per-agent override of `max_retries` (`RISK_SCORING_MAX_RETRIES`).
    #[serde(default)]
    pub risk_scoring_max_retries: Option<u32>,
    /// Per-agent override of `retry_base_delay_ms`.
    #[serde(default)]
    pub risk_scoring_retry_base_delay_ms: Option<u64>,
    /// Per-agent override of `retry_max_delay_ms`.
    #[serde(default)]
    pub risk_scoring_retry_max_delay_ms: Option<u64>,
    /// Per-agent override of `max_retries` (`CONTEXT_BUILDER_MAX_RETRIES`).
    #[serde(default)]
    pub context_builder_max_retries: Option<u32>,
    /// Per-agent override of `retry_base_delay_ms`.
    #[serde(default)]
    pub context_builder_retry_base_delay_ms: Option<u64>,
    /// Per-agent override of `retry_max_delay_ms`.
    #[serde(default)]
    pub context_builder_retry_max_delay_ms: Option<u64>,
    /// Per-agent override of `max_retries` (`DECISION_MAKER_MAX_RETRIES`).
    #[serde(default)]
    pub decision_maker_max_retries: Option<u32>,
    /// Per-agent override of `retry_base_delay_ms`.
    #[serde(default)]
    pub decision_maker_retry_base_delay_ms: Option<u64>,
    /// Per-agent override of `retry_max_delay_ms`.
    #[serde(default)]
    pub decision_maker_retry_max_delay_ms: Option<u64>,
    /// Restarts allowed per agent within `restart_window_seconds` before it is marked failed.
    pub restart_max: u32,
    /// Window of the restart-intensity limit.
    pub restart_window_seconds: f64,
    /// First restart delay; doubles per recent restart, with jitter.
    pub restart_backoff_ms: u64,
    /// How long a failed agent stays failed (alerts take the degraded path) before one more
    /// restart is tried.
    pub failed_agent_cooldown_seconds: f64,
    /// How long shutdown waits for in-flight alerts to finish.
    pub shutdown_grace_seconds: f64,
    /// Model of the DataEnrichment agent.
    pub data_enrichment_model: String,
    /// Model of the RiskScoring agent.
    pub risk_scoring_model: String,
    /// Model of the ContextBuilder agent.
    pub context_builder_model: String,
    /// Model of the DecisionMaker agent.
    pub decision_maker_model: String,
    /// Model of the supervisor's second-model check.
    pub supervisor_model: String,
    /// Log filter (`info`, `aml_triage=debug`, ...).
    pub log_level: String,
    /// `json` (default) or `text`.
    pub log_format: String,
    /// `sqlite:PATH` (default `sqlite:aml-triage.db`), `postgres://...`, or `memory`.
    pub database_url: String,
    /// This node's name: the audit chain id and lease owner.
    pub node_id: String,
    /// Largest accepted alert, in bytes.
    pub max_alert_bytes: usize,
    /// Screening lists: files or folders, separated by `:` in the environment.
    #[serde(default)]
    pub list_paths: Vec<PathBuf>,
    /// FATF jurisdiction list (`iso2,country,fatf_status,eu_high_risk_third_country`).
    #[serde(default)]
    pub jurisdiction_path: Option<PathBuf>,
    /// `SCORECARD_PATH`: the transaction scorecard in force (a file written by
    /// `aml-triage model fit`, or `builtin` for the one shipped in `models/`); unset or `off`
    /// keeps the rule points. Only this key activates a scorecard.
    #[serde(default)]
    pub scorecard_path: Option<String>,
    /// `SCORECARD_SHADOW_PATH`: a challenger scorecard (same forms as `SCORECARD_PATH`) that
    /// scores transaction alerts beside the champion; its score is journalled with the risk
    /// step and never changes a decision.
    #[serde(default)]
    pub scorecard_shadow_path: Option<String>,
    /// Where `aml-triage lists update` fetches from: `file=url` pairs separated by commas.
    pub list_sources: String,
    /// Folder of installed list versions; `LIST_DIR/current` links the one in force.
    pub list_dir: PathBuf,
    /// Fewest entries a fetched list may have.
    pub list_min_entries: usize,
    /// Largest share (percent) of a list's entries one update may remove.
    pub list_max_removed_percent: f64,
    /// `/ready` fails when a required list's file is older than this (0: no limit).
    pub list_max_age_hours: f64,
    /// Lists `/ready` requires, comma-separated ids (empty: every loaded list).
    pub list_required: String,
    /// How often a node checks its list paths for a new version (0: never).
    pub list_reload_seconds: u64,
    /// Timeout of each list download.
    pub list_fetch_timeout_seconds: f64,
    /// Records older than this many days may be purged.
    pub retention_days: u32,
    /// Simulated latency of the offline provider per call (load tests and drills); 0 by
    /// default.
    pub offline_latency_ms: u64,
    /// Provider of the ContextBuilder's narrative: `offline`, `anthropic` or `openai`.
    pub context_builder_provider: String,
    /// Provider of the DecisionMaker's proposal.
    pub decision_maker_provider: String,
    /// Provider of the supervisor's second-model check.
    pub supervisor_provider: String,
    /// Anthropic API key (required when a provider is `anthropic`); never logged.
    #[serde(default)]
    pub anthropic_api_key: Option<crate::secret::ApiKey>,
    /// Anthropic API base URL.
    pub anthropic_base_url: String,
    /// OpenAI API key (required for api.openai.com; optional for local servers); never logged.
    #[serde(default)]
    pub openai_api_key: Option<crate::secret::ApiKey>,
    /// OpenAI-compatible API base URL, including `/v1`.
    pub openai_base_url: String,
    /// How JSON is requested: `json_object`, `json_schema` or `json_object_schema`.
    pub openai_response_format: String,
    /// Per-attempt timeout of one model call, inside the agent's own timeout.
    pub llm_request_timeout_seconds: f64,
    /// Pseudonymise personal data before it is sent to an external provider.
    pub llm_pii_minimisation: bool,
    /// Price table: `model:in_per_mtok:out_per_mtok,...` in US dollars.
    pub llm_prices: String,
    /// Consecutive provider failures that open its circuit.
    pub llm_circuit_failures: u32,
    /// How long an open circuit refuses calls before one probe is let through.
    pub llm_circuit_cooldown_seconds: f64,
    /// Requests per minute to Anthropic across every node sharing the state store (0: no limit).
    pub anthropic_rate_limit_rpm: u32,
    /// Requests per minute to the OpenAI-compatible provider across every node (0: no limit).
    pub openai_rate_limit_rpm: u32,
    /// Stream answers and give up when no token came within this many seconds (0: no
    /// streaming, the request timeout alone applies). OpenAI-compatible servers only.
    #[serde(default)]
    pub llm_first_token_timeout_seconds: f64,
    /// Calls in flight to Anthropic at once; more wait for a slot under the step's deadline
    /// (0: no limit).
    #[serde(default = "default_max_concurrency")]
    pub anthropic_max_concurrency: usize,
    /// Calls in flight to the OpenAI-compatible server at once (0: no limit).
    #[serde(default = "default_max_concurrency")]
    pub openai_max_concurrency: usize,
    /// Tokens (in + out) per UTC day for Anthropic, per process; over it model steps degrade
    /// (0: no budget).
    #[serde(default)]
    pub anthropic_daily_token_budget: u64,
    /// Tokens (in + out) per UTC day for the OpenAI-compatible provider (0: no budget).
    #[serde(default)]
    pub openai_daily_token_budget: u64,
    /// US dollars per UTC day for Anthropic (0: no budget).
    #[serde(default)]
    pub anthropic_daily_cost_budget_usd: f64,
    /// US dollars per UTC day for the OpenAI-compatible provider (0: no budget).
    #[serde(default)]
    pub openai_daily_cost_budget_usd: f64,
    /// Address `serve` listens on.
    pub http_bind: String,
    /// Port of the second listener serving `/metrics` without a key (0: none).
    pub prometheus_port: u16,
    /// API keys, `key:role` (file: `api_keys`, environment: `AML_TRIAGE_API_KEYS`).
    #[serde(default)]
    pub api_keys: ApiKeys,
    /// Most alerts in one `POST /v1/alerts` batch.
    pub max_batch_alerts: usize,
    /// Longest `POST /v1/alerts?wait=true` waits for a decision before answering 202.
    pub http_wait_seconds: f64,
    /// Largest accepted request body.
    pub http_max_body_bytes: usize,
    /// OTLP/HTTP collector base URL (e.g. `http://jaeger:4318`); traces are off when unset.
    #[serde(default)]
    pub otel_exporter_otlp_endpoint: Option<String>,
    /// `service.name` of exported traces.
    pub otel_service_name: String,
    /// Redis holding agent state, leases and caches shared by nodes (`redis://...`); unset:
    /// an in-process store (one node). May hold a password: only shown redacted.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key (default `aml_triage:`).
    pub redis_key_prefix: String,
    /// Longest one Redis command may take before Redis counts as down for this node.
    pub redis_timeout_ms: u64,
    /// Lifetime of cache entries (`historical:*`, `screening:*`) in seconds; 0 turns the
    /// caches off.
    pub cache_ttl: u64,
    /// A lease on an in-flight alert expires this long after its last heartbeat; another
    /// node may then take the alert over.
    pub lease_ttl_seconds: f64,
    /// How often a node renews its leases (at most a third of `LEASE_TTL_SECONDS`).
    pub lease_heartbeat_seconds: f64,
    /// How often a node publishes its agent state; the state expires after five periods.
    pub state_publish_seconds: f64,
    /// Customer-data API base URL (`docs/customer-data-api.md`); unset: history from the
    /// engine's own store.
    #[serde(default)]
    pub external_data_api_url: Option<String>,
    /// Key sent to the customer-data API; never logged.
    #[serde(default)]
    pub external_data_api_key: Option<crate::secret::ApiKey>,
    /// Per-attempt timeout of one customer-data request.
    pub external_data_timeout_seconds: f64,
    /// Retries of a failed customer-data request (timeouts, 429, 5xx).
    pub external_data_max_retries: u32,
    /// Days from the determination of suspicion to the SAR filing deadline.
    pub sar_file_days: u32,
    /// The same when no suspect is identified.
    pub sar_file_days_no_suspect: u32,
    /// Days after a SAR filing until the continuing-activity review.
    pub sar_continuing_review_days: u32,
    /// Days after that review to file the continuing SAR.
    pub sar_continuing_file_days: u32,
    /// Lifetime of an analyst's session.
    pub review_session_hours: u32,
    /// How long a pull-next lock holds a case for its analyst.
    pub review_lock_minutes: u32,
    /// Service levels per priority, `PRIORITY=WARN/BREACH` hours (see
    /// [`crate::domain::review::SlaTable`]).
    pub review_sla_hours: String,
    /// Confidence of the QA upper bound on the auto-clear miss rate.
    pub qa_confidence: f64,
    /// How long a canary may stay undecided before it counts as failed.
    pub canary_deadline_seconds: u32,
    /// Failed logins of one user id within the window after which passwords are not checked.
    pub login_max_failures: u32,
    /// The window of failed logins.
    pub login_window_minutes: u32,
    /// OIDC issuer URL for analyst login (authorization code + PKCE); unset: local accounts
    /// only. Its discovery document is read from `{issuer}/.well-known/openid-configuration`.
    #[serde(default)]
    pub oidc_issuer: Option<String>,
    /// OIDC client id (a public client: PKCE, no secret).
    #[serde(default)]
    pub oidc_client_id: Option<String>,
    /// Redirect URI registered with the IdP, ending in `/v1/session/oidc/callback`.
    #[serde(default)]
    pub oidc_redirect_uri: Option<String>,
    /// RabbitMQ URL (`amqp://` or `amqps://`); unset: no bridge and no remote agents. May hold
    /// a password: shown redacted everywhere.
    #[serde(default)]
    pub amqp_url: Option<crate::mq::AmqpUrl>,
    /// Durable queue the bridge consumes alerts from.
    pub amqp_alert_queue: String,
    /// Exchange (topic, routing key = disposition) decisions are published to.
    pub amqp_decision_exchange: String,
    /// Queue poison messages are moved to, with the reason in the `x-aml-reason` header.
    pub amqp_dead_letter_queue: String,
    /// Prefix of the per-agent request queues (`aml.agent.` gives `aml.agent.risk`).
    pub amqp_agent_queue_prefix: String,
    /// Unacknowledged alerts the bridge takes at once; 0: `MAX_CONCURRENT_ALERTS`.
    pub amqp_prefetch: u16,
    /// Agents reached over RabbitMQ instead of run here: comma list of `enrichment`, `risk`,
    /// `context`, `decision`; empty: all local.
    pub remote_agents: String,
    /// Ed25519 private key file that signs audit checkpoints (`aml-triage audit keygen`);
    /// unset: no checkpoints. Keep it where the database's users cannot read it.
    #[serde(default)]
    pub audit_signing_key_file: Option<PathBuf>,
    /// Directory signed checkpoints are written to (ship it to write-once storage).
    #[serde(default)]
    pub audit_checkpoint_dir: Option<PathBuf>,
    /// How often `serve` writes a signed checkpoint (when both keys above are set).
    pub audit_checkpoint_seconds: f64,
    /// Longest a client may take to send a request's head and body; then 408.
    pub http_client_timeout_seconds: f64,
    /// How long an idle keep-alive connection stays open.
    pub http_keep_alive_seconds: f64,
    /// Most connections open at once per HTTP worker; beyond it new connections wait.
    pub http_max_connections: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            auto_clear_threshold: Thresholds::DEFAULT.auto_clear_confidence,
            escalate_l2_threshold: Thresholds::DEFAULT.escalate_l2_confidence,
            risk_score_medium_threshold: Thresholds::DEFAULT.medium_score,
            risk_score_high_threshold: Thresholds::DEFAULT.high_score,
            risk_score_severe_threshold: Thresholds::DEFAULT.severe_score,
            max_concurrent_alerts: 100,
            admission_wait_seconds: 30.0,
            agent_timeout_seconds: 30.0,
            data_enrichment_timeout_seconds: None,
            risk_scoring_timeout_seconds: None,
            context_builder_timeout_seconds: None,
            decision_maker_timeout_seconds: None,
            max_retries: 3,
            retry_base_delay_ms: 200,
            retry_max_delay_ms: 10_000,
            data_enrichment_max_retries: None,
            data_enrichment_retry_base_delay_ms: None,
            data_enrichment_retry_max_delay_ms: None,
            risk_scoring_max_retries: None,
            risk_scoring_retry_base_delay_ms: None,
            risk_scoring_retry_max_delay_ms: None,
            context_builder_max_retries: None,
            context_builder_retry_base_delay_ms: None,
            context_builder_retry_max_delay_ms: None,
            decision_maker_max_retries: None,
            decision_maker_retry_base_delay_ms: None,
            decision_maker_retry_max_delay_ms: None,
            restart_max: 5,
            restart_window_seconds: 60.0,
            restart_backoff_ms: 100,
            failed_agent_cooldown_seconds: 60.0,
            shutdown_grace_seconds: 30.0,
            data_enrichment_model: "offline-deterministic".into(),
            risk_scoring_model: "offline-deterministic".into(),
            context_builder_model: "offline-deterministic".into(),
            decision_maker_model: "offline-deterministic".into(),
            supervisor_model: "offline-deterministic".into(),
            log_level: "info".into(),
            log_format: "json".into(),
            database_url: "sqlite:aml-triage.db".into(),
            node_id: default_node_id(),
            max_alert_bytes: crate::domain::alert::DEFAULT_MAX_ALERT_BYTES,
            list_paths: Vec::new(),
            jurisdiction_path: None,
            scorecard_path: None,
            scorecard_shadow_path: None,
            list_sources: String::new(),
            list_dir: PathBuf::from("lists"),
            list_min_entries: 100,
            list_max_removed_percent: 10.0,
            list_max_age_hours: 0.0,
            list_required: String::new(),
            list_reload_seconds: 300,
            list_fetch_timeout_seconds: 120.0,
            retention_days: 1825,
            offline_latency_ms: 0,
            context_builder_provider: "offline".into(),
            decision_maker_provider: "offline".into(),
            supervisor_provider: "offline".into(),
            anthropic_api_key: None,
            anthropic_base_url: ANTHROPIC_DEFAULT_BASE_URL.into(),
            openai_api_key: None,
            openai_base_url: OPENAI_DEFAULT_BASE_URL.into(),
            openai_response_format: "json_object".into(),
            llm_request_timeout_seconds: 30.0,
            llm_pii_minimisation: true,
            llm_prices: String::new(),
            llm_circuit_failures: 5,
            llm_circuit_cooldown_seconds: 30.0,
            anthropic_rate_limit_rpm: 0,
            openai_rate_limit_rpm: 0,
            llm_first_token_timeout_seconds: 0.0,
            anthropic_max_concurrency: default_max_concurrency(),
            openai_max_concurrency: default_max_concurrency(),
            anthropic_daily_token_budget: 0,
            openai_daily_token_budget: 0,
            anthropic_daily_cost_budget_usd: 0.0,
            openai_daily_cost_budget_usd: 0.0,
            http_bind: "0.0.0.0:8000".into(),
            prometheus_port: 9090,
            api_keys: ApiKeys::default(),
            max_batch_alerts: 1000,
            http_wait_seconds: 30.0,
            http_max_body_bytes: 32 * 1024 * 1024,
            otel_exporter_otlp_endpoint: None,
            otel_service_name: "aml-triage".into(),
            redis_url: None,
            redis_key_prefix: "aml_triage:".into(),
            redis_timeout_ms: 1000,
            cache_ttl: 900,
            lease_ttl_seconds: 15.0,
            lease_heartbeat_seconds: 5.0,
            state_publish_seconds: 1.0,
            external_data_api_url: None,
            external_data_api_key: None,
            sar_file_days: 30,
            sar_file_days_no_suspect: 60,
            sar_continuing_review_days: 90,
            sar_continuing_file_days: 30,
            review_session_hours: 8,
            review_lock_minutes: 30,
            review_sla_hours: "CRITICAL=4/24,HIGH=24/72,MEDIUM=72/168,LOW=168/336".into(),
            qa_confidence: 0.95,
            canary_deadline_seconds: 300,
            login_max_failures: 5,
            login_window_minutes: 15,
            oidc_issuer: None,
            oidc_client_id: None,
            oidc_redirect_uri: None,
            external_data_timeout_seconds: 5.0,
            external_data_max_retries: 2,
            amqp_url: None,
            amqp_alert_queue: "aml.alerts".into(),
            amqp_decision_exchange: "aml.decisions".into(),
            amqp_dead_letter_queue: "aml.alerts.dead".into(),
            amqp_agent_queue_prefix: "aml.agent.".into(),
            amqp_prefetch: 0,
            remote_agents: String::new(),
            audit_signing_key_file: None,
            audit_checkpoint_dir: None,
            audit_checkpoint_seconds: 300.0,
            http_client_timeout_seconds: 10.0,
            http_keep_alive_seconds: 5.0,
            http_max_connections: 256,
        }
    }
}

fn default_max_concurrency() -> usize {
    4
}

fn default_node_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node-1".to_string())
}

impl Settings {
    /// Loads defaults, then the TOML file (explicit path, else `AML_TRIAGE_CONFIG`), then the
    /// process environment, and validates the result.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| env.get(CONFIG_FILE_ENV).map(PathBuf::from));
        Self::load_from(file.as_deref(), &env)
    }

    /// Same as [`Settings::load`] with an explicit environment, for tests and embedding.
    pub fn load_from(
        file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let defaults = Config::try_from(&Settings::default())
            .map_err(|e| ConfigError::Source(e.to_string()))?;
        let mut builder = Config::builder().add_source(defaults);
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::Source(format!("cannot read {}: {e}", path.display())))?;
            check_file_keys(&text, path)?;
            builder = builder.add_source(File::from_str(&text, FileFormat::Toml));
        }
        // Only the engine's own keys are taken from the environment, so that unrelated
        // variables cannot collide with them.
        let ours: HashMap<String, String> = env
            .iter()
            // API keys come from AML_TRIAGE_API_KEYS only: a bare API_KEYS is too generic.
            .filter(|(k, _)| KNOWN_KEYS.contains(&k.as_str()) && k.as_str() != "API_KEYS")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        builder = builder.add_source(
            Environment::default()
                .source(Some(ours))
                .try_parsing(true)
                .list_separator(":")
                .with_list_parse_key("list_paths"),
        );
        let merged = builder
            .build()
            .map_err(|e| ConfigError::Source(e.to_string()))?;
        let mut settings: Settings = merged.try_deserialize().map_err(deserialize_error)?;
        if let Some(keys) = env.get(API_KEYS_ENV) {
            settings.api_keys = ApiKeys::parse(keys);
        }
        settings.validate()?;
        Ok(settings)
    }

    /// OIDC login needs its three keys together, the two URLs as http(s) URLs.
    fn validate_oidc(&self) -> Result<(), (&'static str, String)> {
        let set = [
            ("OIDC_ISSUER", &self.oidc_issuer),
            ("OIDC_CLIENT_ID", &self.oidc_client_id),
            ("OIDC_REDIRECT_URI", &self.oidc_redirect_uri),
        ];
        let given = set
            .iter()
            .filter(|(_, v)| v.as_ref().is_some_and(|v| !v.trim().is_empty()))
            .count();
        if given == 0 {
            return Ok(());
        }
        for (key, v) in set {
            let v = v.as_deref().unwrap_or("").trim();
            if v.is_empty() {
                return Err((
                    key,
                    "OIDC needs OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_REDIRECT_URI".into(),
                ));
            }
            if key != "OIDC_CLIENT_ID" && !(v.starts_with("https://") || v.starts_with("http://")) {
                return Err((key, "must be an http(s) URL".into()));
            }
        }
        Ok(())
    }

    /// The list ids `/ready` requires (`LIST_REQUIRED`; empty: every loaded list).
    pub fn required_lists(&self) -> Vec<String> {
        self.list_required
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Checks ranges and orderings; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(key: &str, message: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                key: key.into(),
                message: message.into(),
            }
        }
        let unit = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 && v <= 1.0 {
                Ok(())
            } else {
                Err(bad(key, format!("must be in (0, 1], got {v}")))
            }
        };
        unit("AUTO_CLEAR_THRESHOLD", self.auto_clear_threshold)?;
        unit("ESCALATE_L2_THRESHOLD", self.escalate_l2_threshold)?;
        if self.escalate_l2_threshold > self.auto_clear_threshold {
            return Err(bad(
                "ESCALATE_L2_THRESHOLD",
                "must not exceed AUTO_CLEAR_THRESHOLD",
            ));
        }
        let score = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 && v <= 100.0 {
                Ok(())
            } else {
                Err(bad(key, format!("must be in (0, 100], got {v}")))
            }
        };
        score(
            "RISK_SCORE_MEDIUM_THRESHOLD",
            self.risk_score_medium_threshold,
        )?;
        score("RISK_SCORE_HIGH_THRESHOLD", self.risk_score_high_threshold)?;
        score(
            "RISK_SCORE_SEVERE_THRESHOLD",
            self.risk_score_severe_threshold,
        )?;
        if self.risk_score_medium_threshold >= self.risk_score_high_threshold {
            return Err(bad(
                "RISK_SCORE_MEDIUM_THRESHOLD",
                "must be below RISK_SCORE_HIGH_THRESHOLD",
            ));
        }
        if self.risk_score_high_threshold > self.risk_score_severe_threshold {
            return Err(bad(
                "RISK_SCORE_HIGH_THRESHOLD",
                "must not exceed RISK_SCORE_SEVERE_THRESHOLD",
            ));
        }
        if self.max_concurrent_alerts == 0 || self.max_concurrent_alerts > 100_000 {
            return Err(bad("MAX_CONCURRENT_ALERTS", "must be between 1 and 100000"));
        }
        let secs = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 && v <= 86_400.0 {
                Ok(())
            } else {
                Err(bad(
                    key,
                    format!("must be a number of seconds in (0, 86400], got {v}"),
                ))
            }
        };
        secs("ADMISSION_WAIT_SECONDS", self.admission_wait_seconds)?;
        secs("AGENT_TIMEOUT_SECONDS", self.agent_timeout_seconds)?;
        for (key, v) in [
            (
                "DATA_ENRICHMENT_TIMEOUT_SECONDS",
                self.data_enrichment_timeout_seconds,
            ),
            (
                "RISK_SCORING_TIMEOUT_SECONDS",
                self.risk_scoring_timeout_seconds,
            ),
            (
                "CONTEXT_BUILDER_TIMEOUT_SECONDS",
                self.context_builder_timeout_seconds,
            ),
            (
                "DECISION_MAKER_TIMEOUT_SECONDS",
                self.decision_maker_timeout_seconds,
            ),
        ] {
            if let Some(v) = v {
                secs(key, v)?;
            }
        }
        secs("RESTART_WINDOW_SECONDS", self.restart_window_seconds)?;
        secs(
            "FAILED_AGENT_COOLDOWN_SECONDS",
            self.failed_agent_cooldown_seconds,
        )?;
        secs("SHUTDOWN_GRACE_SECONDS", self.shutdown_grace_seconds)?;
        if self.max_retries > 20 {
            return Err(bad("MAX_RETRIES", "must be at most 20"));
        }
        if self.retry_base_delay_ms > self.retry_max_delay_ms {
            return Err(bad(
                "RETRY_BASE_DELAY_MS",
                "must not exceed RETRY_MAX_DELAY_MS",
            ));
        }
        for agent in AgentKind::ALL {
            let (max_retries, base, max) = self.agent_retry(agent);
            let prefix = agent_key_prefix(agent);
            if max_retries > 20 {
                return Err(bad(&format!("{prefix}_MAX_RETRIES"), "must be at most 20"));
            }
            if base > max {
                return Err(bad(
                    &format!("{prefix}_RETRY_BASE_DELAY_MS"),
                    format!("must not exceed {prefix}_RETRY_MAX_DELAY_MS (or RETRY_MAX_DELAY_MS)"),
                ));
            }
        }
        if self.restart_max == 0 {
            return Err(bad("RESTART_MAX", "must be at least 1"));
        }
        for (key, v) in [
            ("DATA_ENRICHMENT_MODEL", &self.data_enrichment_model),
            ("RISK_SCORING_MODEL", &self.risk_scoring_model),
            ("CONTEXT_BUILDER_MODEL", &self.context_builder_model),
            ("DECISION_MAKER_MODEL", &self.decision_maker_model),
            ("SUPERVISOR_MODEL", &self.supervisor_model),
            ("NODE_ID", &self.node_id),
            ("DATABASE_URL", &self.database_url),
        ] {
            if v.trim().is_empty() {
                return Err(bad(key, "must not be empty"));
            }
        }
        if !matches!(self.log_format.as_str(), "json" | "text") {
            return Err(bad("LOG_FORMAT", "must be `json` or `text`"));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return Err(bad(
                "LOG_LEVEL",
                format!("not a log filter: {:?}", self.log_level),
            ));
        }
        let db = &self.database_url;
        if !(db == "memory"
            || db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            return Err(bad(
                "DATABASE_URL",
                "must start with sqlite:, postgres:// or postgresql://, or be `memory`",
            ));
        }
        if self.max_alert_bytes < 1024 || self.max_alert_bytes > 64 * 1024 * 1024 {
            return Err(bad("MAX_ALERT_BYTES", "must be between 1024 and 67108864"));
        }
        if self.offline_latency_ms > 600_000 {
            return Err(bad("OFFLINE_LATENCY_MS", "must be at most 600000"));
        }
        if self.retention_days == 0 {
            return Err(bad("RETENTION_DAYS", "must be at least 1"));
        }
        if !(self.list_max_removed_percent.is_finite()
            && (0.0..=100.0).contains(&self.list_max_removed_percent))
        {
            return Err(bad("LIST_MAX_REMOVED_PERCENT", "must be between 0 and 100"));
        }
        if !(self.list_max_age_hours.is_finite() && self.list_max_age_hours >= 0.0) {
            return Err(bad("LIST_MAX_AGE_HOURS", "must be 0 (no limit) or more"));
        }
        if !(self.list_fetch_timeout_seconds.is_finite() && self.list_fetch_timeout_seconds > 0.0) {
            return Err(bad("LIST_FETCH_TIMEOUT_SECONDS", "must be more than 0"));
        }
        for (key, v) in [
            ("SAR_FILE_DAYS", self.sar_file_days),
            (
                "SAR_CONTINUING_REVIEW_DAYS",
                self.sar_continuing_review_days,
            ),
            ("SAR_CONTINUING_FILE_DAYS", self.sar_continuing_file_days),
        ] {
            if !(1..=365).contains(&v) {
                return Err(bad(key, "must be between 1 and 365"));
            }
        }
        if !(self.sar_file_days..=365).contains(&self.sar_file_days_no_suspect) {
            return Err(bad(
                "SAR_FILE_DAYS_NO_SUSPECT",
                "must be between SAR_FILE_DAYS and 365",
            ));
        }
        if !(1..=168).contains(&self.review_session_hours) {
            return Err(bad("REVIEW_SESSION_HOURS", "must be between 1 and 168"));
        }
        if !(1..=1440).contains(&self.review_lock_minutes) {
            return Err(bad("REVIEW_LOCK_MINUTES", "must be between 1 and 1440"));
        }
        crate::domain::review::SlaTable::parse(&self.review_sla_hours)
            .map_err(|m| bad("REVIEW_SLA_HOURS", &m))?;
        if !(self.qa_confidence.is_finite() && (0.5..1.0).contains(&self.qa_confidence)) {
            return Err(bad("QA_CONFIDENCE", "must be at least 0.5 and below 1"));
        }
        if !(10..=86_400).contains(&self.canary_deadline_seconds) {
            return Err(bad(
                "CANARY_DEADLINE_SECONDS",
                "must be between 10 and 86400",
            ));
        }
        if !(1..=100).contains(&self.login_max_failures) {
            return Err(bad("LOGIN_MAX_FAILURES", "must be between 1 and 100"));
        }
        if !(1..=1440).contains(&self.login_window_minutes) {
            return Err(bad("LOGIN_WINDOW_MINUTES", "must be between 1 and 1440"));
        }
        if self.http_bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(bad("HTTP_BIND", "must be ADDRESS:PORT, e.g. 0.0.0.0:8000"));
        }
        self.api_keys.entries().map_err(|m| bad("API_KEYS", m))?;
        if self.max_batch_alerts == 0 || self.max_batch_alerts > 100_000 {
            return Err(bad("MAX_BATCH_ALERTS", "must be between 1 and 100000"));
        }
        secs("HTTP_WAIT_SECONDS", self.http_wait_seconds)?;
        secs(
            "HTTP_CLIENT_TIMEOUT_SECONDS",
            self.http_client_timeout_seconds,
        )?;
        secs("HTTP_KEEP_ALIVE_SECONDS", self.http_keep_alive_seconds)?;
        secs("AUDIT_CHECKPOINT_SECONDS", self.audit_checkpoint_seconds)?;
        if self.http_max_connections == 0 || self.http_max_connections > 1_000_000 {
            return Err(bad("HTTP_MAX_CONNECTIONS", "must be between 1 and 1000000"));
        }
        if self.http_max_body_bytes < self.max_alert_bytes {
            return Err(bad(
                "HTTP_MAX_BODY_BYTES",
                "must be at least MAX_ALERT_BYTES",
            ));
        }
        if let Some(e) = &self.otel_exporter_otlp_endpoint
            && !e.is_empty()
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(bad(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "must be an http:// or https:// URL",
            ));
        }
        self.validate_state()?;
        self.validate_mq()?;
        self.validate_llm()
    }

    /// The Redis, lease, cache and customer-data keys.
    fn validate_state(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid {
            key: key.into(),
            message,
        };
        if let Some(url) = self.redis_url()
            && !url.starts_with("redis://")
        {
            // The message must not echo the URL: it may carry a password.
            return Err(bad(
                "REDIS_URL",
                "must be a redis:// URL (or unset for in-process state)".into(),
            ));
        }
        let prefix = &self.redis_key_prefix;
        if prefix.is_empty() || prefix.len() > 64 || prefix.chars().any(char::is_whitespace) {
            return Err(bad(
                "REDIS_KEY_PREFIX",
                "must be 1 to 64 characters without spaces".into(),
            ));
        }
        if !(10..=60_000).contains(&self.redis_timeout_ms) {
            return Err(bad(
                "REDIS_TIMEOUT_MS",
                "must be between 10 and 60000".into(),
            ));
        }
        if self.cache_ttl > 30 * 86_400 {
            return Err(bad(
                "CACHE_TTL",
                "must be at most 2592000 seconds (0 turns caches off)".into(),
            ));
        }
        let secs = |key: &str, v: f64, max: f64| {
            if v.is_finite() && v >= 0.05 && v <= max {
                Ok(())
            } else {
                Err(bad(
                    key,
                    format!("must be a number of seconds in [0.05, {max}], got {v}"),
                ))
            }
        };
        secs("LEASE_TTL_SECONDS", self.lease_ttl_seconds, 3600.0)?;
        secs(
            "LEASE_HEARTBEAT_SECONDS",
            self.lease_heartbeat_seconds,
            1200.0,
        )?;
        secs("STATE_PUBLISH_SECONDS", self.state_publish_seconds, 3600.0)?;
        secs(
            "EXTERNAL_DATA_TIMEOUT_SECONDS",
            self.external_data_timeout_seconds,
            600.0,
        )?;
        // Two heartbeats may be missed (a pause, a slow Redis) before the lease expires.
        if self.lease_heartbeat_seconds * 3.0 > self.lease_ttl_seconds {
            return Err(bad(
                "LEASE_HEARTBEAT_SECONDS",
                "must be at most a third of LEASE_TTL_SECONDS".into(),
            ));
        }
        if let Some(url) = self.external_data_api_url()
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(bad(
                "EXTERNAL_DATA_API_URL",
                "must be an http(s) URL".into(),
            ));
        }
        self.validate_oidc().map_err(|(key, m)| bad(key, m))?;
        if self.external_data_max_retries > 10 {
            return Err(bad(
                "EXTERNAL_DATA_MAX_RETRIES",
                "must be at most 10".into(),
            ));
        }
        Ok(())
    }

    /// The RabbitMQ keys: URL scheme, queue names, prefetch, remote agent names.
    fn validate_mq(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid {
            key: key.into(),
            message,
        };
        if let Some(url) = &self.amqp_url {
            let u = url.expose();
            if !(u.starts_with("amqp://") || u.starts_with("amqps://")) {
                // The URL may hold a password: the message shows only its redacted form.
                return Err(bad(
                    "AMQP_URL",
                    format!("must start with amqp:// or amqps://, got {url}"),
                ));
            }
        }
        for (key, name) in [
            ("AMQP_ALERT_QUEUE", &self.amqp_alert_queue),
            ("AMQP_DECISION_EXCHANGE", &self.amqp_decision_exchange),
            ("AMQP_DEAD_LETTER_QUEUE", &self.amqp_dead_letter_queue),
            ("AMQP_AGENT_QUEUE_PREFIX", &self.amqp_agent_queue_prefix),
        ] {
            crate::mq::check_name(name).map_err(|m| bad(key, m))?;
        }
        if self.amqp_alert_queue == self.amqp_dead_letter_queue {
            return Err(bad(
                "AMQP_DEAD_LETTER_QUEUE",
                "must differ from AMQP_ALERT_QUEUE".into(),
            ));
        }
        if usize::from(self.amqp_prefetch) > self.max_concurrent_alerts {
            return Err(bad(
                "AMQP_PREFETCH",
                format!(
                    "must not exceed MAX_CONCURRENT_ALERTS ({}): prefetch is bounded by admission",
                    self.max_concurrent_alerts
                ),
            ));
        }
        let remote = crate::mq::parse_agent_list(&self.remote_agents)
            .map_err(|m| bad("REMOTE_AGENTS", m))?;
        if !remote.is_empty() && self.amqp_url.is_none() {
            return Err(bad("REMOTE_AGENTS", "remote agents need AMQP_URL".into()));
        }
        Ok(())
    }

    /// `REDIS_URL` when set and not blank.
    pub fn redis_url(&self) -> Option<&str> {
        self.redis_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
    }

    /// `EXTERNAL_DATA_API_URL` when set and not blank.
    pub fn external_data_api_url(&self) -> Option<&str> {
        self.external_data_api_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
    }

    /// Agents reached over RabbitMQ (`REMOTE_AGENTS`), in pipeline order.
    pub fn remote_agent_kinds(&self) -> Vec<AgentKind> {
        crate::mq::parse_agent_list(&self.remote_agents).unwrap_or_default()
    }

    /// Prefetch of the alert consumer: `AMQP_PREFETCH`, or the admission limit when 0.
    pub fn effective_prefetch(&self) -> u16 {
        match self.amqp_prefetch {
            0 => u16::try_from(self.max_concurrent_alerts).unwrap_or(u16::MAX),
            n => n,
        }
    }

    /// The model-provider keys: names, URLs, prices, and the API key each chosen provider
    /// needs. Messages never include a key's value.
    fn validate_llm(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid {
            key: key.into(),
            message,
        };
        let providers = self.llm_providers();
        for (key, p) in &providers {
            if !matches!(*p, "offline" | "anthropic" | "openai") {
                return Err(bad(
                    key,
                    format!("must be offline, anthropic or openai, got {p:?}"),
                ));
            }
        }
        let uses = |name: &str| providers.iter().find(|(_, p)| *p == name).map(|(k, _)| *k);
        let blank = |k: &Option<crate::secret::ApiKey>| k.as_ref().is_none_or(|k| k.is_blank());
        if let Some(by) = uses("anthropic")
            && blank(&self.anthropic_api_key)
        {
            return Err(bad(
                "ANTHROPIC_API_KEY",
                format!("required because {by} is anthropic"),
            ));
        }
        if let Some(by) = uses("openai")
            && blank(&self.openai_api_key)
            && self.openai_base_url.trim_end_matches('/') == OPENAI_DEFAULT_BASE_URL
        {
            return Err(bad(
                "OPENAI_API_KEY",
                format!("required because {by} is openai at api.openai.com"),
            ));
        }
        for (key, url) in [
            ("ANTHROPIC_BASE_URL", &self.anthropic_base_url),
            ("OPENAI_BASE_URL", &self.openai_base_url),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(bad(key, format!("must be an http(s) URL, got {url:?}")));
            }
        }
        if JsonMode::parse(&self.openai_response_format).is_none() {
            return Err(bad(
                "OPENAI_RESPONSE_FORMAT",
                "must be json_object, json_schema, json_object_schema or text".into(),
            ));
        }
        let t = self.llm_request_timeout_seconds;
        if !(t.is_finite() && t > 0.0 && t <= 3600.0) {
            return Err(bad(
                "LLM_REQUEST_TIMEOUT_SECONDS",
                format!("must be a number of seconds in (0, 3600], got {t}"),
            ));
        }
        crate::pricing::PriceTable::parse(&self.llm_prices).map_err(|m| bad("LLM_PRICES", m))?;
        let f = self.llm_first_token_timeout_seconds;
        if !(f.is_finite() && (0.0..=3600.0).contains(&f)) {
            return Err(bad(
                "LLM_FIRST_TOKEN_TIMEOUT_SECONDS",
                format!("must be a number of seconds in [0, 3600], got {f}"),
            ));
        }
        for (key, usd) in [
            (
                "ANTHROPIC_DAILY_COST_BUDGET_USD",
                self.anthropic_daily_cost_budget_usd,
            ),
            (
                "OPENAI_DAILY_COST_BUDGET_USD",
                self.openai_daily_cost_budget_usd,
            ),
        ] {
            if !(usd.is_finite() && usd >= 0.0) {
                return Err(bad(key, format!("must be a number >= 0, got {usd}")));
            }
        }
        if self.llm_circuit_failures == 0 {
            return Err(bad("LLM_CIRCUIT_FAILURES", "must be at least 1".into()));
        }
        let c = self.llm_circuit_cooldown_seconds;
        if !(c.is_finite() && c > 0.0 && c <= 86_400.0) {
            return Err(bad(
                "LLM_CIRCUIT_COOLDOWN_SECONDS",
                format!("must be a number of seconds in (0, 86400], got {c}"),
            ));
        }
        Ok(())
    }

    /// The provider key and value of each model-backed agent.
    pub fn llm_providers(&self) -> [(&'static str, &str); 3] {
        [
            ("CONTEXT_BUILDER_PROVIDER", &self.context_builder_provider),
            ("DECISION_MAKER_PROVIDER", &self.decision_maker_provider),
            ("SUPERVISOR_PROVIDER", &self.supervisor_provider),
        ]
    }

    /// Per-attempt timeout of `agent`: its override, else `AGENT_TIMEOUT_SECONDS`.
    pub fn agent_timeout(&self, agent: AgentKind) -> Duration {
        let o = match agent {
            AgentKind::DataEnrichment => self.data_enrichment_timeout_seconds,
            AgentKind::RiskScoring => self.risk_scoring_timeout_seconds,
            AgentKind::ContextBuilder => self.context_builder_timeout_seconds,
            AgentKind::DecisionMaker | AgentKind::SupervisorCheck => {
                self.decision_maker_timeout_seconds
            }
        };
        Duration::from_secs_f64(o.unwrap_or(self.agent_timeout_seconds))
    }

    /// Retry policy of `agent` as `(max retries, base delay ms, max delay ms)`: its
    /// `{AGENT}_MAX_RETRIES`, `{AGENT}_RETRY_BASE_DELAY_MS` and `{AGENT}_RETRY_MAX_DELAY_MS`,
    /// each defaulting to the global key. The supervisor check follows the decision maker's.
    pub fn agent_retry(&self, agent: AgentKind) -> (u32, u64, u64) {
        let (n, base, max) = match agent {
            AgentKind::DataEnrichment => (
                self.data_enrichment_max_retries,
                self.data_enrichment_retry_base_delay_ms,
                self.data_enrichment_retry_max_delay_ms,
            ),
            AgentKind::RiskScoring => (
                self.risk_scoring_max_retries,
                self.risk_scoring_retry_base_delay_ms,
                self.risk_scoring_retry_max_delay_ms,
            ),
            AgentKind::ContextBuilder => (
                self.context_builder_max_retries,
                self.context_builder_retry_base_delay_ms,
                self.context_builder_retry_max_delay_ms,
            ),
            AgentKind::DecisionMaker | AgentKind::SupervisorCheck => (
                self.decision_maker_max_retries,
                self.decision_maker_retry_base_delay_ms,
                self.decision_maker_retry_max_delay_ms,
            ),
        };
        (
            n.unwrap_or(self.max_retries),
            base.unwrap_or(self.retry_base_delay_ms),
            max.unwrap_or(self.retry_max_delay_ms),
        )
    }

    /// A short hash of the decision-relevant settings, recorded with every decision so an
    /// auditor can tell which configuration produced it.
    pub fn config_version(&self) -> String {
        let relevant = serde_json::json!({
            "auto_clear_threshold": self.auto_clear_threshold,
            "escalate_l2_threshold": self.escalate_l2_threshold,
            "risk_score_medium_threshold": self.risk_score_medium_threshold,
            "risk_score_high_threshold": self.risk_score_high_threshold,
            "risk_score_severe_threshold": self.risk_score_severe_threshold,
            "models": [&self.data_enrichment_model, &self.risk_scoring_model,
                       &self.context_builder_model, &self.decision_maker_model,
                       &self.supervisor_model],
            "providers": self.llm_providers().map(|(_, p)| p),
            "max_retries": self.max_retries,
        });
        let mut relevant = relevant;
        // Per-agent retry overrides join the hash only when set, so configurations without
        // them keep their version.
        let overrides: Vec<u32> = AgentKind::ALL
            .iter()
            .map(|a| self.agent_retry(*a).0)
            .collect();
        if overrides.iter().any(|n| *n != self.max_retries) {
            relevant["agent_max_retries"] = serde_json::json!(overrides);
        }
        let digest = Sha256::digest(relevant.to_string().as_bytes());
        format!("cfg-{}", &hex::encode(digest)[..12])
    }

    /// The thresholds the policy needs.
    pub fn thresholds(&self) -> crate::domain::policy::Thresholds {
        crate::domain::policy::Thresholds {
            auto_clear_confidence: self.auto_clear_threshold,
            escalate_l2_confidence: self.escalate_l2_threshold,
            medium_score: self.risk_score_medium_threshold,
            high_score: self.risk_score_high_threshold,
            severe_score: self.risk_score_severe_threshold,
        }
    }
}

fn check_file_keys(text: &str, path: &Path) -> Result<(), ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e| ConfigError::Source(format!("{}: {e}", path.display())))?;
    for key in table.keys() {
        if !KNOWN_KEYS.contains(&key.to_ascii_uppercase().as_str()) {
            return Err(ConfigError::UnknownKey {
                key: key.clone(),
                file: path.display().to_string(),
            });
        }
    }
    Ok(())
}

fn deserialize_error(e: config::ConfigError) -> ConfigError {
    // config's messages name the lower-case key; report it under its environment name.
    let text = e.to_string();
    // "... for key `cache_ttl` in the environment" names the key after the value; otherwise
    // the first quoted word is the key.
    let key = text
        .split("key `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .or_else(|| text.split('`').nth(1))
        .map(str::to_ascii_uppercase)
        .unwrap_or_else(|| "configuration".to_string());
    ConfigError::Invalid { key, message: text }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs with credentials are plain strings here: print a redacted copy, so that a
        // settings dump in a log or a panic message never carries a password.
        let mut shown = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
        for key in ["database_url", "redis_url"] {
            if let Some(url) = shown.get(key).and_then(|v| v.as_str()) {
                shown[key] = crate::store::redact_url(url).into();
            }
        }
        write!(f, "Settings {shown}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_debug_hides_url_passwords() {
        let s = Settings {
            database_url: "postgres://app:db-s3cret@db.internal:5432/aml".into(),
            redis_url: Some("redis://:redis-s3cret@cache.internal:6379/0".into()),
            ..Settings::default()
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("db-s3cret"), "{shown}");
        assert!(!shown.contains("redis-s3cret"), "{shown}");
        assert!(
            shown.contains("db.internal"),
            "the rest stays readable: {shown}"
        );
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let s = Settings::load_from(None, &env(&[])).unwrap();
        assert_eq!(s.auto_clear_threshold, 0.85);
        assert_eq!(s.risk_score_severe_threshold, 85.0);
    }

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "max_concurrent_alerts = 7\nmax_retries = 1\n").unwrap();
        let s = Settings::load_from(Some(&path), &env(&[("MAX_RETRIES", "2")])).unwrap();
        assert_eq!(s.max_concurrent_alerts, 7);
        assert_eq!(s.max_retries, 2);
    }

    #[test]
    fn bad_value_names_the_key() {
        let e = Settings::load_from(None, &env(&[("AUTO_CLEAR_THRESHOLD", "1.5")])).unwrap_err();
        assert!(e.to_string().contains("AUTO_CLEAR_THRESHOLD"), "{e}");
        let e = Settings::load_from(None, &env(&[("MAX_CONCURRENT_ALERTS", "lots")])).unwrap_err();
        assert!(e.to_string().contains("MAX_CONCURRENT_ALERTS"), "{e}");
        for (key, value) in [
            ("REVIEW_SLA_HOURS", "HIGH=1/2"),
            ("QA_CONFIDENCE", "1.0"),
            ("REVIEW_LOCK_MINUTES", "0"),
            ("CANARY_DEADLINE_SECONDS", "5"),
            ("LOGIN_MAX_FAILURES", "0"),
            ("LOGIN_WINDOW_MINUTES", "0"),
        ] {
            let e = Settings::load_from(None, &env(&[(key, value)])).unwrap_err();
            assert!(e.to_string().contains(key), "{key}: {e}");
        }
        let s = Settings::load_from(
            None,
            &env(&[("REVIEW_SLA_HOURS", "LOW=1/2"), ("QA_CONFIDENCE", "0.99")]),
        )
        .unwrap();
        let review = crate::review::ReviewConfig::from_settings(&s);
        assert_eq!(review.sla.for_priority("CRITICAL").breach_hours, 2);
        assert_eq!(review.qa_confidence, 0.99);
    }

    #[test]
    fn unknown_file_key_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "auto_clear_treshold = 0.9\n").unwrap();
        let e = Settings::load_from(Some(&path), &env(&[])).unwrap_err();
        assert!(e.to_string().contains("auto_clear_treshold"), "{e}");
    }

    #[test]
    fn api_keys_come_from_the_file_or_the_environment_and_are_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "api_keys = [\"file-key-0123456789:reader\"]\n").unwrap();
        let s = Settings::load_from(Some(&path), &env(&[])).unwrap();
        assert_eq!(s.api_keys.0, vec!["file-key-0123456789:reader"]);
        let s = Settings::load_from(
            Some(&path),
            &env(&[(
                API_KEYS_ENV,
                "env-key-0123456789ab:admin, other-key-0123456789:submitter",
            )]),
        )
        .unwrap();
        assert_eq!(s.api_keys.entries().unwrap().len(), 2);
        assert!(!format!("{s:?}").contains("env-key"));
        let e = Settings::load_from(None, &env(&[(API_KEYS_ENV, "secret-key-0123456789:root")]))
            .unwrap_err();
        assert!(e.to_string().contains("API_KEYS"), "{e}");
        assert!(!e.to_string().contains("secret-key"), "{e}");
    }

    #[test]
    fn state_keys_are_validated_without_echoing_secrets() {
        let s = Settings::load_from(None, &env(&[])).unwrap();
        assert_eq!(s.cache_ttl, 900);
        assert_eq!(s.redis_url(), None);
        let e =
            Settings::load_from(None, &env(&[("REDIS_URL", "http://user:hunter2@x")])).unwrap_err();
        assert!(e.to_string().contains("REDIS_URL"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = Settings::load_from(None, &env(&[("CACHE_TTL", "-1")])).unwrap_err();
        assert!(e.to_string().contains("CACHE_TTL"), "{e}");
        let e = Settings::load_from(
            None,
            &env(&[("LEASE_TTL_SECONDS", "3"), ("LEASE_HEARTBEAT_SECONDS", "2")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("LEASE_HEARTBEAT_SECONDS"), "{e}");
        let e =
            Settings::load_from(None, &env(&[("EXTERNAL_DATA_API_URL", "ftp://x")])).unwrap_err();
        assert!(e.to_string().contains("EXTERNAL_DATA_API_URL"), "{e}");
    }

    #[test]
    fn per_agent_timeout_overrides_default() {
        let s = Settings::load_from(
            None,
            &env(&[
                ("AGENT_TIMEOUT_SECONDS", "5"),
                ("DECISION_MAKER_TIMEOUT_SECONDS", "0.5"),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.agent_timeout(AgentKind::DecisionMaker),
            Duration::from_millis(500)
        );
        assert_eq!(
            s.agent_timeout(AgentKind::RiskScoring),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn amqp_keys_are_validated_and_the_url_password_never_shown() {
        let s = Settings::load_from(
            None,
            &env(&[
                ("AMQP_URL", "amqp://bridge:pw-123@rabbit:5672/%2f"),
                ("REMOTE_AGENTS", "risk,enrichment"),
                ("AMQP_PREFETCH", "10"),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.remote_agent_kinds(),
            vec![AgentKind::DataEnrichment, AgentKind::RiskScoring]
        );
        assert_eq!(s.effective_prefetch(), 10);
        assert!(!format!("{s:?}").contains("pw-123"));
        let err = |pairs: &[(&str, &str)]| {
            Settings::load_from(None, &env(pairs))
                .unwrap_err()
                .to_string()
        };
        let e = err(&[("AMQP_URL", "http://bridge:pw-123@rabbit")]);
        assert!(e.contains("AMQP_URL") && !e.contains("pw-123"), "{e}");
        assert!(err(&[("REMOTE_AGENTS", "risk")]).contains("REMOTE_AGENTS"));
        let e = err(&[("AMQP_URL", "amqp://h"), ("REMOTE_AGENTS", "scoring")]);
        assert!(e.contains("REMOTE_AGENTS") && e.contains("scoring"), "{e}");
        assert!(err(&[("AMQP_PREFETCH", "500")]).contains("AMQP_PREFETCH"));
        assert!(err(&[("AMQP_ALERT_QUEUE", "amq.alerts")]).contains("AMQP_ALERT_QUEUE"));
        assert!(
            err(&[("AMQP_DEAD_LETTER_QUEUE", "aml.alerts")]).contains("AMQP_DEAD_LETTER_QUEUE")
        );
    }
}
