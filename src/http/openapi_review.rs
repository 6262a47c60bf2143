//! The OpenAPI entries of the analyst-review routes (`review.rs`), merged into the document
//! by [`super::openapi::document`].

use serde_json::{Map, Value, json};

/// Every documented review `(method, path)`, as registered in `super::review::routes`.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/session"),
    ("get", "/v1/session"),
    ("delete", "/v1/session"),
    ("get", "/v1/session/oidc/start"),
    ("get", "/v1/session/oidc/callback"),
    ("get", "/v1/cases"),
    ("post", "/v1/cases/pull-next"),
    ("get", "/v1/cases/{id}"),
    ("post", "/v1/cases/{id}/assign"),
    ("post", "/v1/cases/{id}/transition"),
    ("post", "/v1/cases/{id}/hits"),
    ("post", "/v1/cases/{id}/comments"),
    ("post", "/v1/cases/{id}/close-request"),
    ("post", "/v1/cases/{id}/sar-request"),
    ("post", "/v1/cases/{id}/approve"),
    ("post", "/v1/cases/{id}/reject"),
    ("get", "/v1/qa/samples"),
    ("get", "/v1/qa/samples/{id}"),
    ("post", "/v1/qa/samples/{id}/verdict"),
    ("post", "/v1/qa/draw"),
    ("get", "/v1/qa/report"),
    ("get", "/v1/users"),
    ("post", "/v1/users"),
    ("post", "/v1/users/{id}"),
    ("get", "/v1/canaries"),
];

fn err(desc: &str) -> Value {
    json!({"description": desc,
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok(desc: &str) -> Value {
    json!({"description": desc,
           "content": {"application/json": {"schema": {"type": "object", "additionalProperties": true}}}})
}

fn body(required: &[&str], props: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": false, "required": required, "properties": props}}}})
}

fn string() -> Value {
    json!({"type": "string"})
}

fn case_param() -> Value {
    json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"},
           "description": "The case id (`case-<alert_id>`)"})
}

/// A state-changing case action: session + CSRF header; errors from the rules.
fn action(summary: &str, request: Option<Value>) -> Value {
    let mut op = json!({
        "summary": summary,
        "security": [{"session": [], "csrf": []}],
        "parameters": [case_param()],
        "responses": {
            "200": ok("The case after the action"),
            "401": err("No session"),
            "403": err("`csrf`: missing or wrong X-CSRF-Token; `four_eyes`: the approver worked the case; `forbidden`: role missing; `user_required`: an API key is no named user"),
            "404": err("Unknown case"),
            "409": err("`invalid_transition` from the case's state, or `conflict`: changed by someone else"),
            "422": err("Invalid input; `field` names it (rationale, hit_dispositions, override_reason, outcome, ...)")
        }
    });
    if let Some(r) = request {
        op["requestBody"] = r;
    }
    op
}

/// Security schemes of the review routes.
pub fn security_schemes() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "session".into(),
        json!({"type": "apiKey", "in": "cookie", "name": "aml_session",
               "description": "Session of a named user (POST /v1/session): Secure, HttpOnly, SameSite=Strict"}),
    );
    m.insert(
        "csrf".into(),
        json!({"type": "apiKey", "in": "header", "name": "X-CSRF-Token",
               "description": "The session's CSRF token; required on every state-changing request made with the session cookie"}),
    );
    m
}

