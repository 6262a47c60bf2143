-- Failed local logins, per user id as typed (existing or not, so a refusal says nothing about
-- whether the account exists). Read to throttle password guessing across every node; rows
-- older than the window are dropped as new ones arrive; a successful login clears its user's.
CREATE TABLE review_login_failures (
    user_id    TEXT NOT NULL,
    failed_at  TEXT NOT NULL
);
CREATE INDEX review_login_failures_user_idx ON review_login_failures (user_id, failed_at);
