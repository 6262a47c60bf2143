//! deploy/: the backup and restore scripts against the real PostgreSQL, and no secret literal
//! anywhere under deploy/. (The manifests, Dockerfile, compose file, Prometheus rules and
//! dashboard are checked offline by `deploy/validate`, which `.ci/run` runs.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use sqlx::Connection;

use crate::store_support::{Kind, PG_ADMIN_URL, TestDb};

const BIN: &str = env!("CARGO_BIN_EXE_aml-triage");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn script(name: &str) -> PathBuf {
    repo().join("deploy/backup").join(name)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `aml-triage audit verify` against a database.
fn audit_verify(url: &str) -> Output {
    Command::new(BIN)
        .env("LOG_LEVEL", "error")
        .env("NODE_ID", "backup-verify")
        .args(["audit", "verify", "--database-url", url])
        .output()
        .unwrap()
}

/// Row counts of the tables a restore must bring back, in a fixed order.
async fn counts(db: &TestDb) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for table in ["alerts", "decisions", "audit_entries", "step_journal"] {
        let n = db.scalar(&format!("SELECT COUNT(*) FROM {table}")).await;
        out.push((table.to_string(), n));
    }
    out
}

fn database_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

async fn drop_database(name: &str) {
    let mut admin = sqlx::PgConnection::connect(PG_ADMIN_URL).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let _ = admin.close().await;
}

