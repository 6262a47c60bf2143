//! Integration tests, one binary. Each test is named after the guarantee it checks.

mod support;

mod admission;
mod agent_state;
mod bounded;
mod deploy;
mod durability;
mod failsafe;
mod faults;
mod history;
mod http;
mod http_support;
mod input;
mod layering;
mod lean_path;
mod lists;
mod llm;
mod llm_gaps;
mod llm_local;
mod mq;
mod mq_support;
mod redis_state;
mod review;
mod scorecard;
mod scorecard_store;
mod screening_eval;
mod screening_robustness;
mod storage_v2;
mod store;
mod store_support;
mod supervision;
mod telemetry;
mod ui;
mod webdriver;
