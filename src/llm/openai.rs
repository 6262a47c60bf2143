//! OpenAI-compatible chat completions over the shared reqwest stack, with a configurable base
//! URL so vLLM, Ollama, llama.cpp servers and gateways work too.
//!
//! The request is async-openai's typed `CreateChatCompletionRequest`; it is sent over the shared
//! reqwest stack rather than async-openai's client, which drops the headers of a failed call,
//! so a 429's `retry-after` reaches the supervisor's retry policy.
//!
//! Servers differ in how they take a JSON schema: OpenAI wants
//! `{"type":"json_schema","json_schema":{...}}`, llama-cpp-python wants
//! `{"type":"json_object","schema":{...}}`, some know neither. A server that rejects the
//! configured `response_format` (a 4xx/5xx whose message names `response_format`) is a
//! configuration error, not an outage: the provider falls back to the next format
//! (`json_schema`/`json_object_schema` -> `json_object` -> `text`) at once, logs it once, and
//! keeps the fallback for later calls. Nothing of this counts against the circuit.
//!
//! With a first-token timeout the answer is streamed (server-sent events): when no content
//! arrives in time the call fails as a timeout and the connection is dropped, which is how
//! llama.cpp and vLLM learn to stop generating for an abandoned request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_openai::types::chat::{
    ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    ChatCompletionStreamOptions, CreateChatCompletionRequest, ResponseFormat,
    ResponseFormatJsonSchema,
};
use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::anthropic::transport_error;
use super::http::{classify_status, parse_retry_after, short};
use super::secret::ApiKey;
use super::{LlmError, LlmProvider, LlmRequest, LlmResponse};

/// Provider name recorded on steps.
pub const OPENAI_PROVIDER: &str = "openai";
/// Default API base.
pub const DEFAULT_BASE_URL: &str = crate::config::OPENAI_DEFAULT_BASE_URL;

/// How the JSON answer is requested (defined with the configuration; re-exported here).
pub use crate::config::JsonMode;

const MODES: [JsonMode; 4] = [
    JsonMode::JsonObject,
    JsonMode::JsonSchema,
    JsonMode::JsonObjectSchema,
    JsonMode::Text,
];

fn mode_index(m: JsonMode) -> u8 {
    MODES.iter().position(|x| *x == m).unwrap_or(0) as u8
}

impl JsonMode {
    /// The typed `response_format`, where OpenAI's API has one. llama.cpp's
    /// `{"type":"json_object","schema":...}` has no OpenAI type: [`JsonMode::JsonObjectSchema`]
    /// is sent as `json_object` here and given its schema on the serialised body.
    fn response_format(self, schema: Option<&serde_json::Value>) -> Option<ResponseFormat> {
        Some(match (self, schema) {
            (Self::Text, _) => return None,
            (Self::JsonSchema, Some(s)) => ResponseFormat::JsonSchema {
                json_schema: ResponseFormatJsonSchema {
                    description: None,
                    name: "answer".into(),
                    schema: s.clone(),
                    strict: None,
                },
            },
            _ => ResponseFormat::JsonObject,
        })
    }
}

