//! A local customer-data API for tests and evaluation (`aml-triage history-server --amlsim
//! DIR`): it serves each customer's transactions from AMLSim's raw output
//! (`accounts.csv`, `transactions.csv`) in the contract of `docs/customer-data-api.md`, so
//! that `eval` can run with and without history (`EXTERNAL_DATA_API_URL`).
//!
//! Ids follow the labelled sets built from the same run: customer `{simulation}:{dsply_nm}`
//! (`extdata3k:C_2997`), transaction `{simulation}:T{tran_id}`, counterparty account
//! `{simulation}:{acct_id}`. Only the transaction columns are served: never `is_sar` nor
//! AMLSim's alert ids (labels), and no account profile (every simulated account opens on the
//! first day: an artefact, not a fact). The server sends the customer's whole record; the
//! engine keeps only what came before the alert ([`crate::domain::features::history_window`]).
//!
//! A plain HTTP/1.1 server on tokio: `GET /customers/{customer_id}/history` and
//! `GET /health`, one request per connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::customer_data::ExternalHistory;
use crate::domain::alert::{Counterparty, Direction, Transaction, TransactionType};

/// Why the AMLSim output could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum HistoryServerError {
    /// A file is missing or unreadable.
    #[error("{path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// Customers' transactions from one AMLSim run, by customer id.
#[derive(Debug, Default)]
pub struct AmlsimHistory {
    by_customer: HashMap<String, Vec<Transaction>>,
}

fn read_err(path: &Path, e: impl std::fmt::Display) -> HistoryServerError {
    HistoryServerError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl AmlsimHistory {
    /// Loads `accounts.csv` and `transactions.csv` from `dir`; `simulation` prefixes the ids
    /// (`extdata3k` for `amlsim-extdata3k`).
    pub fn load(dir: &Path, simulation: &str) -> Result<Self, HistoryServerError> {
        struct Account {
            customer_id: String,
            name: String,
            country: String,
            bank: String,
        }
        let path = dir.join("accounts.csv");
        let mut rd = csv::Reader::from_path(&path).map_err(|e| read_err(&path, e))?;
        let headers = rd.headers().map_err(|e| read_err(&path, e))?.clone();
        let col = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| read_err(&path, format!("no column {name}")))
        };
        let (id, nm, first, last, country, bank) = (
            col("acct_id")?,
            col("dsply_nm")?,
            col("first_name")?,
            col("last_name")?,
            col("country")?,
            col("bank_id")?,
        );
        let mut accounts: HashMap<String, Account> = HashMap::new();
        for r in rd.records() {
            let r = r.map_err(|e| read_err(&path, e))?;
            let name = format!("{} {}", &r[first], &r[last]).trim().to_string();
            accounts.insert(
                r[id].to_string(),
                Account {
                    customer_id: format!("{simulation}:{}", &r[nm]),
                    name,
                    country: r[country].to_string(),
                    bank: r[bank].to_string(),
                },
            );
        }
        let path = dir.join("transactions.csv");
        let mut rd = csv::Reader::from_path(&path).map_err(|e| read_err(&path, e))?;
        let headers = rd.headers().map_err(|e| read_err(&path, e))?.clone();
        let col = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| read_err(&path, format!("no column {name}")))
        };
        let (tid, orig, bene, amt, ts) = (
            col("tran_id")?,
            col("orig_acct")?,
            col("bene_acct")?,
            col("base_amt")?,
            col("tran_timestamp")?,
        );
        let mut out = AmlsimHistory::default();
        for (line, r) in rd.records().enumerate() {
            let r = r.map_err(|e| read_err(&path, e))?;
            let bad = |m: String| read_err(&path, format!("line {}: {m}", line + 2));
            let amount: f64 = r[amt].parse().map_err(|e| bad(format!("base_amt: {e}")))?;
            let timestamp = chrono::DateTime::parse_from_rfc3339(&r[ts])
                .map_err(|e| bad(format!("tran_timestamp: {e}")))?
                .with_timezone(&chrono::Utc);
            let (Some(o), Some(b)) = (accounts.get(&r[orig]), accounts.get(&r[bene])) else {
                return Err(bad("account not in accounts.csv".into()));
            };
            for (me, other, other_id, direction) in [
                (o, b, &r[bene], Direction::Out),
                (b, o, &r[orig], Direction::In),
            ] {
                out.by_customer
                    .entry(me.customer_id.clone())
                    .or_default()
                    .push(Transaction {
                        transaction_id: format!("{simulation}:T{}", &r[tid]),
                        timestamp,
                        amount,
                        currency: "USD".into(),
                        direction,
                        kind: TransactionType::Transfer,
                        counterparty: Some(Counterparty {
                            name: other.name.clone(),
                            account_id: format!("{simulation}:{other_id}"),
                            country: other.country.clone(),
                            bank: other.bank.clone(),
                        }),
                        description: None,
                    });
            }
        }
        for txs in out.by_customer.values_mut() {
            txs.sort_by_key(|a| a.timestamp);
        }
        Ok(out)
    }

    /// Customers with at least one transaction.
    pub fn customers(&self) -> usize {
        self.by_customer.len()
    }

    /// The API's answer for `customer_id`, `None` for an unknown customer (404).
    pub fn history(&self, customer_id: &str) -> Option<ExternalHistory> {
        let txs = self.by_customer.get(customer_id)?;
        Some(ExternalHistory {
            customer_id: customer_id.to_string(),
            past_alerts: vec![],
            account_profile: None,
            recent_transactions: txs
                .iter()
                .filter_map(|t| serde_json::to_value(t).ok())
                .collect(),
        })
    }
}

