//! The actors. Each agent only orchestrates: it calls the pure domain functions and the
//! providers, under the guard in [`agent`] that turns panics, timeouts and cancellation into
//! typed errors. The [`supervisor::Supervisor`] routes each alert through the four agents.

pub mod admission;
pub mod agent;
pub mod containment;
pub mod context_builder;
pub mod data_enrichment;
pub mod decision_maker;
pub mod risk_scoring;
pub mod serve;
pub mod supervision;
pub mod supervisor;