/// An OpenAI-compatible chat-completions client.
#[derive(Clone)]
pub struct OpenAiProvider {
    client: reqwest::Client,
    url: String,
    key: ApiKey,
    /// The format in use: the configured one until the server rejected it.
    mode: Arc<AtomicU8>,
    first_token_timeout: Option<Duration>,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("url", &self.url)
            .field("mode", &self.mode())
            .field("first_token_timeout", &self.first_token_timeout)
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
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| LlmError::Transport(format!("http client: {e}")))?;
        Ok(Self {
            client,
            url: format!("{}/chat/completions", base.trim_end_matches('/')),
            key: key.clone(),
            mode: Arc::new(AtomicU8::new(mode_index(mode))),
            first_token_timeout: None,
        })
    }

    /// Streams answers and fails a call with [`LlmError::Timeout`] when no content arrived
    /// within `first_token` (`None`: no streaming).
    pub fn with_first_token_timeout(mut self, first_token: Option<Duration>) -> Self {
        self.first_token_timeout = first_token.filter(|d| !d.is_zero());
        self
    }

    /// The response format in use (the configured one unless the server rejected it).
    pub fn mode(&self) -> JsonMode {
        MODES[self.mode.load(Ordering::Relaxed) as usize % MODES.len()]
    }

    /// Moves from `from` to its fallback, once: concurrent calls that saw the same rejection
    /// do not skip a format, and only the first logs.
    fn fall_back(&self, from: JsonMode, status: u16, message: &str) -> Option<JsonMode> {
        let next = from.fallback()?;
        if self
            .mode
            .compare_exchange(
                mode_index(from),
                mode_index(next),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            tracing::error!(
                configured = from.as_str(),
                fallback = next.as_str(),
                status,
                server_said = %short(message),
                "the server does not support OPENAI_RESPONSE_FORMAT={}: falling back to {} (a configuration error, not an outage; set OPENAI_RESPONSE_FORMAT={} to silence this)",
                from.as_str(),
                next.as_str(),
                next.as_str(),
            );
        }
        Some(self.mode())
    }

    /// The request body: async-openai's typed chat-completions request, serialised.
    fn body(&self, request: &LlmRequest, mode: JsonMode, stream: bool) -> serde_json::Value {
        // `max_tokens` is deprecated by OpenAI in favour of `max_completion_tokens`, which
        // llama.cpp, vLLM and most gateways do not read yet.
        #[allow(deprecated)]
        let typed = CreateChatCompletionRequest {
            model: request.model.clone(),
            messages: vec![
                ChatCompletionRequestSystemMessage::from(request.system.as_str()).into(),
                ChatCompletionRequestUserMessage::from(request.prompt.as_str()).into(),
            ],
            max_tokens: Some(request.max_tokens),
            temperature: Some(0.0),
            stream: Some(stream),
            stream_options: stream.then_some(ChatCompletionStreamOptions {
                include_usage: Some(true),
                ..Default::default()
            }),
            response_format: mode.response_format(request.schema.as_ref()),
            ..Default::default()
        };
        let mut body = serde_json::to_value(&typed).unwrap_or_default();
        if let (JsonMode::JsonObjectSchema, Some(schema)) = (mode, request.schema.as_ref()) {
            body["response_format"]["schema"] = schema.clone();
        }
        body
    }

    async fn call(&self, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let stream = self.first_token_timeout.is_some();
        loop {
            let mode = self.mode();
            let mut builder = self
                .client
                .post(&self.url)
                .json(&self.body(request, mode, stream));
            if !self.key.is_blank() {
                builder = builder.bearer_auth(self.key.expose());
            }
            let response = builder.send().await.map_err(transport_error)?;
            let status = response.status().as_u16();
            if (200..300).contains(&status) {
                return if stream {
                    self.read_stream(response, request).await
                } else {
                    let text = response.text().await.map_err(transport_error)?;
                    parse_body(&text, request)
                };
            }
            let retry_after = parse_retry_after(
                response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()),
            );
            let text = response.text().await.map_err(transport_error)?;
            let message = self.key.redact(&error_message(&text));
            if rejects_response_format(status, &message) {
                match self.fall_back(mode, status, &message) {
                    Some(_) => continue,
                    None => {
                        return Err(LlmError::BadRequest(format!(
                            "configuration error: the server rejects every response format \
                             (status {status}): {}",
                            short(&message)
                        )));
                    }
                }
            }
            return Err(classify_status(status, retry_after, &message));
        }
    }

    /// Reads a server-sent-events answer: the first content must come within the first-token
    /// timeout; the rest within the request timeout (the client's and the caller's).
    async fn read_stream(
        &self,
        mut response: reqwest::Response,
        request: &LlmRequest,
    ) -> Result<LlmResponse, LlmError> {
        let first_token = self.first_token_timeout.unwrap_or(Duration::MAX);
        let first_deadline = tokio::time::Instant::now() + first_token;
        let mut buf = String::new();
        let mut acc = StreamAnswer::default();
        loop {
            let chunk = if acc.text.is_empty() {
                match tokio::time::timeout_at(first_deadline, response.chunk()).await {
                    Ok(c) => c,
                    // Returning drops `response`: the connection closes and the server stops.
                    Err(_) => {
                        tracing::warn!(model = %request.model, "no first token in time: call abandoned");
                        return Err(LlmError::Timeout);
                    }
                }
            } else {
                response.chunk().await
            };
            // A stream cut short (the server died or closed it) is a transport failure, not
            // an unusable answer: retried, and counted against the circuit.
            let Some(bytes) = chunk.map_err(|e| match e.is_timeout() {
                true => LlmError::Timeout,
                false => LlmError::Transport(format!("stream: {}", e.without_url())),
            })?
            else {
                break;
            };
            buf.push_str(&String::from_utf8_lossy(&bytes));
            while let Some(end) = buf.find('\n') {
                let line: String = buf.drain(..=end).collect();
                if acc.line(line.trim())? {
                    return acc.finish(request);
                }
            }
        }
        if !buf.trim().is_empty() {
            let rest = std::mem::take(&mut buf);
            acc.line(rest.trim())?;
        }
        acc.finish(request)
    }
}

