-- Storage format v2 (issue 17). Same logical change as migrations/sqlite/0004_storage_v2.sql.
--
-- * Version sets are interned: each distinct {policy_version, config_version, list_versions}
--   is stored once in `version_sets` (canonical JSON text, unique) and journal rows and
--   decisions refer to it by id instead of carrying three copied columns.
-- * No status UPDATE: an alert is decided when its decision row exists. `alerts.status` is
--   dropped; reads derive it (and `updated_at`, the decision's `recorded_at` once decided).
--   `alerts.updated_at` now keeps the admission time.
-- The audit chain is untouched: every entry keeps its bytes and hash, so `audit verify` passes
-- across the upgrade, and the moved columns are still checked against the entries' versions.

CREATE TABLE version_sets (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Canonical JSON: {"config_version":..,"list_versions":[..],"policy_version":..}.
    versions  TEXT NOT NULL UNIQUE
);

CREATE FUNCTION pg_temp.versions_text(p TEXT, c TEXT, l TEXT) RETURNS TEXT
    LANGUAGE sql IMMUTABLE AS $$
    SELECT '{"config_version":' || to_json(c)::text || ',"list_versions":' || l
        || ',"policy_version":' || to_json(p)::text || '}'
$$;

INSERT INTO version_sets (versions)
SELECT DISTINCT pg_temp.versions_text(policy_version, config_version, list_versions)
FROM (
    SELECT policy_version, config_version, list_versions FROM step_journal
    UNION
    SELECT policy_version, config_version, list_versions FROM decisions
) v;

ALTER TABLE step_journal ADD COLUMN versions_id BIGINT REFERENCES version_sets (id);
UPDATE step_journal s SET versions_id = v.id FROM version_sets v
    WHERE v.versions = pg_temp.versions_text(s.policy_version, s.config_version, s.list_versions);
ALTER TABLE step_journal ALTER COLUMN versions_id SET NOT NULL;
ALTER TABLE step_journal DROP COLUMN policy_version, DROP COLUMN config_version,
    DROP COLUMN list_versions;

ALTER TABLE decisions ADD COLUMN versions_id BIGINT REFERENCES version_sets (id);
UPDATE decisions d SET versions_id = v.id FROM version_sets v
    WHERE v.versions = pg_temp.versions_text(d.policy_version, d.config_version, d.list_versions);
ALTER TABLE decisions ALTER COLUMN versions_id SET NOT NULL;
ALTER TABLE decisions DROP COLUMN policy_version, DROP COLUMN config_version,
    DROP COLUMN list_versions;

ALTER TABLE alerts DROP COLUMN status;
