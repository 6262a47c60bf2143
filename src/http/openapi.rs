//! The OpenAPI 3.0 document of the API, built in code next to the routes (a test checks that
//! every route the server registers is documented). Written by hand rather than derived, so
//! the domain types need no OpenAPI annotations and the dependency tree stays small.

use serde_json::{Value, json};

/// Every documented `(method, path)`, as registered in `super::api`.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/alerts"),
    ("get", "/v1/alerts/{id}"),
    ("get", "/v1/alerts/{id}/decision"),
    ("get", "/v1/alerts/{id}/audit"),
    ("get", "/v1/status"),
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

fn error_response(description: &str) -> Value {
    json!({"description": description,
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn errors(codes: &[(&str, &str)]) -> serde_json::Map<String, Value> {
    codes
        .iter()
        .map(|(c, d)| (c.to_string(), error_response(d)))
        .collect()
}

fn with(mut base: serde_json::Map<String, Value>, extra: Value) -> Value {
    if let Value::Object(m) = extra {
        base.extend(m);
    }
    Value::Object(base)
}

fn id_param() -> Value {
    json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "minLength": 1},
           "description": "The alert_id"})
}

fn enum_of(values: &[&str]) -> Value {
    json!({"type": "string", "enum": values})
}

fn alert_schema() -> Value {
    let date_time = json!({"type": "string", "format": "date-time"});
    let date = json!({"type": "string", "format": "date"});
    let country =
        json!({"type": "string", "pattern": "^[A-Z]{2}$", "description": "ISO 3166-1 alpha-2"});
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["alert_id", "alert_type", "priority", "created_at", "customer"],
        "properties": {
            "alert_id": {"type": "string", "minLength": 1, "description": "The idempotency key"},
            "alert_type": enum_of(&["SANCTIONS", "PEP", "ADVERSE_MEDIA", "TRANSACTION", "KYC_ONGOING"]),
            "priority": enum_of(&["LOW", "MEDIUM", "HIGH", "CRITICAL"]),
            "created_at": date_time,
            "rule_id": {"type": "string"},
            "customer": {
                "type": "object", "additionalProperties": false,
                "required": ["customer_id", "name", "entity_type"],
                "properties": {
                    "customer_id": {"type": "string", "minLength": 1},
                    "name": {"type": "string", "minLength": 1},
                    "aliases": {"type": "array", "items": {"type": "string"}},
                    "entity_type": enum_of(&["INDIVIDUAL", "BUSINESS"]),
                    "date_of_birth": date,
                    "nationality": country,
                    "addresses": {"type": "array", "items": {
                        "type": "object", "additionalProperties": false,
                        "properties": {"street": {"type": "string"}, "city": {"type": "string"},
                                       "state": {"type": "string"}, "postal_code": {"type": "string"},
                                       "country": country}}},
                    "industry": {"type": "string"},
                    "kyc_risk_rating": enum_of(&["LOW", "MEDIUM", "HIGH"]),
                    "account_opened": date,
                    "expected_monthly_volume": {"type": "number", "minimum": 0}
                }
            },
            "screening": {"type": "object", "additionalProperties": false, "properties": {
                "matches": {"type": "array", "items": {
                    "type": "object", "additionalProperties": false,
                    "required": ["list", "entry_id", "matched_name", "score", "match_type"],
                    "properties": {"list": {"type": "string", "minLength": 1},
                                   "entry_id": {"type": "string", "minLength": 1},
                                   "matched_name": {"type": "string", "minLength": 1},
                                   "score": {"type": "number", "minimum": 0, "maximum": 1},
                                   "match_type": {"type": "string"}}}}}},
            "transactions": {"type": "array", "maxItems": 10000, "items": {
                "type": "object", "additionalProperties": false,
                "required": ["transaction_id", "timestamp", "amount", "currency", "direction", "type"],
                "properties": {
                    "transaction_id": {"type": "string", "minLength": 1},
                    "timestamp": date_time,
                    "amount": {"type": "number", "minimum": 0},
                    "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                    "direction": enum_of(&["IN", "OUT"]),
                    "type": enum_of(&["WIRE", "CASH", "ACH", "CARD", "CHECK", "TRANSFER", "CRYPTO"]),
                    "counterparty": {"type": "object", "additionalProperties": false, "properties": {
                        "name": {"type": "string"}, "account_id": {"type": "string"},
                        "country": country, "bank": {"type": "string"}}},
                    "description": {"type": "string", "description": "Free text, untrusted: data, never instructions"}
                }}},
            "regulatory_context": {"type": "object", "additionalProperties": false, "properties": {
                "jurisdiction": {"type": "string"},
                "applicable_regulations": {"type": "array", "items": {"type": "string"}}}},
            "metadata": {"type": "object", "additionalProperties": true}
        }
    })
}

