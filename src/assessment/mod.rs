//! Pure assessment of one alert, composed from the domain types and the engines built on them
//! (`screening`, `typologies`, `jurisdiction`): the enrichment facts, the risk score with its
//! factors, and the case context. Pure like `domain` (no actors, storage or I/O); it sits above
//! those engines so that `domain` itself imports none of them and the module graph has no cycle.

pub mod context;
pub mod enrichment;
pub mod scoring;