fn set_age(path: &Path, days: u64) {
    let when = SystemTime::now() - Duration::from_secs(days * 86_400);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

/// Replaces every escalating disposition on the first escalated row of the `decisions` COPY
/// block of a plain SQL dump with AUTO_CLEAR: an attacker downgrading a stored decision.
fn downgrade_one_decision(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut in_decisions = false;
    let mut done = false;
    for line in sql.split_inclusive('\n') {
        if line.starts_with("COPY public.decisions ") {
            in_decisions = true;
        } else if in_decisions && line.starts_with("\\.") {
            in_decisions = false;
        } else if in_decisions && !done && line.contains("ESCALATE_") {
            let mut changed = line.to_string();
            for d in ["ESCALATE_SAR", "ESCALATE_L3", "ESCALATE_L2"] {
                changed = changed.replace(d, "AUTO_CLEAR");
            }
            out.push_str(&changed);
            done = true;
            continue;
        }
        out.push_str(line);
    }
    assert!(done, "no escalated decision in the dump to tamper with");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_restore_keeps_audit_chain_valid() {
    let db = TestDb::new(Kind::Postgres).await;
    let work = tempfile::tempdir().unwrap();

    // Decide the sample alerts (clear and escalated ones) with the real binary.
    let triage = Command::new(BIN)
        .env("DATABASE_URL", &db.url)
        .env("NODE_ID", "backup-node")
        .env("LOG_LEVEL", "error")
        .arg("triage")
        .arg(repo().join("examples/alerts.sample.jsonl"))
        .arg("--out")
        .arg(work.path().join("decisions.jsonl"))
        .output()
        .unwrap();
    assert!(
        triage.status.success(),
        "triage failed: {}",
        stderr(&triage)
    );
    let before = counts(&db).await;
    assert!(before.iter().all(|(_, n)| *n > 0), "{before:?}");
    let verified = audit_verify(&db.url);
    assert!(verified.status.success(), "{}", stderr(&verified));

    // Old dumps in the backup directory: past the 30-day retention, inside it, and a file
    // that is not ours.
    let backups = work.path().join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    let expired = backups.join("aml-triage-olddb-20200101T000000Z.dump");
    let kept = backups.join("aml-triage-olddb-20200201T000000Z.dump");
    let foreign = backups.join("operator-notes.txt");
    for (path, days) in [(&expired, 31), (&kept, 29), (&foreign, 90)] {
        std::fs::write(path, b"placeholder").unwrap();
        set_age(path, days);
    }
    std::fs::write(
        backups.join("aml-triage-olddb-20200101T000000Z.dump.sha256"),
        b"x",
    )
    .unwrap();

    // Back up.
    let backup = Command::new("bash")
        .arg(script("backup.sh"))
        .arg(&backups)
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(
        backup.status.success(),
        "backup failed: {}",
        stderr(&backup)
    );
    let dump = PathBuf::from(String::from_utf8_lossy(&backup.stdout).trim().to_string());
    assert!(dump.is_file(), "no dump at {}", dump.display());
    assert!(dump.with_extension("dump.sha256").is_file());
    assert!(!expired.exists(), "a dump past retention was kept");
    assert!(
        !backups
            .join("aml-triage-olddb-20200101T000000Z.dump.sha256")
            .exists()
    );
    assert!(kept.exists(), "a dump inside retention was pruned");
    assert!(
        foreign.exists(),
        "pruning touched a file that is not a dump"
    );
    assert!(
        !stderr(&backup).contains(&db.url),
        "the script printed the URL"
    );

    // Drop the database, as a disaster would.
    drop_database(database_name(&db.url)).await;
    assert!(db.try_scalar("SELECT COUNT(*) FROM alerts").await.is_none());

    // Restore: the script recreates the database, restores, and verifies the chain itself.
    let restore = Command::new("bash")
        .arg(script("restore.sh"))
        .arg(&dump)
        .env("DATABASE_URL", &db.url)
        .env("AML_TRIAGE_BIN", BIN)
        .output()
        .unwrap();
    assert!(
        restore.status.success(),
        "restore failed: {}",
        stderr(&restore)
    );
    assert!(stderr(&restore).contains("audit chain verified"));
    // And independently: every row is back and the chain verifies.
    assert_eq!(counts(&db).await, before);
    let verified = audit_verify(&db.url);
    assert!(
        verified.status.success(),
        "audit verify failed on the restored database: {}",
        stderr(&verified)
    );
    // A second restore over the live data is refused without --force.
    let again = Command::new("bash")
        .arg(script("restore.sh"))
        .arg(&dump)
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(4), "{}", stderr(&again));

    // Control 1: a dump changed after the backup is refused before anything is created.
    let target = TestDb::new(Kind::Postgres).await;
    let tampered = work.path().join("tampered.dump");
    let mut bytes = std::fs::read(&dump).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&tampered, &bytes).unwrap();
    let sum = std::fs::read_to_string(dump.with_extension("dump.sha256")).unwrap();
    std::fs::write(work.path().join("tampered.dump.sha256"), sum).unwrap();
    let refused = Command::new("bash")
        .arg(script("restore.sh"))
        .arg(&tampered)
        .env("DATABASE_URL", &target.url)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("checksum mismatch"));

    // Control 2: a dump whose decision was downgraded to AUTO_CLEAR (checksum recomputed by
    // the attacker) restores, but the audit chain names the change.
    let plain = Command::new("pg_restore")
        .args(["--no-owner", "--no-privileges", "-f", "-"])
        .arg(&dump)
        .output()
        .unwrap();
    assert!(plain.status.success(), "{}", stderr(&plain));
    let sql = downgrade_one_decision(&String::from_utf8(plain.stdout).unwrap());
    let sql_path = work.path().join("tampered.sql");
    std::fs::write(&sql_path, sql).unwrap();
    let load = Command::new("psql")
        .args(["--no-psqlrc", "-q", "-v", "ON_ERROR_STOP=1"])
        .arg(format!("--dbname={}", target.url))
        .arg("-f")
        .arg(&sql_path)
        .output()
        .unwrap();
    assert!(load.status.success(), "{}", stderr(&load));
    let broken = audit_verify(&target.url);
    assert_eq!(broken.status.code(), Some(1), "{}", stderr(&broken));
    assert!(
        stderr(&broken).contains("AUDIT CHAIN BROKEN"),
        "{}",
        stderr(&broken)
    );

    // The operators' drill (backup, restore into a scratch database, verify, compare counts,
    // drop the scratch database) passes on the restored database.
    let drill = Command::new("bash")
        .arg(script("drill.sh"))
        .arg(work.path().join("drill-backups"))
        .env("DATABASE_URL", &db.url)
        .env("AML_TRIAGE_BIN", BIN)
        .output()
        .unwrap();
    assert!(drill.status.success(), "drill failed: {}", stderr(&drill));
    assert!(stderr(&drill).contains("drill: PASSED"));
}

