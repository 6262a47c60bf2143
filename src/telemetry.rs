//! Logging and tracing: structured logs on standard error and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans exported over OTLP/HTTP (protobuf) to a collector
//! or straight to Jaeger (which ingests OTLP natively).
//!
//! Span tree: `alert` (root of its own trace: alert_id, alert_type, disposition) ->
//! `agent_step` (agent, attempt, alert_id) -> `llm_call` (agent, provider, model,
//! prompt_version, tokens_in, tokens_out, cost_usd). JSON logs written inside an alert carry
//! its `trace_id` (a field of the `alert` span, listed under `spans`), so a log line leads to
//! its trace in Jaeger.
//!
//! Nothing secret is ever a span field or log field: API keys and provider keys are not in
//! any span, and the database URL is redacted wherever it is reported.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::Settings;
use crate::llm::{LlmError, LlmProvider, LlmRequest, LlmResponse};

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built (bad endpoint).
    #[error("OTEL_EXPORTER_OTLP_ENDPOINT: {0}")]
    Exporter(String),
    /// A global subscriber is already installed.
    #[error("a tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Keeps the trace pipeline alive; flushes and shuts it down when dropped.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports every finished span now (the batch processor otherwise sends every few seconds).
    pub fn flush(&self) {
        if let Some(p) = &self.provider {
            let _ = p.force_flush();
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown_with_timeout(Duration::from_secs(5));
        }
    }
}

/// The OTLP/HTTP traces URL for a base endpoint, as the OpenTelemetry specification derives it
/// from `OTEL_EXPORTER_OTLP_ENDPOINT` (`http://host:4318` -> `http://host:4318/v1/traces`).
pub fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    }
}

/// Installs the global subscriber: the log layer (`LOG_LEVEL`, `LOG_FORMAT`) and, when an OTLP
/// endpoint is configured, the span exporter. The two have separate filters so that a quiet
/// log level (`warn`) does not also silence the trace spans, which are at `info`.
pub fn init(settings: &Settings) -> Result<Telemetry, TelemetryError> {
    let log_filter = tracing_subscriber::EnvFilter::new(&settings.log_level);
    let log_layer = if settings.log_format == "json" {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .with_filter(log_filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(log_filter)
            .boxed()
    };
    let (provider, otel_layer) = match settings
        .otel_exporter_otlp_endpoint
        .as_deref()
        .filter(|e| !e.trim().is_empty())
    {
        None => (None, None),
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(traces_url(endpoint))
                .with_timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name(settings.otel_service_name.clone())
                .build();
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build();
            let tracer = provider.tracer("aml-triage");
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(
                    tracing_subscriber::filter::Targets::new()
                        .with_target("aml_triage", tracing::Level::INFO),
                );
            (Some(provider), Some(layer))
        }
    };
    tracing_subscriber::registry()
        .with(log_layer)
        .with(otel_layer)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(Telemetry { provider })
}

/// Records the span's OpenTelemetry trace id as its `trace_id` field (declared `Empty` by the
/// caller), so log lines inside it carry the id. No-op when spans are not exported.
pub fn record_trace_id(span: &tracing::Span) {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        span.record("trace_id", tracing::field::display(sc.trace_id()));
    }
}

/// Wraps a provider so that each call is an `llm_call` span (a child of the calling agent's
/// `agent_step` span) carrying the model, the tokens and the cost. Wrapping here rather than
/// inside each agent keeps the agents' code untouched.
pub struct TracedProvider(pub Arc<dyn LlmProvider>);

impl LlmProvider for TracedProvider {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn needs_prompt(&self) -> bool {
        self.0.needs_prompt()
    }

    fn complete(&self, request: LlmRequest) -> BoxFuture<'static, Result<LlmResponse, LlmError>> {
        let span = tracing::info_span!(
            "llm_call",
            agent = %request.agent,
            provider = self.0.name(),
            model = %request.model,
            prompt_version = %request.prompt_version,
            tokens_in = tracing::field::Empty,
            tokens_out = tracing::field::Empty,
            cost_usd = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let inner = span.in_scope(|| self.0.complete(request));
        let recorder = span.clone();
        Box::pin(
            async move {
                let result = inner.await;
                match &result {
                    Ok(r) => {
                        recorder.record("tokens_in", r.tokens_in);
                        recorder.record("tokens_out", r.tokens_out);
                        recorder.record("cost_usd", r.cost_usd);
                        recorder.record("model", r.model.as_str());
                    }
                    // LlmError messages never carry keys (see `crate::llm::LlmError`).
                    Err(e) => {
                        recorder.record("error", tracing::field::display(e));
                    }
                }
                result
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_url_follows_the_otlp_convention() {
        assert_eq!(
            traces_url("http://h:4318"),
            "http://h:4318/v1/traces".to_string()
        );
        assert_eq!(traces_url("http://h:4318/"), "http://h:4318/v1/traces");
        assert_eq!(
            traces_url("http://h:4318/v1/traces"),
            "http://h:4318/v1/traces"
        );
    }
}
