//! OpenAI-compatible chat completions over async-openai, with a configurable base URL so
//! vLLM, Ollama, llama.cpp servers and gateways work too.
//!
//! The request is built as JSON (async-openai's `byot` calls) because local servers differ in
//! how they take a JSON schema: OpenAI wants `{"type":"json_schema","json_schema":{...}}`,
//! llama-cpp-python wants `{"type":"json_object","schema":{...}}`.

use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::anthropic::transport_error;
use super::http::{classify_status, short};
use super::secret::ApiKey;
use super::{LlmError, LlmProvider, LlmRequest, LlmResponse};

/// Provider name recorded on steps.
pub const OPENAI_PROVIDER: &str = "openai";
/// Default API base.
pub const DEFAULT_BASE_URL: &str = crate::config::OPENAI_DEFAULT_BASE_URL;

/// How the JSON answer is requested (defined with the configuration; re-exported here).
pub use crate::config::JsonMode;

impl JsonMode {
    fn response_format(self, schema: Option<&serde_json::Value>) -> serde_json::Value {
        match (self, schema) {
            (Self::JsonSchema, Some(s)) => serde_json::json!({
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": s},
            }),
            (Self::JsonObjectSchema, Some(s)) => {
                serde_json::json!({"type": "json_object", "schema": s})
            }
            _ => serde_json::json!({"type": "json_object"}),
        }
    }
}

/// An OpenAI-compatible chat-completions client.
#[derive(Clone)]
pub struct OpenAiProvider {
    client: Client<OpenAIConfig>,
    mode: JsonMode,
    key: ApiKey,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl OpenAiProvider {
    /// A client for `base` (e.g. `http://127.0.0.1:8080/v1`); `key` may be blank for local
    /// servers. `timeout` bounds each request.
    pub fn new(
        base: &str,
        key: &ApiKey,
        timeout: Duration,
        mode: JsonMode,
    ) -> Result<Self, LlmError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| LlmError::Transport(format!("http client: {e}")))?;
        let config = OpenAIConfig::new()
            .with_api_base(base.trim_end_matches('/'))
            .with_api_key(key.expose());
        Ok(Self {
            client: Client::with_config(config).with_http_client(http),
            mode,
            key: key.clone(),
        })
    }
}

#[derive(Deserialize)]
struct ChatResponse {
    #[serde(default)]
    model: Option<String>,
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<ChatUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChatMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChatMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct ChatUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// Classifies async-openai's errors. It drops the response headers of failed calls, so a
/// 429's `retry-after` is not reachable here (the supervisor's backoff applies instead).
fn classify(e: OpenAIError, key: &ApiKey) -> LlmError {
    match redact_error(e, key) {
        OpenAIError::Reqwest(e) => transport_error(e),
        OpenAIError::ApiError(r) => {
            classify_status(r.status_code.as_u16(), None, &r.api_error.message)
        }
        OpenAIError::JSONDeserialize(e, body) => LlmError::Malformed(format!(
            "not a chat-completions response: {e}: {}",
            short(&body)
        )),
        OpenAIError::InvalidArgument(m) => LlmError::BadRequest(m),
        other => LlmError::Transport(short(&other.to_string())),
    }
}

/// Removes the key from any text a server echoed back.
fn redact_error(e: OpenAIError, key: &ApiKey) -> OpenAIError {
    match e {
        OpenAIError::ApiError(mut r) => {
            r.api_error.message = key.redact(&r.api_error.message);
            OpenAIError::ApiError(r)
        }
        OpenAIError::JSONDeserialize(e, body) => OpenAIError::JSONDeserialize(e, key.redact(&body)),
        other => other,
    }
}

impl LlmProvider for OpenAiProvider {
    fn name(&self) -> &str {
        OPENAI_PROVIDER
    }

    fn complete(&self, request: LlmRequest) -> BoxFuture<'static, Result<LlmResponse, LlmError>> {
        let this = self.clone();
        Box::pin(async move {
            let body = serde_json::json!({
                "model": request.model,
                "messages": [
                    {"role": "system", "content": request.system},
                    {"role": "user", "content": request.prompt},
                ],
                "max_tokens": request.max_tokens,
                "temperature": 0.0,
                "stream": false,
                "response_format": this.mode.response_format(request.schema.as_ref()),
            });
            let r: ChatResponse = this
                .client
                .chat()
                .create_byot(body)
                .await
                .map_err(|e| classify(e, &this.key))?;
            let choice = r
                .choices
                .into_iter()
                .next()
                .ok_or_else(|| LlmError::Malformed("no choices in the answer".into()))?;
            if choice.finish_reason.as_deref() == Some("length") {
                return Err(LlmError::Malformed("output truncated at max_tokens".into()));
            }
            let text = choice.message.content.unwrap_or_default();
            if text.trim().is_empty() {
                return Err(LlmError::Malformed("no text in the answer".into()));
            }
            let usage = r.usage.unwrap_or(ChatUsage {
                prompt_tokens: 0,
                completion_tokens: 0,
            });
            Ok(LlmResponse {
                text,
                provider: OPENAI_PROVIDER.into(),
                model: r.model.unwrap_or(request.model),
                tokens_in: usage.prompt_tokens,
                tokens_out: usage.completion_tokens,
                cost_usd: 0.0,
            })
        })
    }
}
