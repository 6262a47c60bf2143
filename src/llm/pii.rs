//! PII minimisation for external providers: customer and counterparty names, dates of birth,
//! account numbers, street addresses, postal codes and cities are replaced by stable
//! per-request tokens (`PERSON_1`, `DOB_1`, `ACCOUNT_1`, `ADDRESS_1`, `POSTCODE_1`, `CITY_1`)
//! before a prompt leaves the process, and the tokens are mapped back in the answer.
//!
//! Values are found by exact (ASCII case-insensitive) text match in every form they take in a
//! prompt: raw, JSON-escaped and as fenced by [`super::prompts::fence_untrusted`]. A match
//! counts only on word boundaries: a value that starts (ends) with a letter or digit is not
//! replaced where a letter or digit precedes (follows) it, so postal code `62701` leaves the
//! amount `627010` alone and city `Split` leaves `splitting`. Values shorter than three
//! characters are left alone: replacing them would mangle unrelated text.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{LlmError, LlmProvider, LlmRequest, LlmResponse};
use crate::domain::alert::Alert;

/// What kind of personal data a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PiiKind {
    /// A person's or business's name or alias.
    Person,
    /// A date of birth.
    Dob,
    /// An account number or customer id.
    Account,
    /// A street address.
    Address,
    /// A postal code.
    PostalCode,
    /// A city.
    City,
}

impl PiiKind {
    fn prefix(self) -> &'static str {
        match self {
            PiiKind::Person => "PERSON",
            PiiKind::Dob => "DOB",
            PiiKind::Account => "ACCOUNT",
            PiiKind::Address => "ADDRESS",
            PiiKind::PostalCode => "POSTCODE",
            PiiKind::City => "CITY",
        }
    }
}

/// One personal value of an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sensitive {
    /// Its kind.
    pub kind: PiiKind,
    /// The value as it appears in the alert.
    pub value: String,
}

/// The personal values of an alert.
pub fn sensitive_of(alert: &Alert) -> Vec<Sensitive> {
    let mut out = Vec::new();
    let mut add = |kind, value: &str| {
        if value.trim().chars().count() >= 3 {
            out.push(Sensitive {
                kind,
                value: value.trim().to_string(),
            });
        }
    };
    let c = &alert.customer;
    add(PiiKind::Person, &c.name);
    for a in &c.aliases {
        add(PiiKind::Person, a);
    }
    if let Some(d) = c.date_of_birth {
        add(PiiKind::Dob, &d.format("%Y-%m-%d").to_string());
    }
    add(PiiKind::Account, &c.customer_id);
    for a in &c.addresses {
        add(PiiKind::Address, &a.street);
        add(PiiKind::PostalCode, &a.postal_code);
        add(PiiKind::City, &a.city);
    }
    for t in &alert.transactions {
        if let Some(cp) = &t.counterparty {
            add(PiiKind::Person, &cp.name);
            add(PiiKind::Account, &cp.account_id);
        }
    }
    out
}

/// The token table of one request.
#[derive(Debug, Default)]
pub struct Pseudonymiser {
    /// (form as it may appear in text, token), longest form first.
    forward: Vec<(String, String)>,
    /// (token, original JSON-escaped), longest token first.
    back: Vec<(String, String)>,
}

fn json_inner(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted[1..quoted.len() - 1].to_string()
}

impl Pseudonymiser {
    /// Assigns one token per distinct value (case-insensitively), numbered per kind.
    pub fn new(items: &[Sensitive]) -> Self {
        let mut p = Self::default();
        let mut seen: Vec<(String, String)> = Vec::new();
        let mut counts = [0u32; 6];
        for item in items {
            let key = item.value.to_ascii_lowercase();
            if seen.iter().any(|(k, _)| *k == key) {
                continue;
            }
            let n = &mut counts[item.kind as usize];
            *n += 1;
            let token = format!("{}_{}", item.kind.prefix(), n);
            seen.push((key, token.clone()));
            let forms = [
                item.value.clone(),
                json_inner(&item.value),
                item.value.escape_debug().to_string(),
                // A fenced value is escape_debug'ed and then sits inside a JSON string.
                json_inner(&item.value.escape_debug().to_string()),
            ];
            for f in forms {
                if !p.forward.iter().any(|(x, _)| *x == f) {
                    p.forward.push((f, token.clone()));
                }
            }
            p.back.push((token, json_inner(&item.value)));
        }
        p.forward.sort_by_key(|f| std::cmp::Reverse(f.0.len()));
        p.back.sort_by_key(|b| std::cmp::Reverse(b.0.len()));
        p
    }