/// What a stream delivered so far.
#[derive(Default)]
struct StreamAnswer {
    text: String,
    model: Option<String>,
    finish_reason: Option<String>,
    usage: Option<ChatUsage>,
}

#[derive(Deserialize)]
struct StreamChunk {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<StreamChoice>,
    #[serde(default)]
    usage: Option<ChatUsage>,
}

#[derive(Deserialize)]
struct StreamChoice {
    #[serde(default)]
    delta: Option<ChatMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

impl StreamAnswer {
    /// Takes one SSE line; true at `data: [DONE]`.
    fn line(&mut self, line: &str) -> Result<bool, LlmError> {
        let Some(data) = line.strip_prefix("data:") else {
            // Comments (`: ping`), event names and blank separators carry no content.
            return Ok(false);
        };
        let data = data.trim();
        if data == "[DONE]" {
            return Ok(true);
        }
        let c: StreamChunk = serde_json::from_str(data).map_err(|e| {
            LlmError::Malformed(format!(
                "not a chat-completions chunk: {e}: {}",
                short(data)
            ))
        })?;
        if c.model.is_some() {
            self.model = c.model;
        }
        if c.usage.is_some() {
            self.usage = c.usage;
        }
        for ch in c.choices {
            if let Some(t) = ch.delta.and_then(|d| d.content) {
                self.text.push_str(&t);
            }
            if ch.finish_reason.is_some() {
                self.finish_reason = ch.finish_reason;
            }
        }
        Ok(false)
    }

    fn finish(self, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
        // Servers that ignore `stream_options.include_usage` (llama-cpp-python 0.3) send no
        // usage in a stream: estimated at 4 characters a token rather than counted as free.
        let usage = self.usage.or_else(|| {
            Some(ChatUsage {
                prompt_tokens: ((request.system.len() + request.prompt.len()) / 4) as u64,
                completion_tokens: (self.text.len() / 4) as u64,
            })
        });
        answer(self.text, self.finish_reason, self.model, usage, request)
    }
}

/// The error text of a failed call: `{"error":{"message":...}}`, or the body itself.
fn error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v["error"]["message"]
                .as_str()
                .or_else(|| v["error"].as_str())
                .or_else(|| v["detail"].as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| short(body))
}

/// Whether a failed call says the server does not take our `response_format`.
fn rejects_response_format(status: u16, message: &str) -> bool {
    (400..600).contains(&status)
        && !matches!(status, 401 | 403 | 408 | 429)
        && message.to_ascii_lowercase().contains("response_format")
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

#[derive(Deserialize, Clone, Copy)]
struct ChatUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

fn parse_body(body: &str, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
    let r: ChatResponse = serde_json::from_str(body).map_err(|e| {
        LlmError::Malformed(format!(
            "not a chat-completions response: {e}: {}",
            short(body)
        ))
    })?;
    let choice = r
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| LlmError::Malformed("no choices in the answer".into()))?;
    answer(
        choice.message.content.unwrap_or_default(),
        choice.finish_reason,
        r.model,
        r.usage,
        request,
    )
}

/// Records the usage (whatever the answer's fate) and checks the answer is usable.
fn answer(
    text: String,
    finish_reason: Option<String>,
    model: Option<String>,
    usage: Option<ChatUsage>,
    request: &LlmRequest,
) -> Result<LlmResponse, LlmError> {
    let usage = usage.unwrap_or(ChatUsage {
        prompt_tokens: 0,
        completion_tokens: 0,
    });
    // Paid for even when the answer is unusable below.
    request
        .spend
        .add(usage.prompt_tokens, usage.completion_tokens, 0.0);
    if finish_reason.as_deref() == Some("length") {
        return Err(LlmError::Malformed("output truncated at max_tokens".into()));
    }
    if text.trim().is_empty() {
        return Err(LlmError::Malformed("no text in the answer".into()));
    }
    Ok(LlmResponse {
        text,
        provider: OPENAI_PROVIDER.into(),
        model: model.unwrap_or_else(|| request.model.clone()),
        tokens_in: usage.prompt_tokens,
        tokens_out: usage.completion_tokens,
        cost_usd: 0.0,
    })
}

