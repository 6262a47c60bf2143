//! Structured answers: ask for JSON against a schema, validate it (including that every cited
//! evidence id exists), and on invalid output ask again with a repair prompt, a bounded number
//! of times. What still fails is an error: the supervisor then takes the deterministic path.

use std::sync::Arc;

use super::prompts::{REPAIR, fence_untrusted};
use super::{LlmError, LlmProvider, LlmRequest};

/// Repair prompts after the first answer, at most.
pub const MAX_REPAIRS: u32 = 2;

/// Most evidence ids an answer may list in `cited_evidence` (a small model otherwise repeats
/// one id until `max_tokens`).
pub const MAX_CITED: usize = 8;

/// Longest rejection reason quoted in a repair prompt.
const MAX_QUOTED_REASON: usize = 300;

/// Text of the engine's own prompts: an answer holding one echoed the prompt back.
const PROMPT_MARKERS: &[&str] = &[
    "citable evidence ids",
    "allowed dispositions",
    "answer schema",
    "could not use your last answer",
    "system message",
    "the narrative, citing",
    "text citing evidence",
    "evidence ids used",
];

/// The JSON schema of a `cited_evidence` list: the alert's real ids only, 1 to
/// [`MAX_CITED`] of them.
pub fn evidence_schema(citable: &[String]) -> serde_json::Value {
    serde_json::json!({
        "type": "array",
        "items": {"type": "string", "enum": citable},
        "minItems": 1,
        "maxItems": MAX_CITED,
    })
}

/// A free-text field of an answer: not blank, at most `max_chars` characters, and not an
/// echo of the prompt (template text or the repair instruction copied into the answer).
pub fn check_free_text(field: &str, text: &str, max_chars: usize) -> Result<(), LlmError> {
    if text.trim().is_empty() {
        return Err(LlmError::Malformed(format!("{field} is empty")));
    }
    let n = text.chars().count();
    if n > max_chars {
        return Err(LlmError::Malformed(format!(
            "{field} has {n} characters, at most {max_chars} allowed"
        )));
    }
    let lower = text.to_lowercase();
    if let Some(m) = PROMPT_MARKERS.iter().find(|m| lower.contains(*m)) {
        return Err(LlmError::Malformed(format!(
            "{field} repeats the instructions ({m:?}) instead of answering"
        )));
    }
    Ok(())
}

/// A `cited_evidence` list of at most [`MAX_CITED`] ids.
pub fn check_cited_count(cited: &[String]) -> Result<(), LlmError> {
    if cited.len() > MAX_CITED {
        return Err(LlmError::Malformed(format!(
            "cited_evidence lists {} ids, at most {MAX_CITED} allowed",
            cited.len()
        )));
    }
    Ok(())
}

/// A validated answer and what it cost, over every call it took.
#[derive(Debug, Clone)]
pub struct Outcome<T> {
    /// The validated value.
    pub value: T,
    /// Provider that answered.
    pub provider: String,
    /// Model that answered.
    pub model: String,
    /// Prompt version(s) used (`+repair@...` when a repair was needed).
    pub prompt_version: String,
    /// Tokens sent, all calls.
    pub tokens_in: u64,
    /// Tokens received, all calls.
    pub tokens_out: u64,
    /// Cost, all calls.
    pub cost_usd: f64,
    /// Why earlier answers were rejected.
    pub repairs: Vec<String>,
}

impl<T> Outcome<T> {
    /// The value and the step provenance it carries.
    pub fn into_parts(self) -> (T, crate::protocol::StepMeta) {
        let meta = crate::protocol::StepMeta {
            provider: self.provider,
            model: self.model,
            prompt_version: self.prompt_version,
            tokens_in: self.tokens_in,
            tokens_out: self.tokens_out,
            cost_usd: self.cost_usd,
            notes: self.repairs,
        };
        (self.value, meta)
    }
}

/// The JSON object in a model's text: models often wrap it in a code fence or a sentence.
pub fn extract_json(text: &str) -> &str {
    let t = text.trim();
    match (t.find('{'), t.rfind('}')) {
        (Some(a), Some(b)) if a < b => &t[a..=b],
        _ => t,
    }
}

/// Ids cited in square brackets (`[tx:T1]`, `[tx:T1, alert]`). Brackets nest, because ids
/// may hold them (`[juris:IR:customer.addresses[0].country]`): a citation ends at the bracket
/// that balances its opening one.
pub fn bracketed(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let mut depth = 1usize;
        let close = after.char_indices().find_map(|(i, c)| {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(i)
        });
        let Some(close) = close else { break };
        for part in after[..close].split([',', ';']) {
            let id = part.trim();
            if !id.is_empty() {
                out.push(id.to_string());
            }
        }
        rest = &after[close + 1..];
    }
    out
}

/// Whether a bracketed token is meant as an evidence id (ids look like `kind:...` or `alert`).
fn looks_like_id(s: &str) -> bool {
    s == "alert" || (s.contains(':') && !s.contains(char::is_whitespace))
}