    /// Replaces every personal value in `text` by its token.
    pub fn apply(&self, text: &str) -> String {
        let mut s = text.to_string();
        for (form, token) in &self.forward {
            s = replace_ascii_ci(&s, form, token);
        }
        s
    }

    /// Maps tokens in an answer back to the values. Answers are JSON, so values go back
    /// JSON-escaped.
    pub fn restore(&self, text: &str) -> String {
        let mut s = text.to_string();
        for (token, value) in &self.back {
            s = s.replace(token.as_str(), value);
        }
        s
    }
}

/// Replaces `needle` in `hay` on word boundaries, ignoring ASCII case (byte offsets are
/// unchanged by ASCII lower-casing, so positions found in the lowered copy are valid in the
/// original).
fn replace_ascii_ci(hay: &str, needle: &str, with: &str) -> String {
    if needle.is_empty() {
        return hay.to_string();
    }
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let (starts_word, ends_word) = (word(needle.chars().next()), word(needle.chars().last()));
    let lower_hay = hay.to_ascii_lowercase();
    let lower_needle = needle.to_ascii_lowercase();
    let mut out = String::with_capacity(hay.len());
    let mut last = 0;
    for (i, _) in lower_hay.match_indices(&lower_needle) {
        if i < last {
            continue;
        }
        let end = i + needle.len();
        if (starts_word && word(hay[..i].chars().next_back()))
            || (ends_word && word(hay[end..].chars().next()))
        {
            continue;
        }
        out.push_str(&hay[last..i]);
        out.push_str(with);
        last = i + needle.len();
    }
    out.push_str(&hay[last..]);
    out
}

/// Wraps an external provider so that it never sees the alert's personal data.
pub struct Pseudonymising {
    inner: Arc<dyn LlmProvider>,
}

impl Pseudonymising {
    /// Guards `inner`.
    pub fn new(inner: Arc<dyn LlmProvider>) -> Self {
        Self { inner }
    }
}

impl LlmProvider for Pseudonymising {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn needs_prompt(&self) -> bool {
        self.inner.needs_prompt()
    }

    fn complete(
        &self,
        mut request: LlmRequest,
    ) -> BoxFuture<'static, Result<LlmResponse, LlmError>> {
        let table = Pseudonymiser::new(&request.sensitive);
        request.system = table.apply(&request.system);
        request.prompt = table.apply(&request.prompt);
        request.sensitive.clear();
        let call = self.inner.complete(request);
        Box::pin(async move {
            let mut r = call.await?;
            r.text = table.restore(&r.text);
            Ok(r)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_stable_tokens_and_come_back() {
        let items = vec![
            Sensitive {
                kind: PiiKind::Person,
                value: "Jane O'Roe".into(),
            },
            Sensitive {
                kind: PiiKind::Person,
                value: "JANE O'ROE".into(),
            },
            Sensitive {
                kind: PiiKind::Account,
                value: "ACC-991".into(),
            },
            Sensitive {
                kind: PiiKind::Dob,
                value: "1980-02-03".into(),
            },
        ];
        let p = Pseudonymiser::new(&items);
        let fenced = crate::llm::prompts::fence_untrusted("Jane O'Roe");
        let text = format!("name {fenced}; jane o'roe paid ACC-991 born 1980-02-03");
        let out = p.apply(&text);
        assert!(!out.to_lowercase().contains("roe"), "{out}");
        assert!(!out.contains("ACC-991") && !out.contains("1980"), "{out}");
        assert!(out.contains("PERSON_1") && out.contains("ACCOUNT_1") && out.contains("DOB_1"));
        assert!(!out.contains("PERSON_2"), "same person, one token: {out}");
        // Word boundaries: part of a longer word or number is left alone.
        assert_eq!(p.apply("ACC-9910 x1980-02-03"), "ACC-9910 x1980-02-03");
        let back = p.restore(r#"{"r":"PERSON_1 used ACCOUNT_1"}"#);
        let v: serde_json::Value = serde_json::from_str(&back).unwrap();
        assert_eq!(v["r"], "Jane O'Roe used ACC-991");
    }
}
