//! Loaders for the official list formats, each into [`ListEntry`] values.
//!
//! | format | files | list id | entry id | version |
//! |---|---|---|---|---|
//! | OFAC legacy CSV | `sdn*.csv` + `alt.csv`, `add.csv`, `sdn_comments.csv` | `OFAC_SDN` | `ent_num` | date in the file name, else SHA-256 |
//! | OFAC consolidated CSV | `cons_prim*.csv` + `cons_alt`, `cons_add`, `cons_comments` | `OFAC_CONSOLIDATED` | `ent_num` | same |
//! | UN consolidated XML | any `*.xml` whose root is `CONSOLIDATED_LIST` | `UN_CONSOLIDATED` | `REFERENCE_NUMBER` (e.g. `QDi.001`); `DATAID` is accepted too | `dateGenerated` |
//! | OpenSanctions Senzing | `*.json`/`*.jsonl` with `RECORD_ID` | `OPENSANCTIONS_PEP` / `OPENSANCTIONS_SANCTIONS` | `RECORD_ID` | newest `LAST_CHANGE` |
//! | OpenSanctions FollowTheMoney | `*.json`/`*.jsonl` with `id` and `schema` | same | `id` | newest `last_change` |
//!
//! **Companion files.** A primary `sdn{S}.csv` takes `alt{S}.csv`, `add{S}.csv` and
//! `sdn_comments{S}.csv` from its own folder (same suffix `S`); `cons_prim{S}.csv` likewise.
//! A dated primary such as `sdn-2024.csv` therefore gets no aliases from the undated
//! `alt.csv`, which belongs to another publication. The remarks-overflow file is the one
//! exception: when no comments file has the same suffix, the unsuffixed one is used, and a
//! continuation is appended only to remarks that look cut off (not ending in `.`), because
//! OFAC splits long remarks mid-word.
//!
//! **UN entry id.** Both `DATAID` (numeric) and `REFERENCE_NUMBER` are unique in the real
//! file (1,003 of 1,003). The reference number is the UN's permanent public identifier, the
//! one committees, press releases and screening vendors cite, so it is the entry id;
//! `DATAID` is kept in [`ListEntry::alt_ids`] so a claim quoting it still verifies.
//!
//! **OpenSanctions.** A record whose `RISKS` (Senzing) or `topics` (FtM) include `role.pep`
//! goes to `OPENSANCTIONS_PEP`; one with `sanction` or `sanction.counter` to
//! `OPENSANCTIONS_SANCTIONS` (both when it has both). Records with neither (position
//! descriptions such as "United States representative") are ignored and counted.
//!
//! **Malformed rows** (wrong field count, non-numeric id, empty name, invalid JSON line) are
//! skipped, counted in [`LoadedList::skipped`] and described, with file and line, in
//! [`ScreeningLists::warnings`](super::ScreeningLists::warnings). An XML syntax error, an
//! unreadable file or an explicitly named file of unknown format is a [`ListError`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::countries::{codes_for, country_in_place};
use super::dates::{BirthDate, parse_iso, parse_ofac_dob};
use super::{Alias, AliasQuality, EntityKind, Identifier, ListEntry};
use crate::domain::facts::ListKind;

/// List id of the OFAC SDN list.
pub const OFAC_SDN: &str = "OFAC_SDN";
/// List id of the OFAC consolidated (non-SDN) list.
pub const OFAC_CONSOLIDATED: &str = "OFAC_CONSOLIDATED";
/// List id of the UN Security Council consolidated list.
pub const UN_CONSOLIDATED: &str = "UN_CONSOLIDATED";
/// List id of OpenSanctions PEP records.
pub const OPENSANCTIONS_PEP: &str = "OPENSANCTIONS_PEP";
/// List id of OpenSanctions sanctions records.
pub const OPENSANCTIONS_SANCTIONS: &str = "OPENSANCTIONS_SANCTIONS";

/// Why a list could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The path does not exist.
    #[error("{}: no such file or folder", path.display())]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file named explicitly is not in a recognised list format.
    #[error(
        "{}: not a recognised list file (expected OFAC sdn*.csv or cons_prim*.csv, UN consolidated XML, or OpenSanctions Senzing/FollowTheMoney JSON)",
        path.display()
    )]
    Unrecognised {
        /// The file.
        path: PathBuf,
    },
    /// An OFAC companion file (alt, add, comments) was named without its primary file.
    #[error("{}: companion file given without its primary file {expected}", path.display())]
    MissingPrimary {
        /// The companion file.
        path: PathBuf,
        /// The primary file it needs, e.g. `sdn.csv`.
        expected: String,
    },
    /// The file is malformed beyond skipping a row (e.g. an XML syntax error).
    #[error("{}:{line}: {message}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
}

/// One loaded list (one list id from one source file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedList {
    /// List id, e.g. `OFAC_SDN`.
    pub list_id: String,
    /// Sanctions or PEP.
    pub kind: ListKind,
    /// Publication date (`2026-02-27`, `2024`) or the first 12 hex digits of the SHA-256.
    pub version: String,
    /// The primary file it was read from.
    pub source: PathBuf,
    /// Entries loaded.
    pub entries: usize,
    /// Malformed rows skipped.
    pub skipped: usize,
    /// Valid records ignored because they are neither PEP nor sanctions (OpenSanctions).
    pub ignored: usize,
}

/// What the loaders produced: lists, entries (each tagged with its list's index) and
/// warnings.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub lists: Vec<LoadedList>,
    pub entries: Vec<ListEntry>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum OfacFamily {
    Sdn,
    Cons,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum FileKind {
    OfacPrimary(OfacFamily, String),
    OfacAlt(OfacFamily, String),
    OfacAdd(OfacFamily, String),
    OfacComments(OfacFamily, String),
    UnXml,
    OpenSanctionsJson,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ListError + '_ {
    move |source| ListError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a text file: UTF-8 if valid, else Latin-1 (older OFAC files); a trailing DOS EOF
/// byte (0x1A) is dropped.
fn read_text(path: &Path) -> Result<(String, Vec<u8>), ListError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let mut end = bytes.len();
    while end > 0 && matches!(bytes[end - 1], 0x1A) {
        end -= 1;
    }
    let body = &bytes[..end];
    let text = match std::str::from_utf8(body) {
        Ok(s) => s.trim_start_matches('\u{feff}').to_string(),
        Err(_) => body.iter().map(|&b| b as char).collect(),
    };
    Ok((text, bytes))
}

fn sha12(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    hex::encode(digest)[..12].to_string()
}

/// A date in a file name: `sdn-2024.csv` -> `2024`, `consolidated_2026-02-27.xml` ->
/// `2026-02-27`, `sdn_20190115.csv` -> `2019-01-15`.
pub fn date_in_file_name(path: &Path) -> Option<String> {
    let name = path.file_stem()?.to_string_lossy().to_string();
    let b = name.as_bytes();
    let year_ok = |y: &str| y.starts_with("19") || y.starts_with("20");
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let run = &name[start..i];
        match run.len() {
            // Compact forms: 20190115, 201901.
            8 if year_ok(run) => {
                return Some(format!("{}-{}-{}", &run[..4], &run[4..6], &run[6..]));
            }
            6 if year_ok(run) => return Some(format!("{}-{}", &run[..4], &run[4..])),
            4 if year_ok(run) => {
                // Separated forms: 2019, 2019-01, 2019-01-15.
                let mut out = run.to_string();
                let mut j = i;
                for _ in 0..2 {
                    let two = j + 3 <= b.len()
                        && matches!(b[j], b'-' | b'_' | b'.')
                        && b[j + 1..j + 3].iter().all(u8::is_ascii_digit)
                        && (j + 3 == b.len() || !b[j + 3].is_ascii_digit());
                    if !two {
                        break;
                    }
                    out.push('-');
                    out.push_str(&name[j + 1..j + 3]);
                    j += 3;
                }
                return Some(out);
            }
            _ => {}
        }
    }
    None
}

