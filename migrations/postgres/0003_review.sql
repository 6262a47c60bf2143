-- Analyst review (issue 14): users, sessions, cases, comments, QA samples, canaries.
-- Timestamps are fixed-width RFC 3339 text (as in 0001) on both backends' review tables, so
-- the review queries are the same text on PostgreSQL and SQLite.

CREATE TABLE review_users (
    user_id        TEXT PRIMARY KEY,
    display_name   TEXT NOT NULL,
    roles          TEXT NOT NULL,
    password_hash  TEXT,
    oidc_subject   TEXT UNIQUE,
    disabled       BIGINT NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);

CREATE TABLE review_sessions (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES review_users (user_id),
    csrf_token  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX review_sessions_user_idx ON review_sessions (user_id);

CREATE TABLE review_cases (
    case_id        TEXT PRIMARY KEY,
    alert_id       TEXT NOT NULL UNIQUE,
    customer_id    TEXT NOT NULL,
    alert_type     TEXT NOT NULL,
    priority       TEXT NOT NULL,
    priority_rank  BIGINT NOT NULL,
    origin         TEXT NOT NULL,
    state          TEXT NOT NULL,
    assignee       TEXT,
    locked_until   TEXT,
    opened_at      TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    version        BIGINT NOT NULL,
    doc            TEXT NOT NULL
);
CREATE INDEX review_cases_queue_idx ON review_cases (state, priority_rank DESC, opened_at);
CREATE INDEX review_cases_assignee_idx ON review_cases (assignee);
CREATE INDEX review_cases_customer_idx ON review_cases (customer_id);

-- OIDC logins in progress (authorization code + PKCE): one row per redirect, used once.
CREATE TABLE review_oidc_pending (
    state        TEXT PRIMARY KEY,
    nonce        TEXT NOT NULL,
    verifier     TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);

CREATE TABLE review_comments (
    comment_id  TEXT PRIMARY KEY,
    case_id     TEXT NOT NULL REFERENCES review_cases (case_id),
    user_id     TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX review_comments_case_idx ON review_comments (case_id, created_at);

CREATE TABLE review_qa_samples (
    sample_id           TEXT PRIMARY KEY,
    period              TEXT NOT NULL,
    alert_id            TEXT NOT NULL,
    band                BIGINT NOT NULL,
    inclusion           DOUBLE PRECISION NOT NULL,
    risk_score          DOUBLE PRECISION NOT NULL,
    engine_disposition  TEXT NOT NULL,
    drawn_at            TEXT NOT NULL,
    reviewer            TEXT,
    verdict             TEXT CHECK (verdict IN ('ok', 'miss')),
    notes               TEXT,
    reviewed_at         TEXT,
    UNIQUE (period, alert_id)
);
CREATE INDEX review_qa_samples_period_idx ON review_qa_samples (period, reviewed_at);

CREATE TABLE review_canaries (
    alert_id      TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    injected_at   TEXT NOT NULL,
    disposition   TEXT,
    checked_at    TEXT
);
