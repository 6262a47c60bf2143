//! The caches under `aml_triage:`: customer history from the external API
//! (`historical:{customer_id}`) and screening outcomes
//! (`screening:{normalised name}:{list version}:{inputs}`), both with `CACHE_TTL`.
//!
//! **Why the screening key has an inputs part.** A screening outcome depends on more than the
//! name: aliases, date of birth, nationality, entity type and the entries the source claimed
//! all change the classes. Keyed by name and list version alone, one customer's `Discounted`
//! could be served to a namesake whose date of birth matches the list entry, a wrong clear.
//! So the key is the normalised name, then a digest of the list versions, then a digest of
//! every other input of [`crate::screening::ScreeningLists::screen`]; a hit is the same
//! computation's answer, never a neighbour's.
//!
//! Customer history read from the engine's own store is not cached: it changes with every
//! decision and costs one indexed query.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::StateStore;
use crate::assessment::enrichment::ReferenceData;
use crate::customer_data::{CustomerDataError, ExternalHistory};
use crate::domain::alert::{Alert, EntityType};
use crate::domain::facts::ScreeningHit;
use crate::metrics::Metrics;
use crate::screening::ScreeningOutcome;
use crate::screening::normalize::{NameKind, normalize_name};

/// Name of the history cache (key part and metric label).
pub const HISTORICAL: &str = "historical";
/// Name of the screening cache.
pub const SCREENING: &str = "screening";

/// The screening outcome as cached.
#[derive(Serialize, Deserialize)]
struct CachedScreening {
    hits: Vec<ScreeningHit>,
    unverifiable: Vec<ScreeningHit>,
}

/// Both caches over one state store.
#[derive(Clone)]
pub struct Caches {
    state: Arc<dyn StateStore>,
    ttl: Duration,
    metrics: Metrics,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches").field("ttl", &self.ttl).finish()
    }
}

impl Caches {
    /// Caches in `state` with entries living `ttl` (zero: caching off), counting lookups in
    /// `metrics`.
    pub fn new(state: Arc<dyn StateStore>, ttl: Duration, metrics: Metrics) -> Self {
        Self {
            state,
            ttl,
            metrics,
        }
    }

    /// The state store the caches live in (shared with leases and agent state).
    pub fn state(&self) -> &Arc<dyn StateStore> {
        &self.state
    }

    /// Whether caching is on.
    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, cache: &str, key: &str) -> Option<T> {
        let found = match self.state.cache_get(key).await {
            Ok(v) => v.and_then(|text| serde_json::from_str(&text).ok()),
            Err(e) => {
                tracing::debug!(error = %e, cache, "cache unavailable");
                None
            }
        };
        self.metrics.cache_lookup(cache, found.is_some());
        found
    }

    async fn put<T: Serialize>(&self, key: &str, value: &T) {
        let Ok(text) = serde_json::to_string(value) else {
            return;
        };
        if let Err(e) = self.state.cache_put(key, &text, self.ttl).await {
            tracing::debug!(error = %e, "cache write skipped");
        }
    }

    /// A customer's external history: from the cache, else from `fetch` (then cached).
    /// Failures are not cached.
    pub async fn history<F>(
        &self,
        customer_id: &str,
        fetch: F,
    ) -> Result<ExternalHistory, CustomerDataError>
    where
        F: std::future::Future<Output = Result<ExternalHistory, CustomerDataError>>,
    {
        if !self.enabled() {
            return fetch.await;
        }
        let key = format!("{HISTORICAL}:{customer_id}");
        if let Some(h) = self.get(HISTORICAL, &key).await {
            return Ok(h);
        }
        let h = fetch.await?;
        self.put(&key, &h).await;
        Ok(h)
    }

    /// Screens `alert` against `refs`: from the cache, else computed off the async threads
    /// (then cached).
    pub async fn screening(
        &self,
        alert: &Arc<Alert>,
        refs: &ReferenceData,
    ) -> Result<ScreeningOutcome, tokio::task::JoinError> {
        let compute = {
            let (alert, refs) = (alert.clone(), refs.clone());
            move || refs.lists.screen(&alert)
        };
        if !self.enabled() {
            return tokio::task::spawn_blocking(compute).await;
        }
        let key = screening_key(alert, refs);
        if let Some(c) = self.get::<CachedScreening>(SCREENING, &key).await {
            return Ok(ScreeningOutcome {
                hits: c.hits,
                unverifiable: c.unverifiable,
            });
        }
        let outcome = tokio::task::spawn_blocking(compute).await?;
        self.put(
            &key,
            &CachedScreening {
                hits: outcome.hits.clone(),
                unverifiable: outcome.unverifiable.clone(),
            },
        )
        .await;
        Ok(outcome)
    }
}

fn short_digest(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// `screening:{normalised name}:{list version digest}:{inputs digest}`.
pub fn screening_key(alert: &Alert, refs: &ReferenceData) -> String {
    let c = &alert.customer;
    let kind = match c.entity_type {
        EntityType::Business => NameKind::Organisation,
        _ => NameKind::Person,
    };
    let name: Vec<String> = normalize_name(&c.name, kind)
        .tokens
        .into_iter()
        .map(|t| t.text)
        .collect();
    // The matcher's rules are part of the key: a node running newer rules never reads an
    // outcome another node computed with older ones.
    let versions = short_digest(&format!(
        "{},{}",
        crate::screening::MATCHER_VERSION,
        refs.lists.versions().join(",")
    ));
    // Everything else `screen` may read: the whole customer record (aliases, entity type,
    // date of birth, nationality, addresses, ...) but its id, the alert type and the claims.
    // Over-keying only costs hits; under-keying could serve a wrong outcome.
    let mut customer = serde_json::to_value(c).unwrap_or_default();
    if let Some(m) = customer.as_object_mut() {
        m.remove("customer_id");
    }
    let inputs = serde_json::json!({
        "customer": customer,
        "alert_type": alert.alert_type,
        "claims": alert.screening_matches(),
    });
    format!(
        "{SCREENING}:{}:{versions}:{}",
        name.join("_"),
        short_digest(&inputs.to_string())
    )
}
