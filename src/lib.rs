//! # aml-triage
//!
//! An embeddable engine that triages anti-money-laundering alerts into persisted, explainable,
//! auditable decisions. Each alert flows through four supervised actix agents
//! (DataEnrichment, RiskScoring, ContextBuilder, DecisionMaker) and ends as one decision:
//! `AUTO_CLEAR`, `ESCALATE_L2`, `ESCALATE_L3`, `ESCALATE_SAR` or `BLOCK_TRANSACTION`.
//!
//! Safety comes first: no failure path auto-clears, the deterministic policy is a floor no
//! model can lower, and every step is journalled.
//!
//! # Layout
//!
//! - [`domain`]: pure logic, no actors or I/O: the alert model and validation
//!   ([`domain::alert`]), enrichment facts, features, the scorecard, the versioned policy.
//! - [`screening`], [`typologies`], [`jurisdiction`]: pure detectors built on the domain types.
//! - [`assessment`]: pure composition of the above for one alert: enrichment, the risk score
//!   and confidence, the case context.
//! - [`reference`]: the lists in force at run time, swapped without a restart; `lists update`
//!   fetches, verifies and installs new versions.
//! - [`messages`]: typed actix messages, one file per agent's message family.
//! - [`actors`]: the Supervisor and one file per agent; they only orchestrate. Supervision
//!   (restart limits, backoff, retries) lives in [`actors::supervision`].
//! - [`llm`]: the provider trait; Anthropic, OpenAI-compatible and the deterministic offline
//!   provider; versioned prompts, PII minimisation, circuit breakers, the supervisor check.
//! - [`store`]: persistence of alerts, the step journal, decisions and the audit chain.
//! - [`engine`]: the library API: start, submit, await, shut down.
//! - [`config`]: defaults < TOML file < environment.
//! - [`error`]: errors returned to callers.
//! - [`evaluation`]: comparison of decisions with labelled alerts (`aml-triage eval`).
//! - [`model`]: fitting the transaction scorecard (`aml-triage model fit`) and loading the one
//!   `SCORECARD_PATH` names; [`shadow`]: champion/challenger comparison (`eval --shadow`).
//! - [`http`]: the HTTP ingress (actix-web): routes, API-key auth, OpenAPI document.
//! - [`metrics`]: the Prometheus registry; [`telemetry`]: logs and OTLP traces.
//! - [`state`]: agent state, leases and caches, in Redis (`REDIS_URL`) or in process;
//!   [`customer_data`]: the external customer-data API client.
//! - [`mq`]: RabbitMQ: the bridge (alerts in, decisions out, dead letters) and remote agents;
//!   [`worker`]: worker mode, serving agents to other nodes.
//! - [`review`]: analyst review (users, cases, four-eyes, SAR clocks, QA sampling, canaries);
//!   its rules are pure, in [`domain::review`].

pub mod actors;
pub mod assessment;
pub mod backoff;
pub mod bridge;
pub mod checkpoint;
pub mod config;
pub mod customer_data;
pub mod domain;
pub mod engine;
pub mod error;
pub mod evaluation;
pub mod history_server;
pub mod http;
pub mod jurisdiction;
pub mod limits;
pub mod llm;
pub mod messages;
pub mod metrics;
pub mod model;
pub mod mq;
pub mod pricing;
pub mod protocol;
pub mod reference;
pub mod review;
pub mod screening;
pub mod secret;
pub mod shadow;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod typologies;
pub mod worker;

pub use config::Settings;
pub use domain::alert::Alert;
pub use domain::decision::{Decision, Disposition};
pub use engine::{Accepted, Engine, EngineBuilder};
pub use error::{StartError, TriageError};
