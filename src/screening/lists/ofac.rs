//! OFAC legacy and consolidated CSV files (primary file plus its companions).

use super::*;

pub(super) fn clean(field: Option<&str>) -> String {
    let f = field.unwrap_or("").trim();
    if f == "-0-" {
        String::new()
    } else {
        f.to_string()
    }
}

pub(super) fn csv_reader(text: &str) -> csv::Reader<&[u8]> {
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

pub(super) fn push_codes(out: &mut Vec<String>, codes: Vec<&'static str>) {
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
pub(super) fn parse_identifier(seg: &str) -> Option<Identifier> {
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

pub(super) fn ofac_kind(sdn_type: &str) -> EntityKind {
    match sdn_type.to_ascii_lowercase().as_str() {
        "individual" => EntityKind::Person,
        "vessel" => EntityKind::Vessel,
        "aircraft" => EntityKind::Aircraft,
        // OFAC leaves the type empty for companies and organisations.
        "" => EntityKind::Entity,
        _ => EntityKind::Unknown,
    }
}

pub(super) fn load_ofac(
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
