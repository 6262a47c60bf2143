-- aml-triage store, SQLite. Same logical schema as migrations/postgres/0001_init.sql.
-- STRICT tables enforce column types. Timestamps are TEXT in the fixed form
-- YYYY-MM-DDTHH:MM:SS.ffffffZ (UTC, 6 fractional digits), so text order is time order and
-- values round-trip exactly; booleans are INTEGER 0/1.

CREATE TABLE alerts (
    alert_id      TEXT PRIMARY KEY,
    raw_json      TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    customer_id   TEXT NOT NULL,
    alert_type    TEXT NOT NULL,
    priority      TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('received', 'decided')),
    created_at    TEXT NOT NULL,
    received_at   TEXT NOT NULL,
    updated_at    TEXT NOT NULL
) STRICT;
CREATE INDEX alerts_customer_id_idx ON alerts (customer_id);
CREATE INDEX alerts_created_at_idx ON alerts (created_at DESC);
CREATE INDEX alerts_received_at_idx ON alerts (received_at);

CREATE TABLE step_journal (
    id              INTEGER PRIMARY KEY,
    alert_id        TEXT NOT NULL REFERENCES alerts (alert_id),
    step            TEXT NOT NULL,
    attempt         INTEGER NOT NULL CHECK (attempt >= 0),
    status          TEXT NOT NULL CHECK (status IN ('completed', 'degraded')),
    input_hash      TEXT NOT NULL,
    output          TEXT NOT NULL,
    provider        TEXT NOT NULL,
    model           TEXT NOT NULL,
    prompt_version  TEXT NOT NULL,
    tokens_in       INTEGER NOT NULL CHECK (tokens_in >= 0),
    tokens_out      INTEGER NOT NULL CHECK (tokens_out >= 0),
    cost_usd        REAL NOT NULL,
    latency_ms      INTEGER NOT NULL CHECK (latency_ms >= 0),
    error           TEXT,
    policy_version  TEXT NOT NULL,
    config_version  TEXT NOT NULL,
    list_versions   TEXT NOT NULL,
    recorded_at     TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX step_journal_completed_once ON step_journal (alert_id, step)
    WHERE status = 'completed';
CREATE INDEX step_journal_alert_idx ON step_journal (alert_id, id);

CREATE TABLE decisions (
    alert_id               TEXT PRIMARY KEY REFERENCES alerts (alert_id),
    disposition            TEXT NOT NULL,
    risk_score             REAL NOT NULL,
    confidence             REAL NOT NULL,
    requires_human_review  INTEGER NOT NULL CHECK (requires_human_review IN (0, 1)),
    decision               TEXT NOT NULL,
    policy_version         TEXT NOT NULL,
    config_version         TEXT NOT NULL,
    list_versions          TEXT NOT NULL,
    decided_at             TEXT NOT NULL,
    recorded_at            TEXT NOT NULL
) STRICT;
CREATE INDEX decisions_disposition_idx ON decisions (disposition);

CREATE TABLE audit_entries (
    chain_id    TEXT NOT NULL,
    seq         INTEGER NOT NULL CHECK (seq >= 1),
    alert_id    TEXT,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    payload     TEXT NOT NULL,
    versions    TEXT,
    created_at  TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    PRIMARY KEY (chain_id, seq)
) STRICT;
CREATE INDEX audit_entries_alert_id_idx ON audit_entries (alert_id);

CREATE TABLE audit_anchors (
    chain_id    TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    hash        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (chain_id, seq)
) STRICT;

CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit_entries is append-only');
END;