/// Builds a file kind from the part of the file name after its prefix.
type MakeKind = fn(String) -> FileKind;

fn classify_by_name(path: &Path) -> Option<FileKind> {
    let name = path.file_name()?.to_string_lossy().to_lowercase();
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if ext == "csv" {
        let stem = &name[..name.len() - 4];
        // Longest, most specific prefixes first: `sdn_comments` before `sdn`.
        let table: [(&str, MakeKind); 8] = [
            ("sdn_comments", |s| {
                FileKind::OfacComments(OfacFamily::Sdn, s)
            }),
            ("cons_comments", |s| {
                FileKind::OfacComments(OfacFamily::Cons, s)
            }),
            ("cons_prim", |s| FileKind::OfacPrimary(OfacFamily::Cons, s)),
            ("cons_alt", |s| FileKind::OfacAlt(OfacFamily::Cons, s)),
            ("cons_add", |s| FileKind::OfacAdd(OfacFamily::Cons, s)),
            ("sdn", |s| FileKind::OfacPrimary(OfacFamily::Sdn, s)),
            ("alt", |s| FileKind::OfacAlt(OfacFamily::Sdn, s)),
            ("add", |s| FileKind::OfacAdd(OfacFamily::Sdn, s)),
        ];
        return table
            .iter()
            .find_map(|(prefix, kind)| stem.strip_prefix(prefix).map(|s| kind(s.to_string())));
    }
    if ext == "xml" {
        return Some(FileKind::UnXml);
    }
    if matches!(ext.as_str(), "json" | "jsonl" | "ndjson") {
        return Some(FileKind::OpenSanctionsJson);
    }
    None
}

/// Reads the first few KiB of a file for sniffing.
fn head(path: &Path, n: usize) -> Result<String, ListError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        let k = f.read(&mut buf[got..]).map_err(io_err(path))?;
        if k == 0 {
            break;
        }
        got += k;
    }
    buf.truncate(got);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Confirms by content what the name suggested.
fn sniff(path: &Path, kind: &FileKind) -> Result<bool, ListError> {
    let h = head(path, 8192)?;
    Ok(match kind {
        FileKind::OfacPrimary(..) => {
            // First record: a numeric ent_num and 12 comma-separated fields.
            let first = h.lines().next().unwrap_or("");
            let mut rdr = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(first.as_bytes());
            match rdr.records().next() {
                Some(Ok(r)) => {
                    r.len() == 12
                        && r.get(0).is_some_and(|f| {
                            !f.trim().is_empty() && f.trim().bytes().all(|b| b.is_ascii_digit())
                        })
                }
                _ => false,
            }
        }
        FileKind::OfacAlt(..) | FileKind::OfacAdd(..) | FileKind::OfacComments(..) => {
            h.trim().is_empty()
                || h.trim_start()
                    .split(',')
                    .next()
                    .is_some_and(|f| f.trim().bytes().all(|b| b.is_ascii_digit()))
        }
        FileKind::UnXml => h.contains("<CONSOLIDATED_LIST"),
        FileKind::OpenSanctionsJson => {
            let t = h.trim_start();
            t.starts_with('[')
                || (t.starts_with('{')
                    && (t.contains("\"RECORD_ID\"")
                        || (t.contains("\"schema\"") && t.contains("\"id\""))))
        }
    })
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ListError> {
    let mut items: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    items.sort();
    for p in items {
        if p.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// Loads every list found under `paths` (files or folders searched recursively).
pub(crate) fn load_all(paths: &[PathBuf]) -> Result<Loaded, ListError> {
    // (file, kind, explicitly named)
    let mut files: BTreeMap<PathBuf, (FileKind, bool)> = BTreeMap::new();
    let mut loaded = Loaded::default();
    for p in paths {
        if !p.exists() {
            return Err(ListError::NotFound { path: p.clone() });
        }
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found)?;
            for f in found {
                if let Some(kind) = classify_by_name(&f)
                    && sniff(&f, &kind)?
                {
                    files.entry(f).or_insert((kind, false));
                }
                // Anything else in a folder (README, other data) is not ours: skipped.
            }
        } else {
            let kind = classify_by_name(p)
                .filter(|k| sniff(p, k).unwrap_or(false))
                .ok_or_else(|| ListError::Unrecognised { path: p.clone() })?;
            files.insert(p.clone(), (kind, true));
        }
    }
    // Companions named explicitly need their primary among the files.
    for (path, (kind, explicit)) in &files {
        let (fam, suffix) = match kind {
            FileKind::OfacAlt(f, s) | FileKind::OfacAdd(f, s) | FileKind::OfacComments(f, s) => {
                (f, s)
            }
            _ => continue,
        };
        if !explicit {
            continue;
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let has_primary = files.iter().any(|(p, (k, _))| {
            p.parent().map(Path::to_path_buf).unwrap_or_default() == dir
                && matches!(k, FileKind::OfacPrimary(f2, s2) if f2 == fam && (s2 == suffix || matches!(kind, FileKind::OfacComments(..)) && suffix.is_empty()))
        });
        if !has_primary {
            let expected = match fam {
                OfacFamily::Sdn => format!("sdn{suffix}.csv"),
                OfacFamily::Cons => format!("cons_prim{suffix}.csv"),
            };
            return Err(ListError::MissingPrimary {
                path: path.clone(),
                expected,
            });
        }
    }
    // Companion files by (folder, family, suffix).
    let mut companions: HashMap<(PathBuf, OfacFamily, String), [Option<PathBuf>; 3]> =
        HashMap::new();
    for (path, (kind, _)) in &files {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let (fam, suffix, slot) = match kind {
            FileKind::OfacAlt(f, s) => (*f, s.clone(), 0),
            FileKind::OfacAdd(f, s) => (*f, s.clone(), 1),
            FileKind::OfacComments(f, s) => (*f, s.clone(), 2),
            _ => continue,
        };
        companions.entry((dir, fam, suffix)).or_default()[slot] = Some(path.clone());
    }
    for (path, (kind, _)) in &files {
        match kind {
            FileKind::OfacPrimary(fam, suffix) => {
                let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                let own = companions
                    .get(&(dir.clone(), *fam, suffix.clone()))
                    .cloned()
                    .unwrap_or_default();
                let comments = own[2].clone().or_else(|| {
                    companions
                        .get(&(dir.clone(), *fam, String::new()))
                        .and_then(|c| c[2].clone())
                });
                let list_id = match fam {
                    OfacFamily::Sdn => OFAC_SDN,
                    OfacFamily::Cons => OFAC_CONSOLIDATED,
                };
                load_ofac(
                    path,
                    list_id,
                    own[0].as_deref(),
                    own[1].as_deref(),
                    comments.as_deref(),
                    &mut loaded,
                )?;
            }
            FileKind::UnXml => load_un(path, &mut loaded)?,
            FileKind::OpenSanctionsJson => load_opensanctions(path, &mut loaded)?,
            _ => {}
        }
    }
    Ok(loaded)
}

// ---------------------------------------------------------------------------------------
// OFAC CSV
// ---------------------------------------------------------------------------------------

fn clean(field: Option<&str>) -> String {
    let f = field.unwrap_or("").trim();
    if f == "-0-" {
        String::new()
    } else {
        f.to_string()
    }
}

fn csv_reader(text: &str) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes())
}

