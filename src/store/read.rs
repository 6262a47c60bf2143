//! The queries behind the store's read API, implemented by each backend.

use std::future::Future;

use super::audit::{AuditRow, ChainHead};
use super::columns::{RecordColumns, StepCheckRow};
use super::error::StoreError;
use super::records::{AuditAnchor, StepRecord, StoredAlert, UnfinishedAlert};

/// An alert with the audit entries that vouch for it, for verification.
#[derive(Debug, Clone)]
pub(crate) struct RecordCheckRow {
    pub alert_id: String,
    pub raw_json: String,
    pub content_hash: String,
    /// Payload of its `alert_received` entry.
    pub received_payload: Option<String>,
    /// Its stored decision (canonical JSON text).
    pub decision: Option<String>,
    /// Payload of its `decision` entry.
    pub decision_payload: Option<String>,
    /// Every other column of the alert and decision rows, with the entries that vouch for
    /// them (SQL backends; the in-memory store cannot be edited behind the writer's back).
    pub columns: Option<RecordColumns>,
}

/// Rows per page when walking large tables.
pub(crate) const PAGE: i64 = 2_000;

/// Read queries. Reads do not go through the writer: they see committed data only.
pub(crate) trait ReadBackend: Send + Sync {
    fn alert(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<StoredAlert>, StoreError>> + Send;
    fn decision_text(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    fn steps(&self, id: &str) -> impl Future<Output = Result<Vec<StepRecord>, StoreError>> + Send;
    /// Entries of one alert, ordered by `(chain_id, seq)`.
    fn audit_rows_for_alert(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Vec<AuditRow>, StoreError>> + Send;
    fn audit_row(
        &self,
        chain_id: &str,
        seq: i64,
    ) -> impl Future<Output = Result<Option<AuditRow>, StoreError>> + Send;
    /// Entries of a chain with `seq > after`, ascending, at most `limit`.
    fn audit_page(
        &self,
        chain_id: &str,
        after: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<AuditRow>, StoreError>> + Send;
    /// Every chain id (from entries and anchors) with its latest anchor.
    fn chains(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, Option<AuditAnchor>)>, StoreError>> + Send;
    /// Latest anchor of one chain.
    fn latest_anchor(
        &self,
        chain_id: &str,
    ) -> impl Future<Output = Result<Option<AuditAnchor>, StoreError>> + Send;
    /// Alerts with `alert_id > after`, ascending, with their vouching entries.
    fn record_checks(
        &self,
        after: &str,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<RecordCheckRow>, StoreError>> + Send;
    fn record_check(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<RecordCheckRow>, StoreError>> + Send;
    /// Journal rows (every column) and `step` entries of the alerts with ids in
    /// `first..=last`, for the column check.
    fn step_checks(
        &self,
        first: &str,
        last: &str,
    ) -> impl Future<Output = Result<(Vec<StepCheckRow>, Vec<AuditRow>), StoreError>> + Send;
    fn unfinished(&self) -> impl Future<Output = Result<Vec<UnfinishedAlert>, StoreError>> + Send;
    /// Ids of the alerts without a decision, oldest received first.
    fn unfinished_ids(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    fn customer_history(
        &self,
        customer_id: &str,
        excluding_alert: &str,
    ) -> impl Future<Output = Result<(u32, u32), StoreError>> + Send;
    /// Stored head of a chain (last entry, else latest anchor, else genesis).
    fn stored_head(
        &self,
        chain_id: &str,
    ) -> impl Future<Output = Result<ChainHead, StoreError>> + Send;
}