impl LlmProvider for OpenAiProvider {
    fn name(&self) -> &str {
        OPENAI_PROVIDER
    }

    fn complete(&self, request: LlmRequest) -> BoxFuture<'static, Result<LlmResponse, LlmError>> {
        let this = self.clone();
        Box::pin(async move { this.call(&request).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_body_speaks_the_chat_completions_wire_format() {
        let p = OpenAiProvider::new(
            "http://127.0.0.1:1/v1",
            &ApiKey::new(""),
            Duration::from_secs(1),
            JsonMode::JsonSchema,
        )
        .unwrap();
        let schema = serde_json::json!({"type": "object"});
        let request = LlmRequest {
            agent: crate::domain::AgentKind::DecisionMaker,
            model: "m".into(),
            prompt_version: "p@1".into(),
            system: "sys".into(),
            prompt: "user text".into(),
            task: super::super::LlmTask::Check { findings: vec![] },
            max_tokens: 77,
            schema: Some(schema.clone()),
            sensitive: vec![],
            spend: Default::default(),
        };
        let b = p.body(&request, JsonMode::JsonSchema, false);
        assert_eq!(
            b["messages"],
            serde_json::json!([{"role": "system", "content": "sys"},
                               {"role": "user", "content": "user text"}])
        );
        assert_eq!(
            (b["model"].as_str(), b["max_tokens"].as_u64()),
            (Some("m"), Some(77))
        );
        assert_eq!(
            (b["temperature"].as_f64(), b["stream"].as_bool()),
            (Some(0.0), Some(false))
        );
        assert_eq!(
            b["response_format"],
            serde_json::json!({"type": "json_schema",
                               "json_schema": {"name": "answer", "schema": schema}})
        );
        assert!(b.get("stream_options").is_none());
        let b = p.body(&request, JsonMode::JsonObjectSchema, true);
        assert_eq!(
            b["response_format"],
            serde_json::json!({"type": "json_object", "schema": schema})
        );
        assert_eq!(
            b["stream_options"],
            serde_json::json!({"include_usage": true})
        );
        let b = p.body(&request, JsonMode::JsonObject, false);
        assert_eq!(
            b["response_format"],
            serde_json::json!({"type": "json_object"})
        );
        assert!(
            p.body(&request, JsonMode::Text, false)
                .get("response_format")
                .is_none()
        );
    }

    #[test]
    fn response_format_rejections_are_recognised() {
        assert!(rejects_response_format(
            500,
            "Unsupported response_format type json_schema"
        ));
        assert!(rejects_response_format(
            400,
            "'response_format.type' must be 'json_object' or 'text'"
        ));
        assert!(!rejects_response_format(500, "model overloaded"));
        assert!(!rejects_response_format(429, "response_format rate"));
        assert_eq!(JsonMode::JsonSchema.fallback(), Some(JsonMode::JsonObject));
        assert_eq!(JsonMode::JsonObject.fallback(), Some(JsonMode::Text));
        assert_eq!(JsonMode::Text.fallback(), None);
    }

    #[test]
    fn sse_lines_accumulate() {
        let mut a = StreamAnswer::default();
        assert!(!a.line(": ping").unwrap());
        assert!(
            !a.line(r#"data: {"model":"m","choices":[{"delta":{"content":"{\"a\""}}]}"#)
                .unwrap()
        );
        assert!(
            !a.line(r#"data: {"choices":[{"delta":{"content":":1}"},"finish_reason":"stop"}]}"#)
                .unwrap()
        );
        assert!(
            !a.line(r#"data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}"#)
                .unwrap()
        );
        assert!(a.line("data: [DONE]").unwrap());
        assert_eq!(a.text, "{\"a\":1}");
        assert_eq!(a.usage.unwrap().completion_tokens, 2);
    }
}