/// What OFAC remarks say about an entry.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RemarksInfo {
    /// `DOB ...` values.
    pub birth_dates: Vec<BirthDate>,
    /// `nationality ...` and `citizen ...` countries, alpha-2.
    pub nationalities: Vec<String>,
    /// `POB ...` countries, alpha-2.
    pub birth_countries: Vec<String>,
    /// `a.k.a. 'X'` names (OFAC puts its weak aliases in the remarks).
    pub aliases: Vec<String>,
    /// Passport, national id, tax id, registration numbers, ...
    pub identifiers: Vec<Identifier>,
}

fn push_codes(out: &mut Vec<String>, codes: Vec<&'static str>) {
    for c in codes {
        if !out.iter().any(|x| x == c) {
            out.push(c.to_string());
        }
    }
}

/// Parses the OFAC remarks field: `DOB 12 Jan 1960; POB Tehran, Iran; nationality Iran;
/// Passport A123 (Iran); a.k.a. 'X'.`
pub fn parse_ofac_remarks(remarks: &str) -> RemarksInfo {
    let mut info = RemarksInfo::default();
    for seg in remarks.split(';') {
        let s = seg.trim();
        let s = s.strip_prefix("alt. ").unwrap_or(s).trim();
        let s_nodot = s.trim_end_matches('.');
        for prefix in ["a.k.a. ", "f.k.a. ", "n.k.a. "] {
            if let Some(rest) = s.strip_prefix(prefix) {
                let rest = rest.trim().trim_end_matches('.');
                if let (Some(a), Some(b)) = (rest.find('\''), rest.rfind('\''))
                    && b > a
                {
                    let name = rest[a + 1..b].trim();
                    if !name.is_empty() {
                        info.aliases.push(name.to_string());
                    }
                }
            }
        }
        if s.starts_with("a.k.a.") || s.starts_with("f.k.a.") || s.starts_with("n.k.a.") {
            continue;
        }
        if let Some(rest) = s_nodot.strip_prefix("DOB ") {
            if let Some(d) = parse_ofac_dob(rest) {
                info.birth_dates.push(d);
            }
        } else if let Some(rest) = s_nodot.strip_prefix("POB ") {
            push_codes(&mut info.birth_countries, country_in_place(rest));
        } else if let Some(rest) = s_nodot
            .strip_prefix("nationality ")
            .or_else(|| s_nodot.strip_prefix("citizen "))
        {
            push_codes(&mut info.nationalities, codes_for(rest));
        } else if let Some(id) = parse_identifier(s) {
            info.identifiers.push(id);
        }
    }
    info
}

/// `Passport L8081303 (Iran) issued 14 Mar 2006`, `Cedula No. 17640605 (Colombia)`,
/// `NIT # 891900090-8 (Colombia)`: type words, then the first word holding a digit, then an
/// optional `(Country)`.
fn parse_identifier(seg: &str) -> Option<Identifier> {
    let s = seg.trim().trim_end_matches('.');
    if s.contains(':') || s.contains("Date") || s.contains("http") || s.contains('@') {
        return None;
    }
    let first = s.chars().next()?;
    if !first.is_ascii_uppercase() {
        return None;
    }
    let words: Vec<&str> = s.split_whitespace().collect();
    let pos = words
        .iter()
        .position(|w| w.bytes().any(|b| b.is_ascii_digit()))?;
    if pos == 0 || pos > 6 {
        return None;
    }
    let kind = words[..pos].join(" ");
    let ignore = [
        "Website",
        "Email",
        "Telephone",
        "Phone",
        "Fax",
        "Gender",
        "Linked",
        "Additional",
        "Secondary",
    ];
    if ignore.iter().any(|w| kind.starts_with(w)) {
        return None;
    }
    let value = words[pos].trim_end_matches([',', '.']).to_string();
    let country = s
        .find('(')
        .and_then(|a| s[a + 1..].find(')').map(|b| &s[a + 1..a + 1 + b]))
        .and_then(|c| {
            let codes = codes_for(c);
            (codes.len() == 1).then(|| codes[0].to_string())
        });
    Some(Identifier {
        kind,
        value,
        country,
    })
}

fn ofac_kind(sdn_type: &str) -> EntityKind {
    match sdn_type.to_ascii_lowercase().as_str() {
        "individual" => EntityKind::Person,
        "vessel" => EntityKind::Vessel,
        "aircraft" => EntityKind::Aircraft,
        // OFAC leaves the type empty for companies and organisations.
        "" => EntityKind::Entity,
        _ => EntityKind::Unknown,
    }
}

