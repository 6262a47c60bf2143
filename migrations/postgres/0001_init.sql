-- aml-triage store, PostgreSQL. Same logical schema as migrations/sqlite/0001_init.sql.
-- JSON documents are TEXT, not JSONB: the bytes stored are the bytes hashed (raw alert body as
-- received; canonical JSON for decisions, step outputs and audit payloads). Cast to jsonb to
-- query them. Timestamps are TIMESTAMPTZ at microsecond precision (the store truncates to it).

CREATE TABLE alerts (
    alert_id      TEXT PRIMARY KEY,
    raw_json      TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    customer_id   TEXT NOT NULL,
    alert_type    TEXT NOT NULL,
    priority      TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('received', 'decided')),
    created_at    TIMESTAMPTZ NOT NULL,
    received_at   TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX alerts_customer_id_idx ON alerts (customer_id);
CREATE INDEX alerts_created_at_idx ON alerts (created_at DESC);
-- Retention (received_at < cutoff) and recovery (oldest unfinished first).
CREATE INDEX alerts_received_at_idx ON alerts (received_at);

CREATE TABLE step_journal (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id        TEXT NOT NULL REFERENCES alerts (alert_id),
    step            TEXT NOT NULL,
    attempt         BIGINT NOT NULL CHECK (attempt >= 0),
    status          TEXT NOT NULL CHECK (status IN ('completed', 'degraded')),
    input_hash      TEXT NOT NULL,
    output          TEXT NOT NULL,
    provider        TEXT NOT NULL,
    model           TEXT NOT NULL,
    prompt_version  TEXT NOT NULL,
    tokens_in       BIGINT NOT NULL CHECK (tokens_in >= 0),
    tokens_out      BIGINT NOT NULL CHECK (tokens_out >= 0),
    cost_usd        DOUBLE PRECISION NOT NULL,
    latency_ms      BIGINT NOT NULL CHECK (latency_ms >= 0),
    error           TEXT,
    policy_version  TEXT NOT NULL,
    config_version  TEXT NOT NULL,
    list_versions   TEXT NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL
);
-- A completed step exists at most once per alert: "no completed step ran twice" is this index.
CREATE UNIQUE INDEX step_journal_completed_once ON step_journal (alert_id, step)
    WHERE status = 'completed';
CREATE INDEX step_journal_alert_idx ON step_journal (alert_id, id);

CREATE TABLE decisions (
    alert_id               TEXT PRIMARY KEY REFERENCES alerts (alert_id),
    disposition            TEXT NOT NULL,
    risk_score             DOUBLE PRECISION NOT NULL,
    confidence             DOUBLE PRECISION NOT NULL,
    requires_human_review  BOOLEAN NOT NULL,
    decision               TEXT NOT NULL,
    policy_version         TEXT NOT NULL,
    config_version         TEXT NOT NULL,
    list_versions          TEXT NOT NULL,
    decided_at             TIMESTAMPTZ NOT NULL,
    recorded_at            TIMESTAMPTZ NOT NULL
);
CREATE INDEX decisions_disposition_idx ON decisions (disposition);

-- One hash chain per node (chain_id = node id); see docs/audit.md.
CREATE TABLE audit_entries (
    chain_id    TEXT NOT NULL,
    seq         BIGINT NOT NULL CHECK (seq >= 1),
    alert_id    TEXT,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    payload     TEXT NOT NULL,
    versions    TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    -- The key also stops two writers from forking a chain: the second insert of a seq fails.
    PRIMARY KEY (chain_id, seq)
);
CREATE INDEX audit_entries_alert_id_idx ON audit_entries (alert_id);

-- Where a chain restarts after retention removed its prefix.
CREATE TABLE audit_anchors (
    chain_id    TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    hash        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (chain_id, seq)
);

-- Audit entries are append-only; only retention deletes them. Changing one takes a deliberate
-- act (disabling this trigger), and verify() still detects the change.
CREATE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_entries is append-only';
END;
$$;
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only();