/// Checks that `text` cites at least one existing id, and that neither the text nor the
/// `cited` list names an id that does not exist. Returns the ids cited, in order.
pub fn check_citations(
    text: &str,
    cited: &[String],
    citable: &[String],
) -> Result<Vec<String>, LlmError> {
    let exists = |id: &str| citable.iter().any(|c| c == id);
    if let Some(bad) = cited.iter().find(|id| !exists(id)) {
        return Err(LlmError::Malformed(format!(
            "cites evidence that does not exist: {bad:?}"
        )));
    }
    let in_text: Vec<String> = bracketed(text)
        .into_iter()
        .filter(|id| looks_like_id(id))
        .collect();
    if let Some(bad) = in_text.iter().find(|id| !exists(id)) {
        return Err(LlmError::Malformed(format!(
            "cites evidence that does not exist: {bad:?}"
        )));
    }
    if in_text.is_empty() {
        return Err(LlmError::Malformed(
            "no evidence cited in the text: every claim needs a [evidence id]".into(),
        ));
    }
    let mut all: Vec<String> = Vec::new();
    for id in cited.iter().chain(&in_text) {
        if !all.contains(id) {
            all.push(id.clone());
        }
    }
    Ok(all)
}

/// Asks `provider`, validates with `validate`, repairs up to [`MAX_REPAIRS`] times. Only
/// unusable output is repaired; any other error (timeout, 5xx, 401...) returns at once for
/// the supervisor's retry policy to classify.
pub async fn complete_validated<T>(
    provider: &Arc<dyn LlmProvider>,
    request: LlmRequest,
    validate: impl Fn(&str) -> Result<T, LlmError>,
) -> Result<Outcome<T>, LlmError> {
    let original_prompt = request.prompt.clone();
    let base_version = request.prompt_version.clone();
    let mut req = request;
    let (mut tokens_in, mut tokens_out, mut cost) = (0u64, 0u64, 0f64);
    let mut repairs: Vec<String> = Vec::new();
    loop {
        let result = match provider.complete(req.clone()).await {
            Ok(r) => {
                tokens_in += r.tokens_in;
                tokens_out += r.tokens_out;
                cost += r.cost_usd;
                validate(&r.text).map(|v| (v, r.provider, r.model))
            }
            Err(e @ LlmError::Malformed(_)) => Err(e),
            Err(e) => return Err(e),
        };
        let reason = match result {
            Ok((value, provider, model)) => {
                let prompt_version = if repairs.is_empty() {
                    base_version
                } else {
                    format!("{base_version}+{}", REPAIR.version)
                };
                return Ok(Outcome {
                    value,
                    provider,
                    model,
                    prompt_version,
                    tokens_in,
                    tokens_out,
                    cost_usd: cost,
                    repairs,
                });
            }
            Err(e) => e.to_string(),
        };
        tracing::warn!(agent = %req.agent, reason = %reason, repairs = repairs.len(), "model answer rejected");
        repairs.push(reason.clone());
        if repairs.len() as u32 > MAX_REPAIRS {
            return Err(LlmError::Malformed(format!(
                "{reason} (still invalid after {MAX_REPAIRS} repair prompts)"
            )));
        }
        // The rejected answer is not quoted back (a small model copies whatever it is shown),
        // and the answer is checked for echoes of this text (see `check_free_text`).
        let why: String = reason.chars().take(MAX_QUOTED_REASON).collect();
        req.prompt = format!(
            "{original_prompt}\n\n{}PROBLEM: {}",
            REPAIR.text,
            fence_untrusted(&why),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citations_may_hold_brackets() {
        let text =
            "High-risk address [juris:IR:customer.addresses[0].country]; see [tx:T1, alert].";
        assert_eq!(
            bracketed(text),
            vec![
                "juris:IR:customer.addresses[0].country".to_string(),
                "tx:T1".into(),
                "alert".into()
            ]
        );
        // An unbalanced opening bracket cites nothing rather than a truncated id.
        assert!(bracketed("see [juris:IR:customer.addresses[0").is_empty());
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn citations_must_exist_and_be_present() {
        let citable = ids(&["alert", "tx:T1", "tx:T2"]);
        let ok = check_citations("fan-in [tx:T1, tx:T2] [sic]", &ids(&["tx:T1"]), &citable);
        assert_eq!(ok.unwrap(), ids(&["tx:T1", "tx:T2"]));
        assert!(check_citations("no citation", &[], &citable).is_err());
        assert!(check_citations("x [tx:T9]", &[], &citable).is_err());
        assert!(check_citations("x [tx:T1]", &ids(&["tx:T9"]), &citable).is_err());
        // Cited in the list but not in the text is still no citation in the text.
        assert!(check_citations("x", &ids(&["tx:T1"]), &citable).is_err());
    }

    #[test]
    fn json_is_found_in_prose_and_fences() {
        assert_eq!(extract_json("```json\n{\"a\":1}\n```"), "{\"a\":1}");
        assert_eq!(extract_json("nothing"), "nothing");
    }
}