fn load_ofac(
    path: &Path,
    list_id: &str,
    alt: Option<&Path>,
    add: Option<&Path>,
    comments: Option<&Path>,
    out: &mut Loaded,
) -> Result<(), ListError> {
    let (text, bytes) = read_text(path)?;
    let version = date_in_file_name(path).unwrap_or_else(|| sha12(&bytes));
    let mut skipped = 0usize;
    let mut entries: Vec<ListEntry> = Vec::new();
    let mut remarks_raw: Vec<String> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    // Line numbers are worked out only for the rows reported: counting from the start of
    // the file for every row would be quadratic.
    let warn = |out: &mut Loaded, byte: u64, msg: &str| {
        let line = record_line(&text, byte);
        out.warnings
            .push(format!("{}:{line}: {msg}; row skipped", path.display()));
    };
    for rec in csv_reader(&text).records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let byte = e.position().map_or(0, |p| p.byte());
                warn(out, byte, &format!("unreadable CSV row ({e})"));
                skipped += 1;
                continue;
            }
        };
        // Lines come from the byte offset: the csv crate's own count lags with CRLF rows.
        let line = rec.position().map_or(0, |p| p.byte());
        if rec.len() == 1 && rec.get(0).is_some_and(|f| f.trim().is_empty()) {
            continue;
        }
        if rec.len() != 12 {
            warn(out, line, &format!("expected 12 fields, got {}", rec.len()));
            skipped += 1;
            continue;
        }
        let id = clean(rec.get(0));
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            warn(out, line, &format!("ent_num {id:?} is not a number"));
            skipped += 1;
            continue;
        }
        let name = clean(rec.get(1));
        if name.is_empty() {
            warn(out, line, "empty name");
            skipped += 1;
            continue;
        }
        let programs: Vec<String> = clean(rec.get(3))
            .split("] [")
            .map(|p| p.trim_matches(['[', ']', ' ']).to_string())
            .filter(|p| !p.is_empty())
            .collect();
        let mut countries = Vec::new();
        let flag = clean(rec.get(9));
        if !flag.is_empty() {
            push_codes(&mut countries, codes_for(&flag));
        }
        let mut identifiers = Vec::new();
        let call_sign = clean(rec.get(5));
        if !call_sign.is_empty() {
            identifiers.push(Identifier {
                kind: "Call Sign".into(),
                value: call_sign,
                country: None,
            });
        }
        by_id.insert(id.clone(), entries.len());
        remarks_raw.push(clean(rec.get(11)));
        entries.push(ListEntry {
            list_id: list_id.to_string(),
            list_kind: ListKind::Sanctions,
            list_version: version.clone(),
            entry_id: id,
            alt_ids: Vec::new(),
            kind: ofac_kind(&clean(rec.get(2))),
            name,
            aliases: Vec::new(),
            birth_dates: Vec::new(),
            nationalities: Vec::new(),
            birth_countries: Vec::new(),
            countries,
            identifiers,
            programs,
            remarks: String::new(),
        });
    }
    if let Some(c) = comments {
        let (ctext, _) = read_text(c)?;
        for rec in csv_reader(&ctext).records().flatten() {
            let id = clean(rec.get(0));
            // The continuation is the rest of the row: OFAC does not quote it consistently.
            let more: Vec<&str> = rec.iter().skip(1).collect();
            let more = more.join(",");
            if let Some(&i) = by_id.get(&id)
                && !remarks_raw[i].ends_with('.')
            {
                remarks_raw[i].push_str(more.trim_end());
            }
        }
    }
    for (e, r) in entries.iter_mut().zip(remarks_raw) {
        let info = parse_ofac_remarks(&r);
        e.birth_dates = info.birth_dates;
        e.nationalities = info.nationalities;
        e.birth_countries = info.birth_countries;
        e.identifiers.extend(info.identifiers);
        e.aliases.extend(info.aliases.into_iter().map(|name| Alias {
            name,
            quality: AliasQuality::Weak,
        }));
        e.remarks = r;
    }
    if let Some(alt) = alt {
        let (atext, _) = read_text(alt)?;
        for rec in csv_reader(&atext).records() {
            let Ok(rec) = rec else {
                skipped += 1;
                continue;
            };
            if rec.len() == 1 && rec.get(0).is_some_and(|f| f.trim().is_empty()) {
                continue;
            }
            if rec.len() < 4 {
                let line = rec.position().map_or(0, |p| record_line(&atext, p.byte()));
                out.warnings.push(format!(
                    "{}:{line}: expected 5 fields, got {}; row skipped",
                    alt.display(),
                    rec.len()
                ));
                skipped += 1;
                continue;
            }
            let id = clean(rec.get(0));
            let alt_type = clean(rec.get(2)).to_ascii_lowercase();
            let name = clean(rec.get(3));
            let remark = clean(rec.get(4)).to_ascii_lowercase();
            if name.is_empty() {
                continue;
            }
            let quality = if alt_type.contains("weak") || remark.contains("weak") {
                AliasQuality::Weak
            } else {
                AliasQuality::Strong
            };
            if let Some(&i) = by_id.get(&id) {
                entries[i].aliases.push(Alias { name, quality });
            }
        }
    }
    if let Some(add) = add {
        let (dtext, _) = read_text(add)?;
        for rec in csv_reader(&dtext).records().flatten() {
            let id = clean(rec.get(0));
            let country = clean(rec.get(4));
            if let Some(&i) = by_id.get(&id)
                && !country.is_empty()
            {
                push_codes(&mut entries[i].countries, codes_for(&country));
            }
        }
    }
    out.lists.push(LoadedList {
        list_id: list_id.to_string(),
        kind: ListKind::Sanctions,
        version,
        source: path.to_path_buf(),
        entries: entries.len(),
        skipped,
        ignored: 0,
    });
    out.entries.extend(entries);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// UN XML
// ---------------------------------------------------------------------------------------

/// A minimal element tree: enough for the UN list, whose records are small.
#[derive(Debug, Default)]
struct Node {
    name: String,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
    fn text_of(&self, name: &str) -> String {
        self.child(name)
            .map(|c| c.text.trim().to_string())
            .unwrap_or_default()
    }
}

/// Line of a CSV record from its byte offset. The csv crate reports a CRLF-terminated row
/// as starting at the `\n` that ends the previous one, so line breaks are skipped first.
fn record_line(text: &str, pos: u64) -> u64 {
    let b = text.as_bytes();
    let mut p = (pos as usize).min(b.len());
    while p < b.len() && matches!(b[p], b'\r' | b'\n') {
        p += 1;
    }
    line_of(text, p as u64)
}

fn line_of(text: &str, pos: u64) -> u64 {
    let pos = (pos as usize).min(text.len());
    text.as_bytes()[..pos]
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64
        + 1
}

