//! The price table: US dollars per million input and output tokens, per model.
//!
//! Configured as `LLM_PRICES = "model:in_per_mtok:out_per_mtok,..."`, e.g.
//! `claude-sonnet-4-5:3:15,gpt-4o-mini:0.15:0.6`. The model name may itself contain colons
//! (`llama3:8b:0:0`): the last two fields are the prices. A model missing from the table costs
//! 0 and the call is noted, so a forgotten price is visible rather than silently guessed.

use std::collections::HashMap;

/// Prices per model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    prices: HashMap<String, (f64, f64)>,
}

impl PriceTable {
    /// Parses the `LLM_PRICES` format; the error says which entry is wrong.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut prices = HashMap::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let mut parts = entry.rsplitn(3, ':');
            let (out, inp, model) = (parts.next(), parts.next(), parts.next());
            let (Some(out), Some(inp), Some(model)) = (out, inp, model) else {
                return Err(format!(
                    "entry {entry:?} is not model:in_per_mtok:out_per_mtok"
                ));
            };
            let num = |s: &str| {
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| format!("entry {entry:?}: {s:?} is not a price >= 0"))
            };
            if model.trim().is_empty() {
                return Err(format!("entry {entry:?} has no model name"));
            }
            prices.insert(model.trim().to_string(), (num(inp)?, num(out)?));
        }
        Ok(Self { prices })
    }

    /// Whether the table has a price for `model`.
    pub fn knows(&self, model: &str) -> bool {
        self.prices.contains_key(model)
    }

    /// Cost of one call in US dollars (0 for a model without a price).
    pub fn cost(&self, model: &str, tokens_in: u64, tokens_out: u64) -> f64 {
        self.prices
            .get(model)
            .map(|(i, o)| (tokens_in as f64 * i + tokens_out as f64 * o) / 1_000_000.0)
            .unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prices() {
        let t = PriceTable::parse("claude-x:3:15, llama3:8b:0.5:1").unwrap();
        assert!((t.cost("claude-x", 1_000_000, 100_000) - 4.5).abs() < 1e-9);
        assert!((t.cost("llama3:8b", 2_000_000, 0) - 1.0).abs() < 1e-9);
        assert_eq!(t.cost("unknown", 10, 10), 0.0);
        assert!(PriceTable::parse("m:1").is_err());
        assert!(PriceTable::parse("m:x:1").is_err());
        assert!(PriceTable::parse("m:-1:1").is_err());
        assert_eq!(PriceTable::parse("").unwrap(), PriceTable::default());
    }
}