/// What a file under deploy/ must never contain: a credential written out. Returns one line
/// per hit, naming the line and the kind, never the value.
fn secret_literals(text: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for kind in line_secrets(line) {
            hits.push(format!("line {}: {kind}", n + 1));
        }
    }
    hits
}

fn token_len(s: &str, ok: impl Fn(char) -> bool) -> usize {
    s.chars().take_while(|c| ok(*c)).count()
}

fn key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// A value that stands for a secret rather than being one: empty, an interpolation or a
/// placeholder, or a flag.
fn is_placeholder(value: &str) -> bool {
    let v = value.trim_matches(|c| c == '"' || c == '\'');
    v.is_empty()
        || v.starts_with(['$', '<', '{', '[', '(', '*'])
        || ["true", "false", "null", "none", "optional", "required"]
            .contains(&v.to_ascii_lowercase().as_str())
}

fn line_secrets(line: &str) -> Vec<&'static str> {
    let mut kinds = Vec::new();
    let lower = line.to_ascii_lowercase();
    // Provider API keys.
    for (prefix, kind, min) in [
        ("sk-ant-", "Anthropic API key", 20),
        ("sk-", "OpenAI-style API key", 20),
        ("ghp_", "GitHub token", 30),
        ("xoxb-", "Slack token", 20),
    ] {
        let mut from = 0;
        while let Some(pos) = line[from..].find(prefix) {
            let start = from + pos;
            let boundary = start == 0 || !key_char(line[..start].chars().last().unwrap());
            let rest = &line[start + prefix.len()..];
            if boundary && token_len(rest, key_char) >= min {
                kinds.push(kind);
            }
            from = start + prefix.len();
        }
    }
    // AWS access key ids.
    let mut from = 0;
    while let Some(pos) = line[from..].find("AKIA") {
        let rest = &line[from + pos + 4..];
        if token_len(rest, |c| c.is_ascii_uppercase() || c.is_ascii_digit()) >= 16 {
            kinds.push("AWS access key id");
        }
        from += pos + 4;
    }
    if line.contains("PRIVATE KEY-----") {
        kinds.push("private key");
    }
    // URLs with a password in them: scheme://user:password@host.
    let mut from = 0;
    while let Some(pos) = line[from..].find("://") {
        let authority: String = line[from + pos + 3..]
            .chars()
            .take_while(|c| !matches!(c, '/' | '?' | '#' | '"' | '\'' | '`') && !c.is_whitespace())
            .collect();
        if let Some((userinfo, _host)) = authority.rsplit_once('@')
            && let Some((_user, password)) = userinfo.split_once(':')
            && !is_placeholder(password)
        {
            kinds.push("URL with a password");
        }
        from += pos + 3;
    }
    // key=value or key: value where the key names a secret.
    let names = [
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "access_key",
        "private_key",
        "_pass",
        "requirepass",
        "masterauth",
    ];
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !key_char(bytes[i] as char) || (i > 0 && key_char(bytes[i - 1] as char)) {
            i += 1;
            continue;
        }
        let key_len = token_len(&line[i..], key_char);
        let key = &lower[i..i + key_len];
        let after = line[i + key_len..].trim_start_matches(['"', '\'']);
        let after = after.trim_start();
        // `${NAME:?message}` refers to a variable; `${NAME:-default}` has a default to check.
        let interpolated = line[..i].ends_with("${");
        if interpolated && names.iter().any(|n| key.contains(n)) {
            if let Some(default) = after.strip_prefix(":-").or_else(|| after.strip_prefix('-')) {
                let default: String = default.chars().take_while(|c| *c != '}').collect();
                if !is_placeholder(&default) {
                    kinds.push("secret-named variable with a literal default");
                }
            }
        } else if names.iter().any(|n| key.contains(n))
            && let Some(value) = after.strip_prefix(['=', ':'])
        {
            let value = value.trim_start();
            let value: String = value
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != ',' && *c != ';')
                .collect();
            if !is_placeholder(&value) {
                kinds.push("secret-named key with a literal value");
            }
        }
        i += key_len.max(1);
    }
    kinds
}