fn parse_xml(path: &Path, text: &str) -> Result<(Node, HashMap<String, String>), ListError> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<Node> = vec![Node::default()];
    let mut root_attrs = HashMap::new();
    let malformed = |pos: u64, message: String| ListError::Malformed {
        path: path.to_path_buf(),
        line: line_of(text, pos),
        message,
    };
    loop {
        let pos = reader.buffer_position();
        let ev = reader
            .read_event()
            .map_err(|e| malformed(reader.error_position(), format!("XML error: {e}")))?;
        match ev {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if stack.len() == 1 {
                    for a in e.attributes().flatten() {
                        let k = String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned();
                        let v = a
                            .unescape_value()
                            .map(|v| v.into_owned())
                            .unwrap_or_default();
                        root_attrs.insert(k, v);
                    }
                }
                stack.push(Node {
                    name,
                    ..Node::default()
                });
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if let Some(top) = stack.last_mut() {
                    top.children.push(Node {
                        name,
                        ..Node::default()
                    });
                }
            }
            Event::End(_) => {
                if stack.len() < 2 {
                    return Err(malformed(pos, "unbalanced end tag".into()));
                }
                if let Some(done) = stack.pop()
                    && let Some(parent) = stack.last_mut()
                {
                    parent.children.push(done);
                }
            }
            Event::Text(t) => {
                let s = t
                    .decode()
                    .map_err(|e| malformed(pos, format!("bad text: {e}")))?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&s);
                }
            }
            Event::CData(t) => {
                let s = t
                    .decode()
                    .map_err(|e| malformed(pos, format!("bad CDATA: {e}")))?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&s);
                }
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => {
                        let name = r.decode().map(|n| n.into_owned()).unwrap_or_default();
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .unwrap_or("")
                            .to_string()
                    }
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&resolved);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if stack.len() != 1 {
        return Err(malformed(
            text.len() as u64,
            "unexpected end of file inside an element".into(),
        ));
    }
    let doc = stack.pop().unwrap_or_default();
    Ok((doc, root_attrs))
}

fn un_birth_date(n: &Node) -> Option<BirthDate> {
    let kind = n.text_of("TYPE_OF_DATE").to_ascii_uppercase();
    let approx = kind.starts_with("APPROX");
    let date = n.text_of("DATE");
    if !date.is_empty() {
        let d = parse_iso(&date)?;
        return Some(if approx {
            BirthDate::Circa(d.year_span().0)
        } else {
            d
        });
    }
    let year = n.text_of("YEAR");
    if let Ok(y) = year.parse::<i32>() {
        return Some(if approx {
            BirthDate::Circa(y)
        } else {
            BirthDate::Year(y)
        });
    }
    let (from, to) = (n.text_of("FROM_YEAR"), n.text_of("TO_YEAR"));
    if let (Ok(f), Ok(t)) = (from.parse::<i32>(), to.parse::<i32>()) {
        return Some(BirthDate::Range { from: f, to: t });
    }
    None
}

