//! The HTTP ingress: an actix-web server in front of an [`Engine`].
//!
//! The engine's actors run on their own actix system thread; the server runs on another
//! (its own actix system with `workers` worker threads) and talks to the engine through
//! [`Engine::try_accept`] (a 202 is answered only once the alert row is committed) and the
//! store's read API. Alerts accepted with 202 keep being processed after the response: their
//! futures run on the `background` tokio runtime given to [`start`] (the binary's main
//! runtime), which outlives the HTTP workers so a graceful stop of the server never drops an
//! admitted alert; the engine's own drain then waits for them.
//!
//! Routes (see `docs/api.md` and `GET /openapi.json`):
//!
//! | route | key role |
//! |---|---|
//! | `POST /v1/alerts` | submitter, admin |
//! | `GET /v1/alerts/{id}`, `GET /v1/alerts/{id}/decision` | reader, auditor, admin |
//! | `GET /v1/alerts/{id}/audit` (`?export=true`) | auditor, admin |
//! | `GET /v1/status` | admin |
//! | `GET /metrics` | admin on the main port; none on `PROMETHEUS_PORT` |
//! | `GET /health`, `GET /ready`, `GET /openapi.json` | none |
//! | `/v1/session`, `/v1/cases`, `/v1/qa`, `/v1/users`, `/v1/canaries` | named users (see `review.rs`) |

mod alerts;
pub mod auth;
pub mod error;
pub mod limits;
pub mod openapi;
pub mod openapi_review;
mod ops;
pub mod review;
mod ui;
mod ui_chart;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpServer, web};

use crate::Engine;
use auth::KeyStore;
pub use error::ApiError;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The API key configuration is invalid.
    #[error("invalid configuration: API_KEYS: {0}")]
    Keys(String),
    /// A listener could not be used.
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    /// The server thread died before it started.
    #[error("the HTTP server thread exited during start")]
    Thread,
}

/// Limits of the API, from the settings.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body (`HTTP_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Largest single alert (`MAX_ALERT_BYTES`).
    pub max_alert_bytes: usize,
    /// Most alerts in a batch (`MAX_BATCH_ALERTS`).
    pub max_batch_alerts: usize,
    /// Longest `?wait=true` wait (`HTTP_WAIT_SECONDS`).
    pub wait: Duration,
    /// Longest a client may take to send a body (`HTTP_CLIENT_TIMEOUT_SECONDS`).
    pub body_timeout: Duration,
}

/// What every handler sees.
pub struct AppState {
    engine: Arc<Engine>,
    keys: KeyStore,
    limits: Limits,
    background: tokio::runtime::Handle,
}

/// A running server.
pub struct Server {
    handle: actix_web::dev::ServerHandle,
    /// The ops-only server on the metrics listener, if any.
    ops: Option<OpsServer>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Address of the API listener.
    pub addr: SocketAddr,
    /// Address of the metrics-only listener, if any.
    pub metrics_addr: Option<SocketAddr>,
}

impl Server {
    /// Stops accepting connections, lets requests in progress finish (up to 10 s), and joins
    /// the server thread. Alerts already accepted keep running on the background runtime.
    pub async fn stop(mut self) {
        if let Some(ops) = self.ops.take() {
            ops.stop().await;
        }
        self.handle.stop(true).await;
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// Routes of the ops port (`PROMETHEUS_PORT`): scraping and the liveness/readiness probes,
/// without API keys, so that probes and Prometheus need no secret.
fn ops_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(ops::metrics_open))
        .route("/health", web::get().to(ops::health))
        .route("/ready", web::get().to(ops::ready))
        .default_service(web::to(ops::not_found));
}

/// A running ops-only server (see [`start_ops`]).
pub struct OpsServer {
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Address it listens on.
    pub addr: SocketAddr,
}