#[test]
fn secret_matcher_catches_planted_examples() {
    // Built at run time so that no scanner mistakes this file for a leak.
    let tail = "A1b2C3d4E5f6G7h8I9j0K1l2M3n4";
    let planted = [
        format!("ANTHROPIC_API_KEY: sk-ant-api03-{tail}"),
        format!("export OPENAI_API_KEY=sk-proj-{tail}"),
        format!("aws_key = AKIA{}", "ABCDEFGHIJKLMNOP"),
        "-----BEGIN RSA PRIVATE KEY-----".to_string(),
        "DATABASE_URL: postgres://aml:hunter22@db:5432/aml".to_string(),
        "amqp_url=amqp://guest:guest@rabbitmq:5672/%2f".to_string(),
        "  POSTGRES_PASSWORD: hunter22".to_string(),
        "password=hunter22".to_string(),
        "RABBITMQ_DEFAULT_PASS: \"letmein\"".to_string(),
        "REDIS_URL: redis://:${REDIS_PASSWORD:-letmein}@redis:6379/0".to_string(),
        format!("token: ghp_{tail}{tail}"),
    ];
    for line in &planted {
        assert!(!secret_literals(line).is_empty(), "missed: {line}");
    }
    // What deploy/ legitimately says about secrets.
    let fine = [
        "DATABASE_URL: postgres://aml:${POSTGRES_PASSWORD:?set it}@postgres:5432/aml_triage",
        "REDIS_URL: redis://:${REDIS_PASSWORD}@redis:6379/0",
        "DATABASE_URL=postgres://USER@HOST:5432/DB deploy/backup/backup.sh",
        "POSTGRES_PASSWORD=",
        "OPENAI_API_KEY: ${OPENAI_API_KEY:-}",
        "GF_SECURITY_ADMIN_PASSWORD: ${GRAFANA_ADMIN_PASSWORD:?set it}",
        "  --from-literal=ANTHROPIC_API_KEY=\"$(vault kv get -field=anthropic_api_key secret/x)\"",
        "              valueFrom:",
        "                secretKeyRef:",
        "automountServiceAccountToken: false",
        "    server_tokens off;",
        "  OPENAI_BASE_URL: \"https://api.openai.com/v1\"",
        "| `ANTHROPIC_API_KEY`, `OPENAI_API_KEY` | ingress, context, decision |",
    ];
    for line in fine {
        assert!(
            secret_literals(line).is_empty(),
            "false alarm on {line:?}: {:?}",
            secret_literals(line)
        );
    }
    // The report names the line and kind, never the value.
    let report = secret_literals("a: 1\npassword=hunter22\n");
    assert_eq!(
        report,
        vec!["line 2: secret-named key with a literal value".to_string()]
    );
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn deploy_has_no_secret_literals() {
    let mut files = Vec::new();
    files_under(&repo().join("deploy"), &mut files);
    // Files that configure what goes into the image or the checks count too.
    files.push(repo().join(".dockerignore"));
    files.push(repo().join(".yamllint"));
    assert!(files.len() >= 20, "deploy/ looks empty: {files:?}");
    let mut hits = Vec::new();
    for file in &files {
        // The local compose .env is git-ignored and holds the operator's real passwords.
        if file.file_name().is_some_and(|n| n == ".env") {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned();
        for hit in secret_literals(&text) {
            hits.push(format!(
                "{}: {hit}",
                file.strip_prefix(repo()).unwrap().display()
            ));
        }
    }
    assert!(
        hits.is_empty(),
        "secret literals under deploy/:\n{}",
        hits.join("\n")
    );
}