fn load_un(path: &Path, out: &mut Loaded) -> Result<(), ListError> {
    let (text, bytes) = read_text(path)?;
    let (doc, attrs) = parse_xml(path, &text)?;
    let version = attrs
        .get("dateGenerated")
        .and_then(|d| d.get(..10).map(str::to_string))
        .or_else(|| date_in_file_name(path))
        .unwrap_or_else(|| sha12(&bytes));
    let Some(root) = doc.child("CONSOLIDATED_LIST") else {
        return Err(ListError::Unrecognised {
            path: path.to_path_buf(),
        });
    };
    let mut entries = Vec::new();
    let mut skipped = 0;
    let records = root
        .all("INDIVIDUALS")
        .flat_map(|s| s.all("INDIVIDUAL"))
        .map(|n| (n, true))
        .chain(
            root.all("ENTITIES")
                .flat_map(|s| s.all("ENTITY"))
                .map(|n| (n, false)),
        );
    for (n, person) in records {
        let dataid = n.text_of("DATAID");
        let reference = n.text_of("REFERENCE_NUMBER");
        let name = ["FIRST_NAME", "SECOND_NAME", "THIRD_NAME", "FOURTH_NAME"]
            .iter()
            .map(|f| n.text_of(f))
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let entry_id = if reference.is_empty() {
            dataid.clone()
        } else {
            reference.clone()
        };
        if entry_id.is_empty() || name.is_empty() {
            out.warnings.push(format!(
                "{}: UN record {:?} without id or name; skipped",
                path.display(),
                dataid
            ));
            skipped += 1;
            continue;
        }
        let mut e = ListEntry {
            list_id: UN_CONSOLIDATED.into(),
            list_kind: ListKind::Sanctions,
            list_version: version.clone(),
            entry_id,
            alt_ids: if reference.is_empty() || dataid.is_empty() {
                vec![]
            } else {
                vec![dataid]
            },
            kind: if person {
                EntityKind::Person
            } else {
                EntityKind::Entity
            },
            name,
            aliases: Vec::new(),
            birth_dates: Vec::new(),
            nationalities: Vec::new(),
            birth_countries: Vec::new(),
            countries: Vec::new(),
            identifiers: Vec::new(),
            programs: vec![n.text_of("UN_LIST_TYPE")]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect(),
            remarks: n.text_of("COMMENTS1"),
        };
        let alias_tag = if person {
            "INDIVIDUAL_ALIAS"
        } else {
            "ENTITY_ALIAS"
        };
        for a in n.all(alias_tag) {
            let an = a.text_of("ALIAS_NAME");
            if an.is_empty() {
                continue;
            }
            let quality = if a.text_of("QUALITY").eq_ignore_ascii_case("low") {
                AliasQuality::Weak
            } else {
                AliasQuality::Strong
            };
            e.aliases.push(Alias { name: an, quality });
            if let Some(d) = parse_iso(&a.text_of("DATE_OF_BIRTH")) {
                e.birth_dates.push(d);
            }
        }
        // The name in its original script (Arabic, Cyrillic, ...): a customer record kept in
        // that script is folded to Latin by the same normaliser on both sides.
        let original = n.text_of("NAME_ORIGINAL_SCRIPT");
        if !original.trim().is_empty() && !e.aliases.iter().any(|a| a.name == original) {
            e.aliases.push(Alias {
                name: original,
                quality: AliasQuality::Strong,
            });
        }
        for d in n.all("INDIVIDUAL_DATE_OF_BIRTH") {
            if let Some(b) = un_birth_date(d) {
                e.birth_dates.push(b);
            }
        }
        for nat in n.all("NATIONALITY") {
            for v in nat.all("VALUE") {
                push_codes(&mut e.nationalities, codes_for(&v.text));
            }
        }
        for pob in n.all("INDIVIDUAL_PLACE_OF_BIRTH") {
            push_codes(&mut e.birth_countries, codes_for(&pob.text_of("COUNTRY")));
        }
        for addr in n.all("INDIVIDUAL_ADDRESS").chain(n.all("ENTITY_ADDRESS")) {
            push_codes(&mut e.countries, codes_for(&addr.text_of("COUNTRY")));
        }
        for doc in n.all("INDIVIDUAL_DOCUMENT") {
            let value = doc.text_of("NUMBER");
            if value.is_empty() {
                continue;
            }
            let country = [
                doc.text_of("ISSUING_COUNTRY"),
                doc.text_of("COUNTRY_OF_ISSUE"),
            ]
            .iter()
            .find_map(|c| {
                let codes = codes_for(c);
                (codes.len() == 1).then(|| codes[0].to_string())
            });
            e.identifiers.push(Identifier {
                kind: doc.text_of("TYPE_OF_DOCUMENT"),
                value,
                country,
            });
        }
        entries.push(e);
    }
    out.lists.push(LoadedList {
        list_id: UN_CONSOLIDATED.into(),
        kind: ListKind::Sanctions,
        version,
        source: path.to_path_buf(),
        entries: entries.len(),
        skipped,
        ignored: 0,
    });
    out.entries.extend(entries);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// OpenSanctions: Senzing and FollowTheMoney JSON
// ---------------------------------------------------------------------------------------

fn strs(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn objs(v: Option<&Value>) -> impl Iterator<Item = &serde_json::Map<String, Value>> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

/// Which OpenSanctions lists a record's topics put it on.
fn route(topics: &[String]) -> Vec<(&'static str, ListKind)> {
    let mut out = Vec::new();
    if topics.iter().any(|t| t == "role.pep") {
        out.push((OPENSANCTIONS_PEP, ListKind::Pep));
    }
    if topics
        .iter()
        .any(|t| t == "sanction" || t == "sanction.counter")
    {
        out.push((OPENSANCTIONS_SANCTIONS, ListKind::Sanctions));
    }
    out
}

/// A Senzing record: the entry (without list id) and its topics and last change.
fn senzing_entry(o: &serde_json::Map<String, Value>) -> Option<(ListEntry, Vec<String>, String)> {
    let id = o.get("RECORD_ID")?.as_str()?.to_string();
    let kind = match o.get("RECORD_TYPE").and_then(Value::as_str) {
        Some("PERSON") => EntityKind::Person,
        Some("ORGANIZATION") => EntityKind::Entity,
        Some("VESSEL") => EntityKind::Vessel,
        Some("AIRCRAFT") => EntityKind::Aircraft,
        _ => EntityKind::Unknown,
    };
    let mut primary = None;
    let mut aliases = Vec::new();
    for n in objs(o.get("NAMES")) {
        let full = ["NAME_FULL", "NAME_ORG"]
            .iter()
            .find_map(|k| n.get(*k).and_then(Value::as_str).map(str::to_string))
            .or_else(|| {
                let parts: Vec<String> = ["NAME_FIRST", "NAME_MIDDLE", "NAME_LAST"]
                    .iter()
                    .filter_map(|k| n.get(*k).and_then(Value::as_str).map(str::to_string))
                    .collect();
                (!parts.is_empty()).then(|| parts.join(" "))
            });
        let Some(full) = full.filter(|f| !f.trim().is_empty()) else {
            continue;
        };
        let is_primary = n.get("NAME_TYPE").and_then(Value::as_str) == Some("PRIMARY");
        if is_primary && primary.is_none() {
            primary = Some(full);
        } else {
            aliases.push(Alias {
                name: full,
                quality: AliasQuality::Strong,
            });
        }
    }
    let name = match primary {
        Some(p) => p,
        None if !aliases.is_empty() => aliases.remove(0).name,
        None => return None,
    };
    let mut e = ListEntry {
        list_id: String::new(),
        list_kind: ListKind::Pep,
        list_version: String::new(),
        entry_id: id,
        alt_ids: Vec::new(),
        kind,
        name,
        aliases,
        birth_dates: Vec::new(),
        nationalities: Vec::new(),
        birth_countries: Vec::new(),
        countries: Vec::new(),
        identifiers: Vec::new(),
        programs: Vec::new(),
        remarks: String::new(),
    };
    let mut dates: Vec<String> = strs(o.get("DATE_OF_BIRTH"));
    for d in objs(o.get("DATES")) {
        dates.extend(strs(d.get("DATE_OF_BIRTH")));
    }
    e.birth_dates = dates.iter().filter_map(|d| parse_iso(d)).collect();
    let mut nat = strs(o.get("NATIONALITY"));
    nat.extend(strs(o.get("CITIZENSHIP")));
    let mut other = Vec::new();
    for c in objs(o.get("COUNTRIES")) {
        for (k, v) in c {
            match k.as_str() {
                "NATIONALITY" | "CITIZENSHIP" => nat.extend(strs(Some(v))),
                _ => other.extend(strs(Some(v))),
            }
        }
    }
    for a in objs(o.get("ADDRESSES")) {
        other.extend(strs(a.get("ADDR_COUNTRY")));
    }
    for n in nat {
        push_codes(&mut e.nationalities, codes_for(&n));
    }
    for n in other {
        push_codes(&mut e.countries, codes_for(&n));
    }
    for i in objs(o.get("IDENTIFIERS")) {
        // Passport, national id and similar; the OpenSanctions/Wikidata ids are not documents.
        for (k, v) in i {
            if let Some(kind) = k.strip_suffix("_NUMBER")
                && !k.contains("OTHER_ID")
                && !k.contains("TRUSTED_ID")
                && let Some(val) = v.as_str()
            {
                let country = ["PASSPORT_COUNTRY", "NATIONAL_ID_COUNTRY", "TAX_ID_COUNTRY"]
                    .iter()
                    .find_map(|c| i.get(*c).and_then(Value::as_str))
                    .and_then(|c| {
                        let codes = codes_for(c);
                        (codes.len() == 1).then(|| codes[0].to_string())
                    });
                e.identifiers.push(Identifier {
                    kind: kind.replace('_', " ").to_lowercase(),
                    value: val.to_string(),
                    country,
                });
            }
        }
    }
    let topics: Vec<String> = objs(o.get("RISKS"))
        .filter_map(|r| r.get("TOPIC").and_then(Value::as_str).map(str::to_string))
        .collect();
    let last = o
        .get("LAST_CHANGE")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Some((e, topics, last))
}

/// A FollowTheMoney entity.
fn ftm_entry(o: &serde_json::Map<String, Value>) -> Option<(ListEntry, Vec<String>, String)> {
    let id = o.get("id")?.as_str()?.to_string();
    let schema = o.get("schema")?.as_str()?;
    let kind = match schema {
        "Person" => EntityKind::Person,
        "Company" | "Organization" | "LegalEntity" | "PublicBody" => EntityKind::Entity,
        "Vessel" => EntityKind::Vessel,
        "Airplane" => EntityKind::Aircraft,
        _ => return None,
    };
    let props = o.get("properties")?.as_object()?;
    let p = |k: &str| strs(props.get(k));
    let mut names = p("name");
    if names.is_empty() {
        return None;
    }
    let name = names.remove(0);
    let mut aliases: Vec<Alias> = names
        .into_iter()
        .chain(p("alias"))
        .chain(p("previousName"))
        .map(|n| Alias {
            name: n,
            quality: AliasQuality::Strong,
        })
        .collect();
    aliases.extend(p("weakAlias").into_iter().map(|n| Alias {
        name: n,
        quality: AliasQuality::Weak,
    }));
    let mut e = ListEntry {
        list_id: String::new(),
        list_kind: ListKind::Pep,
        list_version: String::new(),
        entry_id: id,
        alt_ids: Vec::new(),
        kind,
        name,
        aliases,
        birth_dates: p("birthDate").iter().filter_map(|d| parse_iso(d)).collect(),
        nationalities: Vec::new(),
        birth_countries: Vec::new(),
        countries: Vec::new(),
        identifiers: Vec::new(),
        programs: p("program"),
        remarks: p("notes").join(" "),
    };
    for n in p("nationality").into_iter().chain(p("citizenship")) {
        push_codes(&mut e.nationalities, codes_for(&n));
    }
    for n in p("country")
        .into_iter()
        .chain(p("jurisdiction"))
        .chain(p("flag"))
    {
        push_codes(&mut e.countries, codes_for(&n));
    }
    for n in p("birthPlace") {
        push_codes(&mut e.birth_countries, country_in_place(&n));
    }
    for (prop, kind) in [
        ("passportNumber", "passport"),
        ("idNumber", "national id"),
        ("taxNumber", "tax id"),
        ("registrationNumber", "registration number"),
        ("imoNumber", "IMO"),
    ] {
        for v in p(prop) {
            e.identifiers.push(Identifier {
                kind: kind.into(),
                value: v,
                country: None,
            });
        }
    }
    let mut topics = p("topics");
    topics.extend(strs(o.get("topics")));
    let last = o
        .get("last_change")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Some((e, topics, last))
}

fn load_opensanctions(path: &Path, out: &mut Loaded) -> Result<(), ListError> {
    let (text, bytes) = read_text(path)?;
    let mut values: Vec<(u64, Value)> = Vec::new();
    let mut skipped = 0usize;
    if text.trim_start().starts_with('[') {
        let v: Value = serde_json::from_str(&text).map_err(|e| ListError::Malformed {
            path: path.to_path_buf(),
            line: e.line() as u64,
            message: format!("invalid JSON array: {e}"),
        })?;
        if let Value::Array(items) = v {
            values.extend(items.into_iter().map(|i| (0, i)));
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            let line_no = i as u64 + 1;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(line) {
                Ok(v) => values.push((line_no, v)),
                Err(e) => {
                    out.warnings.push(format!(
                        "{}:{line_no}: invalid JSON ({e}); line skipped",
                        path.display()
                    ));
                    skipped += 1;
                }
            }
        }
    }
    // list id -> (entries, newest change)
    let mut per_list: BTreeMap<&'static str, (ListKind, Vec<ListEntry>, String)> = BTreeMap::new();
    let mut ignored = 0usize;
    for (line_no, v) in values {
        let Some(o) = v.as_object() else {
            skipped += 1;
            continue;
        };
        let parsed = if o.contains_key("RECORD_ID") {
            senzing_entry(o)
        } else if o.contains_key("schema") {
            ftm_entry(o)
        } else {
            None
        };
        let Some((entry, topics, last)) = parsed else {
            // Records of other FtM schemata (positions, relations) are not parties.
            ignored += 1;
            if o.get("RECORD_ID").is_some() {
                out.warnings.push(format!(
                    "{}:{line_no}: record without a usable name; skipped",
                    path.display()
                ));
            }
            continue;
        };
        let routes = route(&topics);
        if routes.is_empty() {
            ignored += 1;
            continue;
        }
        for (list_id, kind) in routes {
            let slot = per_list
                .entry(list_id)
                .or_insert_with(|| (kind, Vec::new(), String::new()));
            let mut e = entry.clone();
            e.list_id = list_id.to_string();
            e.list_kind = kind;
            slot.1.push(e);
            if last > slot.2 {
                slot.2 = last.clone();
            }
        }
    }
    for (list_id, (kind, mut entries, last)) in per_list {
        let version = last
            .get(..10)
            .map(str::to_string)
            .filter(|s| !s.is_empty())
            .or_else(|| date_in_file_name(path))
            .unwrap_or_else(|| sha12(&bytes));
        for e in &mut entries {
            e.list_version = version.clone();
        }
        out.lists.push(LoadedList {
            list_id: list_id.to_string(),
            kind,
            version,
            source: path.to_path_buf(),
            entries: entries.len(),
            skipped,
            ignored,
        });
        out.entries.extend(entries);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn file_name_dates() {
        assert_eq!(
            date_in_file_name(Path::new("sdn-2024.csv")).as_deref(),
            Some("2024")
        );
        assert_eq!(
            date_in_file_name(Path::new("consolidated_2026-02-27.xml")).as_deref(),
            Some("2026-02-27")
        );
        assert_eq!(
            date_in_file_name(Path::new("sdn_20190115.csv")).as_deref(),
            Some("2019-01-15")
        );
        assert_eq!(date_in_file_name(Path::new("sdn.csv")), None);
        assert_eq!(date_in_file_name(Path::new("list12345.csv")), None);
    }

    #[test]
    fn remarks_are_parsed() {
        let r = parse_ofac_remarks(
            "DOB 20 Sep 1974; alt. DOB 1975; POB Tehran, Iran; nationality Iran; citizen Korea, North; \
             Passport L8081303 (Iran) issued 14 Mar 2006; a.k.a. 'FERCHO'; a.k.a. ''ASRA, Abu'; \
             Linked To: SOME BANK; Listing Date (EO 14024): 24 Feb 2022.",
        );
        assert_eq!(r.birth_dates.len(), 2);
        assert_eq!(r.nationalities, vec!["IR", "KP"]);
        assert_eq!(r.birth_countries, vec!["IR"]);
        assert_eq!(r.aliases, vec!["FERCHO", "'ASRA, Abu"]);
        assert_eq!(r.identifiers.len(), 1);
        assert_eq!(r.identifiers[0].kind, "Passport");
        assert_eq!(r.identifiers[0].value, "L8081303");
        assert_eq!(r.identifiers[0].country.as_deref(), Some("IR"));
        let r = parse_ofac_remarks("NIT # 891900090-8 (Colombia).");
        assert_eq!(r.identifiers[0].kind, "NIT #");
        assert_eq!(r.identifiers[0].country.as_deref(), Some("CO"));
    }

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lists")
    }

    fn load(sub: &str) -> Loaded {
        load_all(&[fixtures().join(sub)]).expect("fixture loads")
    }

    #[test]
    fn ofac_csv_set_loads_with_companions() {
        let l = load("ofac");
        assert_eq!(l.lists.len(), 1);
        let list = &l.lists[0];
        assert_eq!(list.list_id, OFAC_SDN);
        assert_eq!(list.entries, 3);
        assert_eq!(list.skipped, 1, "the row with a non-numeric id is skipped");
        assert_eq!(list.version.len(), 12, "no date in sdn.csv: SHA-256 prefix");
        assert!(l.warnings[0].contains("sdn.csv:4"), "{:?}", l.warnings);
        let p = &l.entries[0];
        assert_eq!(p.kind, EntityKind::Person);
        assert_eq!(p.entry_id, "100");
        assert_eq!(p.nationalities, vec!["IQ"]);
        assert_eq!(p.birth_countries, vec!["IQ"]);
        assert_eq!(p.countries, vec!["IQ"]);
        assert_eq!(p.birth_dates.len(), 2);
        assert_eq!(p.programs, vec!["SDGT"]);
        assert_eq!(p.identifiers[0].value, "A1234567");
        let aliases: Vec<(&str, AliasQuality)> = p
            .aliases
            .iter()
            .map(|a| (a.name.as_str(), a.quality))
            .collect();
        assert_eq!(
            aliases,
            vec![
                ("ABU MUNIR", AliasQuality::Weak),
                ("AL-KUBAISI, Muneer", AliasQuality::Strong),
                ("AL-QUBAISI, M.", AliasQuality::Weak),
            ]
        );
        let e = &l.entries[1];
        assert_eq!(e.kind, EntityKind::Entity);
        assert_eq!(e.programs, vec!["IRAN", "SDGT"]);
        assert!(
            e.remarks.ends_with("SOME BANK; Linked To: OTHER CO."),
            "{}",
            e.remarks
        );
        assert_eq!(e.countries, vec!["IR"]);
        let v = &l.entries[2];
        assert_eq!(v.kind, EntityKind::Vessel);
        assert_eq!(v.countries, vec!["MT"]);
    }

    #[test]
    fn un_xml_loads() {
        let l = load("un");
        assert_eq!(l.lists[0].list_id, UN_CONSOLIDATED);
        assert_eq!(l.lists[0].version, "2026-01-02");
        assert_eq!(l.entries.len(), 2);
        let p = &l.entries[0];
        assert_eq!(p.entry_id, "CDi.001");
        assert_eq!(p.alt_ids, vec!["6908555"]);
        assert_eq!(p.name, "ERIC BADEGE");
        assert_eq!(p.nationalities, vec!["CD"]);
        assert_eq!(p.birth_countries, vec!["RW"]);
        assert_eq!(
            p.birth_dates,
            vec![
                BirthDate::Circa(1971),
                BirthDate::Range {
                    from: 1970,
                    to: 1972
                }
            ]
        );
        assert_eq!(p.aliases.len(), 2);
        assert_eq!(p.aliases[0].name, "Eric Badeg\u{e9}");
        assert_eq!(p.aliases[1].quality, AliasQuality::Weak);
        assert_eq!(p.identifiers[0].country.as_deref(), Some("CD"));
        assert_eq!(p.remarks, "Fled to Rwanda & lives there.");
        let e = &l.entries[1];
        assert_eq!(e.kind, EntityKind::Entity);
        assert_eq!(e.name, "ADF");
        assert_eq!(e.countries, vec!["CD"]);
    }

    #[test]
    fn opensanctions_senzing_and_ftm_load_and_route() {
        let l = load("opensanctions");
        let ids: Vec<(String, String, String)> = l
            .lists
            .iter()
            .map(|x| {
                (
                    x.list_id.clone(),
                    x.version.clone(),
                    x.source.file_name().unwrap().to_string_lossy().into_owned(),
                )
            })
            .collect();
        assert!(
            ids.contains(&(
                OPENSANCTIONS_PEP.into(),
                "2025-02-01".into(),
                "pep_senzing.jsonl".into()
            )),
            "{ids:?}"
        );
        assert!(ids.contains(&(
            OPENSANCTIONS_SANCTIONS.into(),
            "2025-02-01".into(),
            "pep_senzing.jsonl".into()
        )));
        assert!(ids.contains(&(
            OPENSANCTIONS_SANCTIONS.into(),
            "2025-06-30".into(),
            "entities.ftm.json".into()
        )));
        assert!(ids.contains(&(
            OPENSANCTIONS_PEP.into(),
            "2025-07-01".into(),
            "entities.ftm.json".into()
        )));
        let senzing_pep = l
            .lists
            .iter()
            .find(|x| x.list_id == OPENSANCTIONS_PEP && x.version == "2025-02-01")
            .unwrap();
        assert_eq!(senzing_pep.entries, 2);
        assert_eq!(
            senzing_pep.ignored, 1,
            "the position record is neither PEP nor sanction"
        );
        let nadler = l.entries.iter().find(|e| e.entry_id == "Q505598").unwrap();
        assert_eq!(nadler.birth_dates, vec![BirthDate::Year(1947)]);
        assert_eq!(nadler.nationalities, vec!["US"]);
        assert!(
            nadler.identifiers.is_empty(),
            "Wikidata ids are not documents"
        );
        let petrov: Vec<&ListEntry> = l
            .entries
            .iter()
            .filter(|e| e.entry_id == "NK-abc")
            .collect();
        assert_eq!(petrov.len(), 2, "both PEP and sanctioned");
        assert_eq!(petrov[0].aliases[0].name, "Ivan Petroff");
        assert_eq!(petrov[0].identifiers[0].country.as_deref(), Some("RU"));
        let company = l
            .entries
            .iter()
            .find(|e| e.entry_id == "ofac-1234")
            .unwrap();
        assert_eq!(company.kind, EntityKind::Entity);
        assert_eq!(company.countries, vec!["AE"]);
        let mayor = l.entries.iter().find(|e| e.entry_id == "Q42").unwrap();
        assert_eq!(
            mayor.birth_dates,
            vec![BirthDate::YearMonth {
                year: 1970,
                month: 3
            }]
        );
    }

    #[test]
    fn folders_skip_unknown_files_but_explicit_unknown_files_fail() {
        let l = load_all(&[fixtures()]).expect("whole fixture folder loads");
        assert_eq!(l.lists.len(), 6);
        let err = load_all(&[fixtures().join("junk/other.csv")]).unwrap_err();
        assert!(matches!(err, ListError::Unrecognised { .. }));
        assert!(err.to_string().contains("other.csv"), "{err}");
        let err = load_all(&[fixtures().join("ofac/alt.csv")]).unwrap_err();
        assert!(matches!(err, ListError::MissingPrimary { .. }), "{err}");
        let err = load_all(&[fixtures().join("nope")]).unwrap_err();
        assert!(matches!(err, ListError::NotFound { .. }));
    }

    #[test]
    fn malformed_xml_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("un.xml");
        std::fs::write(
            &p,
            "<CONSOLIDATED_LIST>\n<INDIVIDUALS>\n<INDIVIDUAL></WRONG>\n",
        )
        .unwrap();
        let err = load_all(&[p]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("un.xml:3"), "{msg}");
    }
}
