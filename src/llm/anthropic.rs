//! The Anthropic Messages API over reqwest: `POST {base}/v1/messages`.

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::http::{classify_status, parse_retry_after, short};
use super::secret::ApiKey;
use super::{LlmError, LlmProvider, LlmRequest, LlmResponse};

/// Provider name recorded on steps.
pub const ANTHROPIC_PROVIDER: &str = "anthropic";
/// Default API base.
pub const DEFAULT_BASE_URL: &str = crate::config::ANTHROPIC_DEFAULT_BASE_URL;
/// The API version this client speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// An Anthropic Messages API client.
#[derive(Debug, Clone)]
pub struct AnthropicProvider {
    client: reqwest::Client,
    base: String,
    key: ApiKey,
}

impl AnthropicProvider {
    /// A client for `base` (no trailing `/v1`) with `key`; `timeout` bounds each request.
    pub fn new(base: &str, key: ApiKey, timeout: Duration) -> Result<Self, LlmError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| LlmError::Transport(format!("http client: {e}")))?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_string(),
            key,
        })
    }
}

#[derive(Deserialize)]
struct MessagesResponse {
    #[serde(default)]
    model: Option<String>,
    content: Vec<ContentBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    usage: Usage,
}

#[derive(Deserialize)]
struct ContentBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    input_tokens: u64,
    output_tokens: u64,
}

/// Classifies a reqwest failure; the message never includes headers (so never the key).
pub(crate) fn transport_error(e: reqwest::Error) -> LlmError {
    if e.is_timeout() {
        LlmError::Timeout
    } else if e.is_decode() {
        LlmError::Malformed(format!("response body: {}", e.without_url()))
    } else {
        LlmError::Transport(e.without_url().to_string())
    }
}

/// Turns a 200 body into a response; truncated output is unusable.
fn parse_body(body: &str, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
    let asked_model = request.model.as_str();
    let r: MessagesResponse = serde_json::from_str(body)
        .map_err(|e| LlmError::Malformed(format!("not a Messages API response: {e}")))?;
    // Paid for even when the answer is unusable below.
    request
        .spend
        .add(r.usage.input_tokens, r.usage.output_tokens, 0.0);
    if r.stop_reason.as_deref() == Some("max_tokens") {
        return Err(LlmError::Malformed("output truncated at max_tokens".into()));
    }
    let text: String = r
        .content
        .iter()
        .filter(|b| b.kind == "text")
        .filter_map(|b| b.text.as_deref())
        .collect();
    if text.trim().is_empty() {
        return Err(LlmError::Malformed("no text in the answer".into()));
    }
    Ok(LlmResponse {
        text,
        provider: ANTHROPIC_PROVIDER.into(),
        model: r.model.unwrap_or_else(|| asked_model.to_string()),
        tokens_in: r.usage.input_tokens,
        tokens_out: r.usage.output_tokens,
        cost_usd: 0.0,
    })
}

impl LlmProvider for AnthropicProvider {
    fn name(&self) -> &str {
        ANTHROPIC_PROVIDER
    }

    fn complete(&self, request: LlmRequest) -> BoxFuture<'static, Result<LlmResponse, LlmError>> {
        let this = self.clone();
        Box::pin(async move {
            let body = serde_json::json!({
                "model": request.model,
                "system": request.system,
                "messages": [{"role": "user", "content": request.prompt}],
                "max_tokens": request.max_tokens,
                // Triage wants the most likely answer, not variety.
                "temperature": 0.0,
            });
            let response = this
                .client
                .post(format!("{}/v1/messages", this.base))
                .header("x-api-key", this.key.expose())
                .header("anthropic-version", ANTHROPIC_VERSION)
                .json(&body)
                .send()
                .await
                .map_err(transport_error)?;
            let status = response.status().as_u16();
            let retry_after = parse_retry_after(
                response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()),
            );
            let text = response.text().await.map_err(transport_error)?;
            if !(200..300).contains(&status) {
                let message = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                    .unwrap_or_else(|| short(&text));
                return Err(classify_status(
                    status,
                    retry_after,
                    &this.key.redact(&message),
                ));
            }
            parse_body(&text, &request)
        })
    }
}