impl OpsServer {
    /// Stops it and joins its thread.
    pub async fn stop(mut self) {
        self.handle.stop(true).await;
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// Starts only the ops routes (`/metrics`, `/health`, `/ready`) on `listener`: for processes
/// that take no alerts over HTTP, such as `aml-triage worker`, so they can be probed and
/// scraped like a node.
pub fn start_ops(
    engine: Arc<Engine>,
    listener: TcpListener,
    background: tokio::runtime::Handle,
) -> Result<OpsServer, HttpError> {
    let s = engine.settings();
    let state = web::Data::new(AppState {
        limits: Limits {
            max_body_bytes: s.http_max_body_bytes,
            max_alert_bytes: s.max_alert_bytes,
            max_batch_alerts: s.max_batch_alerts,
            wait: Duration::from_secs_f64(s.http_wait_seconds),
            body_timeout: Duration::from_secs_f64(s.http_client_timeout_seconds),
        },
        // No key is needed on these routes.
        keys: KeyStore::new(&crate::config::ApiKeys::default()).map_err(HttpError::Keys)?,
        engine,
        background,
    });
    let addr = listener.local_addr()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("aml-triage-ops".into())
        .spawn(move || {
            let system = actix_rt::System::new();
            let server = system.block_on(async move {
                let st = state.clone();
                HttpServer::new(move || App::new().app_data(st.clone()).configure(ops_routes))
                    .workers(1)
                    .disable_signals()
                    .shutdown_timeout(2)
                    .listen(listener)
                    .map(|s| s.run())
            });
            match server {
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
                Ok(server) => {
                    let _ = tx.send(Ok(server.handle()));
                    let _ = system.block_on(server);
                }
            }
        })?;
    let handle = rx.recv().map_err(|_| HttpError::Thread)??;
    Ok(OpsServer {
        handle,
        thread: Some(thread),
        addr,
    })
}

/// Records every answered request as `aml_triage_http_requests_total{route,method,status}`;
/// the route is the matched pattern, so ids do not explode the label set.
async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().to_string();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let res = next.call(req).await?;
    // The pattern is known only once the router has matched, i.e. after the call.
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    if let Some(state) = state {
        state.engine.metrics().http_request(
            &route,
            &method,
            res.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
    }
    Ok(res)
}

fn api(cfg: &mut web::ServiceConfig) {
    // `web::resource` (not `cfg.route`) so a wrong method on a known path is 405, not 404.
    cfg.service(web::resource("/health").route(web::get().to(ops::health)))
        .service(web::resource("/ready").route(web::get().to(ops::ready)))
        .service(web::resource("/metrics").route(web::get().to(ops::metrics_with_key)))
        .service(web::resource("/openapi.json").route(web::get().to(ops::openapi)))
        .service(web::resource("/v1/status").route(web::get().to(ops::status)))
        .service(web::resource("/v1/alerts").route(web::post().to(alerts::submit)))
        .service(web::resource("/v1/alerts/{id}").route(web::get().to(alerts::get_alert)))
        .service(
            web::resource("/v1/alerts/{id}/decision").route(web::get().to(alerts::get_decision)),
        )
        .service(web::resource("/v1/alerts/{id}/audit").route(web::get().to(alerts::get_audit)))
        .configure(review::routes)
        .configure(ui::routes);
}

/// Starts the server on `listener` (and a metrics-only server on `metrics_listener`) on a
/// thread of its own. `background` runs accepted alerts to their decisions.
pub fn start(
    engine: Arc<Engine>,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    background: tokio::runtime::Handle,
    workers: usize,
) -> Result<Server, HttpError> {
    let s = engine.settings();
    let keys = KeyStore::new(&s.api_keys).map_err(HttpError::Keys)?;
    if keys.is_empty() {
        tracing::warn!("no API keys configured: every /v1 route answers 401");
    }
    let limits = Limits {
        max_body_bytes: s.http_max_body_bytes,
        max_alert_bytes: s.max_alert_bytes,
        max_batch_alerts: s.max_batch_alerts,
        wait: Duration::from_secs_f64(s.http_wait_seconds),
        body_timeout: Duration::from_secs_f64(s.http_client_timeout_seconds),
    };
    let conn = crate::http::limits::ConnectionLimits::from_settings(s);
    // The ops port (PROMETHEUS_PORT) is the same ops-only server a worker runs.
    let ops = metrics_listener
        .map(|l| start_ops(engine.clone(), l, background.clone()))
        .transpose()?;
    let state = web::Data::new(AppState {
        engine,
        keys,
        limits,
        background,
    });
    let addr = listener.local_addr()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("aml-triage-http".into())
        .spawn(move || {
            let system = actix_rt::System::new();
            let server = system.block_on(async move {
                HttpServer::new(move || {
                    App::new()
                        .app_data(state.clone())
                        .wrap(from_fn(record))
                        .configure(api)
                        .default_service(web::to(ops::not_found))
                })
                .workers(workers.max(1))
                .client_request_timeout(conn.request_head)
                .client_disconnect_timeout(conn.disconnect)
                .keep_alive(conn.keep_alive)
                .max_connections(conn.max_connections)
                .disable_signals()
                .shutdown_timeout(10)
                .listen(listener)
                .map(|s| s.run())
            });
            match server {
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
                Ok(server) => {
                    let _ = tx.send(Ok(server.handle()));
                    let _ = system.block_on(server);
                }
            }
        })?;
    let handle = rx.recv().map_err(|_| HttpError::Thread)??;
    Ok(Server {
        handle,
        metrics_addr: ops.as_ref().map(|o| o.addr),
        ops,
        thread: Some(thread),
        addr,
    })
}