/// Decodes `%XX` escapes of a path segment; `None` when malformed or not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Status and JSON body for a request line's method and target.
fn route(data: &AmlsimHistory, method: &str, target: &str) -> (u16, String) {
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" {
        return (405, r#"{"error":"method not allowed"}"#.into());
    }
    if path == "/health" {
        return (200, r#"{"status":"ok"}"#.into());
    }
    let id = path
        .strip_prefix("/customers/")
        .and_then(|r| r.strip_suffix("/history"))
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .and_then(percent_decode);
    match id.and_then(|id| data.history(&id)) {
        Some(h) => (200, serde_json::to_string(&h).unwrap_or_default()),
        None => (404, r#"{"error":"unknown customer"}"#.into()),
    }
}

async fn handle(data: &AmlsimHistory, mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > 16 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = route(data, method, target);
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(resp.as_bytes()).await?;
    stream.shutdown().await
}

/// Serves `data` on `listener` until the task is dropped or aborted.
pub async fn serve(data: Arc<AmlsimHistory>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let data = data.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(&data, stream).await {
                tracing::debug!(error = %e, "history-server connection failed");
            }
        });
    }
}

/// Binds `addr` (port 0 for any) and serves `data` on a task; returns the bound address and
/// the task (abort it to stop).
pub async fn start(
    data: Arc<AmlsimHistory>,
    addr: &str,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((local, tokio::spawn(serve(data, listener))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_decoding() {
        let mut data = AmlsimHistory::default();
        data.by_customer.insert("s:C_1".into(), vec![]);
        assert_eq!(route(&data, "GET", "/customers/s%3AC_1/history").0, 200);
        assert_eq!(route(&data, "GET", "/customers/s:C_1/history?x=1").0, 200);
        assert_eq!(route(&data, "GET", "/customers/s:C_2/history").0, 404);
        assert_eq!(route(&data, "GET", "/customers/a/b/history").0, 404);
        assert_eq!(route(&data, "POST", "/customers/s:C_1/history").0, 405);
        assert_eq!(route(&data, "GET", "/health").0, 200);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
    }
}
