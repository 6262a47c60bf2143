//! OpenSanctions exports: Senzing and FollowTheMoney JSON (lines).

use super::*;

pub(super) fn strs(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn objs(v: Option<&Value>) -> impl Iterator<Item = &serde_json::Map<String, Value>> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

/// Which OpenSanctions lists a record's topics put it on.
pub(super) fn route(topics: &[String]) -> Vec<(&'static str, ListKind)> {
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
pub(super) fn senzing_entry(
    o: &serde_json::Map<String, Value>,
) -> Option<(ListEntry, Vec<String>, String)> {
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
pub(super) fn ftm_entry(
    o: &serde_json::Map<String, Value>,
) -> Option<(ListEntry, Vec<String>, String)> {
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

pub(super) fn load_opensanctions(path: &Path, out: &mut Loaded) -> Result<(), ListError> {
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
