-- Storage format v2 (issue 17). Same logical change as migrations/postgres/0004_storage_v2.sql:
-- interned version sets referenced by id, no status column (decided = a decision exists).
-- SQLite cannot add NOT NULL to an existing column: `versions_id` is required by the store.

CREATE TABLE version_sets (
    id        INTEGER PRIMARY KEY,
    -- Canonical JSON: {"config_version":..,"list_versions":[..],"policy_version":..}.
    versions  TEXT NOT NULL UNIQUE
) STRICT;

INSERT INTO version_sets (versions)
SELECT DISTINCT '{"config_version":' || json_quote(config_version) || ',"list_versions":'
    || list_versions || ',"policy_version":' || json_quote(policy_version) || '}'
FROM (
    SELECT policy_version, config_version, list_versions FROM step_journal
    UNION
    SELECT policy_version, config_version, list_versions FROM decisions
);

ALTER TABLE step_journal ADD COLUMN versions_id INTEGER REFERENCES version_sets (id);
UPDATE step_journal SET versions_id = (SELECT v.id FROM version_sets v WHERE v.versions =
    '{"config_version":' || json_quote(step_journal.config_version) || ',"list_versions":'
    || step_journal.list_versions || ',"policy_version":'
    || json_quote(step_journal.policy_version) || '}');
ALTER TABLE step_journal DROP COLUMN policy_version;
ALTER TABLE step_journal DROP COLUMN config_version;
ALTER TABLE step_journal DROP COLUMN list_versions;

ALTER TABLE decisions ADD COLUMN versions_id INTEGER REFERENCES version_sets (id);
UPDATE decisions SET versions_id = (SELECT v.id FROM version_sets v WHERE v.versions =
    '{"config_version":' || json_quote(decisions.config_version) || ',"list_versions":'
    || decisions.list_versions || ',"policy_version":'
    || json_quote(decisions.policy_version) || '}');
ALTER TABLE decisions DROP COLUMN policy_version;
ALTER TABLE decisions DROP COLUMN config_version;
ALTER TABLE decisions DROP COLUMN list_versions;

ALTER TABLE alerts DROP COLUMN status;