/// The review paths.
pub fn paths() -> Map<String, Value> {
    let user_or_key = json!([{"session": []}, {"apiKey": []}]);
    let session = json!([{"session": []}]);
    let session_csrf = json!([{"session": [], "csrf": []}]);
    let period = json!({"name": "period", "in": "query", "required": false,
                        "schema": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}});
    let filters: Vec<Value> = [
        "state",
        "assignee",
        "alert_type",
        "priority",
        "customer_id",
        "sla",
        "limit",
    ]
    .iter()
    .map(|n| json!({"name": n, "in": "query", "required": false, "schema": {"type": "string"}}))
    .collect();
    let sample_param =
        json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    let v = json!({
        "/v1/session": {
            "post": {"summary": "Log in with a local account; sets the session cookie and returns the CSRF token",
                     "security": [],
                     "requestBody": body(&["user_id", "password"], json!({"user_id": string(), "password": string()})),
                     "responses": {"200": ok("`user`, `csrf_token`, `expires_at`; Set-Cookie aml_session"),
                                   "401": err("Unknown user, wrong password or disabled"),
                                   "422": err("Malformed body; `field` names it")}},
            "get": {"summary": "The current user and CSRF token", "security": session,
                    "responses": {"200": ok("`user`, `csrf_token`, `expires_at`"), "401": err("No session")}},
            "delete": {"summary": "Log out", "security": session_csrf,
                       "responses": {"204": {"description": "Logged out"}, "403": err("CSRF token missing")}}
        },
        "/v1/session/oidc/start": {"get": {"summary": "OIDC login: 302 to the IdP (authorization code + PKCE S256)",
            "security": [], "responses": {"302": {"description": "Redirect to the IdP's authorization endpoint"},
                                          "404": err("OIDC is not configured")}}},
        "/v1/session/oidc/callback": {"get": {"summary": "OIDC redirect target: verifies the ID token and opens a session",
            "security": [],
            "parameters": [{"name": "code", "in": "query", "required": true, "schema": {"type": "string"}},
                           {"name": "state", "in": "query", "required": true, "schema": {"type": "string"}}],
            "responses": {"200": ok("`user`, `csrf_token`, `expires_at`; Set-Cookie aml_session"),
                          "401": err("Login failed (bad state, token, signature, nonce, or no user with this subject)")}}},
        "/v1/cases": {"get": {
            "summary": "The case queue with SLA and SAR clocks; filters state, assignee (`me`), alert_type, priority, customer_id, sla (ok|warn|breach), limit",
            "security": user_or_key,
            "parameters": filters,
            "responses": {"200": ok("`cases`: each with sla_warn_at, sla_breach_at, sla_status, sar_due_at, sar_status"),
                          "401": err("No session or key")}}},
        "/v1/cases/pull-next": {"post": {
            "summary": "Take the best unassigned case (priority, then age), locked to the caller",
            "security": session_csrf,
            "requestBody": {"required": false, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": false, "properties": {"alert_type": string()}}}}},
            "responses": {"200": ok("The case"), "204": {"description": "Queue empty"},
                          "403": err("CSRF, or role missing")}}},
        "/v1/cases/{id}": {"get": {"summary": "A case with clocks, history and comments",
            "security": user_or_key, "parameters": [case_param()],
            "responses": {"200": ok("The case"), "404": err("Unknown case")}}},
        "/v1/cases/{id}/assign": {"post": action(
            "Assign: yourself (analyst) or anyone / least-loaded when `assignee` is omitted (supervisor)",
            Some(json!({"required": false, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": false, "properties": {"assignee": string()}}}}})))},
        "/v1/cases/{id}/transition": {"post": action(
            "start_review, escalate, or reopen (with reason)",
            Some(body(&["action"], json!({"action": {"type": "string", "enum": ["start_review", "escalate", "reopen"]},
                                           "reason": string()}))))},
        "/v1/cases/{id}/hits": {"post": action(
            "Disposition one screening hit (`list:entry_id`)",
            Some(body(&["hit", "disposition"], json!({"hit": string(),
                "disposition": {"type": "string", "enum": ["match", "no_match", "unsure"]}}))))},
        "/v1/cases/{id}/comments": {"post": action(
            "Comment on a case (201)", Some(body(&["body"], json!({"body": string()}))))},
        "/v1/cases/{id}/close-request": {"post": action(
            "Ask for approval to close: rationale, every hit dispositioned, override_reason when overriding a severe decision",
            Some(body(&["outcome", "rationale"], json!({
                "outcome": {"type": "string", "enum": ["true_positive_no_sar", "false_positive", "inconclusive"]},
                "rationale": string(), "override_reason": string()}))))},
        "/v1/cases/{id}/sar-request": {"post": action(
            "Ask for approval to file a SAR; starts the SAR clock",
            Some(body(&["rationale"], json!({"rationale": string(), "suspect_identified": {"type": "boolean"},
                "determined_at": {"type": "string", "format": "date-time"}}))))},
        "/v1/cases/{id}/approve": {"post": action(
            "Four-eyes approval: reviewer role, and not anyone who worked the case",
            Some(json!({"required": false, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": false, "properties": {"note": string()}}}}})))},
        "/v1/cases/{id}/reject": {"post": action(
            "Send a pending request back to review, with a reason (same four-eyes check)",
            Some(body(&["reason"], json!({"reason": string()}))))},
        "/v1/qa/samples": {"get": {"summary": "The blind QA queue (role qa): the engine's verdict is absent until the reviewer has decided",
            "security": session, "parameters": [period.clone()],
            "responses": {"200": ok("`samples`"), "403": err("Role qa required")}}},
        "/v1/qa/samples/{id}": {"get": {"summary": "One QA sample, blind until reviewed",
            "security": session, "parameters": [sample_param.clone()],
            "responses": {"200": ok("The sample"), "403": err("Role qa required"), "404": err("Unknown sample")}}},
        "/v1/qa/samples/{id}/verdict": {"post": {
            "summary": "Record the QA verdict (once); reveals the engine's verdict; a miss reopens the alert as a case",
            "security": session_csrf, "parameters": [sample_param],
            "requestBody": body(&["verdict"], json!({"verdict": {"type": "string", "enum": ["ok", "miss"]}, "notes": string()})),
            "responses": {"200": ok("The sample with the engine's verdict"), "403": err("CSRF or role"),
                          "409": err("Already reviewed"), "422": err("`field` names the bad input")}}},
        "/v1/qa/draw": {"post": {"summary": "Draw a period's stratified sample of auto-clears (supervisor or qa)",
            "security": session_csrf,
            "requestBody": body(&["period"], json!({"period": string(), "seed": {"type": "integer", "minimum": 0}})),
            "responses": {"200": ok("`period`, `seed`, `drawn`"), "403": err("CSRF or role")}}},
        "/v1/qa/report": {"get": {"summary": "Examiner report: per period sample size, misses, Clopper-Pearson upper bound, SPRT state; format=html for print",
            "security": [{"session": []}, {"apiKey": []}],
            "parameters": [period, {"name": "format", "in": "query", "required": false,
                                    "schema": {"type": "string", "enum": ["json", "html"]}}],
            "responses": {"200": ok("The report"), "403": err("Role qa/supervisor, or auditor/admin key")}}},
        "/v1/users": {
            "get": {"summary": "Users (admin user or admin key)", "security": [{"session": []}, {"apiKey": []}],
                    "responses": {"200": ok("`users`"), "403": err("Admin only")}},
            "post": {"summary": "Add a user (admin user)", "security": session_csrf,
                     "requestBody": body(&["user_id", "roles"], json!({"user_id": string(), "display_name": string(),
                        "roles": {"type": "array", "items": {"type": "string", "enum": ["analyst", "reviewer", "qa", "supervisor", "admin"]}},
                        "password": string()})),
                     "responses": {"201": ok("The user"), "403": err("Admin only"), "409": err("Exists"),
                                   "422": err("`field` names the bad input")}}
        },
        "/v1/users/{id}": {"post": {"summary": "Change a user's roles and/or disable them (admin user; not oneself); ends their sessions",
            "security": session_csrf,
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
            "requestBody": body(&[], json!({
                "roles": {"type": "array", "items": {"type": "string", "enum": ["analyst", "reviewer", "qa", "supervisor", "admin"]}},
                "disabled": {"type": "boolean"}})),
            "responses": {"200": ok("The user"), "403": err("Admin only; not oneself"), "404": err("Unknown user"),
                          "422": err("`field` names the bad input")}}},
        "/v1/canaries": {"get": {"summary": "Latest run of each canary (supervisor, or auditor/admin key)",
            "security": [{"session": []}, {"apiKey": []}],
            "responses": {"200": ok("`ok`, `latest`, `failing`"), "403": err("Role missing")}}}
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