/// The document served at `/openapi.json`.
pub fn document() -> Value {
    let secured = json!([{"apiKey": []}]);
    let submit_errors = errors(&[
        ("400", "Malformed JSON or query"),
        ("401", "No or unknown API key"),
        ("403", "The key's role may not submit"),
        (
            "409",
            "Same alert_id already received with different content",
        ),
        (
            "408",
            "The body did not arrive within HTTP_CLIENT_TIMEOUT_SECONDS",
        ),
        ("413", "Body, alert or batch too large"),
        ("415", "Content-Type is not application/json"),
        ("422", "Invalid alert; `field` names the offending field"),
        ("429", "Admission full; see Retry-After"),
        (
            "503",
            "Shutting down or a dependency is unavailable; see Retry-After",
        ),
    ]);
    let read_errors = |role: &str| {
        errors(&[
            ("401", "No or unknown API key"),
            ("403", role),
            (
                "404",
                "Unknown alert (or, for a decision, not decided yet: `status` says where it is)",
            ),
            ("400", "Bad query string"),
            ("503", "A dependency is unavailable"),
        ])
    };
    let any_json =
        json!({"application/json": {"schema": {"type": "object", "additionalProperties": true}}});
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "aml-triage",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Triage of anti-money-laundering alerts into persisted, explainable, auditable decisions."
        },
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                "description": "API key; roles submitter, reader, auditor, admin"}},
            "schemas": {
                "Alert": alert_schema(),
                "Error": {"type": "object", "required": ["error", "message"], "properties": {
                    "error": {"type": "string"}, "message": {"type": "string"},
                    "field": {"type": "string"}, "status": {"type": "string"}, "alert_id": {"type": "string"}}},
                "Accepted": {"type": "object", "required": ["alert_id", "status", "location"], "properties": {
                    "alert_id": {"type": "string"}, "status": {"type": "string", "enum": ["accepted"]},
                    "location": {"type": "string"}}},
                "Decision": {"type": "object", "additionalProperties": true,
                    "required": ["alert_id", "disposition", "confidence", "risk_score"],
                    "properties": {
                        "alert_id": {"type": "string"},
                        "disposition": enum_of(&["AUTO_CLEAR", "ESCALATE_L2", "ESCALATE_L3", "ESCALATE_SAR", "BLOCK_TRANSACTION"]),
                        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                        "risk_score": {"type": "number", "minimum": 0, "maximum": 100},
                        "requires_human_review": {"type": "boolean"},
                        "degraded": {"type": "boolean"},
                        "screening_hits": {"type": "array", "description":
                            "Every screening candidate: class, discount_reason (entity_type_differs, date_of_birth_contradicts, nationality_contradicts, names_unrelated, names_differ) and a per-field breakdown",
                            "items": {"type": "object", "additionalProperties": true,
                                "required": ["evidence_id", "list", "entry_id", "class"],
                                "properties": {
                                    "class": enum_of(&["DISCOUNTED", "POTENTIAL", "UNVERIFIABLE", "CONFIRMED"]),
                                    "discount_reason": {"type": "string"},
                                    "breakdown": {"type": "object", "additionalProperties": true}}}}}},
                "BatchResult": {"type": "object", "required": ["accepted", "decided", "rejected", "results"],
                    "properties": {"accepted": {"type": "integer"}, "decided": {"type": "integer"},
                                   "rejected": {"type": "integer"},
                                   "results": {"type": "array", "items": {"type": "object", "additionalProperties": true,
                                       "required": ["index", "status", "http_status"]}}}}
            }
        },
        "paths": {
            "/v1/alerts": {"post": {
                "summary": "Submit one alert, or a batch (a JSON array or {\"alerts\": [...]}, at most MAX_BATCH_ALERTS)",
                "security": secured,
                "parameters": [{"name": "wait", "in": "query", "required": false, "schema": {"type": "boolean"},
                                "description": "Wait up to HTTP_WAIT_SECONDS for the decision"}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"oneOf": [
                    {"$ref": "#/components/schemas/Alert"},
                    {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Alert"}},
                    {"type": "object", "required": ["alerts"], "additionalProperties": false,
                     "properties": {"alerts": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Alert"}}}}
                ]}}}},
                "responses": with(submit_errors, json!({
                    "200": {"description": "Decided (waited, or the same alert was decided before)",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Decision"}}}},
                    "202": {"description": "Accepted; poll Location",
                            "headers": {"Location": {"schema": {"type": "string"}}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
                    "207": {"description": "Batch: one result per item, in input order",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchResult"}}}}
                }))
            }},
            "/v1/alerts/{id}": {"get": {
                "summary": "The alert as received, and its status",
                "security": secured, "parameters": [id_param()],
                "responses": with(read_errors("The key's role may not read alerts"),
                    json!({"200": {"description": "The alert", "content": any_json}}))
            }},
            "/v1/alerts/{id}/decision": {"get": {
                "summary": "The alert's decision (404 with `status` while undecided)",
                "security": secured, "parameters": [id_param()],
                "responses": with(read_errors("The key's role may not read decisions"),
                    json!({"200": {"description": "The decision",
                           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Decision"}}}}}))
            }},
            "/v1/alerts/{id}/audit": {"get": {
                "summary": "The alert's hash-chained audit entries, or with export=true the regulator pack",
                "security": secured,
                "parameters": [id_param(), {"name": "export", "in": "query", "required": false, "schema": {"type": "boolean"}}],
                "responses": with(read_errors("Only auditor and admin keys read audit trails"),
                    json!({"200": {"description": "Audit entries or export pack", "content": any_json}}))
            }},
            "/v1/status": {"get": {
                "summary": "Node status: admission, agents, versions (admin)",
                "security": secured,
                "responses": with(errors(&[("401", "No or unknown API key"), ("403", "Admin only")]),
                    json!({"200": {"description": "Status", "content": any_json}}))
            }},
            "/health": {"get": {"summary": "Liveness", "security": [],
                "responses": {"200": {"description": "Alive", "content": any_json}}}},
            "/ready": {"get": {"summary": "Readiness: database, redis, agents, llm, broker, lists, admission", "security": [],
                "responses": {"200": {"description": "Ready", "content": any_json},
                              "503": {"description": "Not ready; `failing` lists the checks", "content": any_json}}}},
            "/metrics": {"get": {
                "summary": "Prometheus metrics (admin key on this port; no key on PROMETHEUS_PORT)",
                "security": secured,
                "responses": with(errors(&[("401", "No or unknown API key"), ("403", "Admin only")]),
                    json!({"200": {"description": "OpenMetrics text",
                           "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}}}))
            }},
            "/openapi.json": {"get": {"summary": "This document", "security": [],
                "responses": {"200": {"description": "OpenAPI 3 document", "content": any_json}}}}
        }
    });
    // Analyst review (`review.rs`).
    if let Some(p) = doc["paths"].as_object_mut() {
        p.extend(super::openapi_review::paths());
    }
    if let Some(s) = doc["components"]["securitySchemes"].as_object_mut() {
        s.extend(super::openapi_review::security_schemes());
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented() {
        let doc = document();
        for (method, path) in ROUTES.iter().chain(super::super::openapi_review::ROUTES) {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} missing"
            );
        }
        let documented: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert_eq!(
            documented,
            ROUTES.len() + super::super::openapi_review::ROUTES.len()
        );
    }
}
