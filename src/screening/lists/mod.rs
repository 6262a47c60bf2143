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

mod ofac;
mod opensanctions;
mod un;

pub use ofac::parse_ofac_remarks;
use ofac::*;
use opensanctions::*;
use un::*;

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
