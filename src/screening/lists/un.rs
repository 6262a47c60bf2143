//! The UN Security Council consolidated list (XML).

use super::*;

/// A minimal element tree: enough for the UN list, whose records are small.
#[derive(Debug, Default)]
pub(super) struct Node {
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
pub(super) fn record_line(text: &str, pos: u64) -> u64 {
    let b = text.as_bytes();
    let mut p = (pos as usize).min(b.len());
    while p < b.len() && matches!(b[p], b'\r' | b'\n') {
        p += 1;
    }
    line_of(text, p as u64)
}

pub(super) fn line_of(text: &str, pos: u64) -> u64 {
    let pos = (pos as usize).min(text.len());
    text.as_bytes()[..pos]
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64
        + 1
}

pub(super) fn parse_xml(
    path: &Path,
    text: &str,
) -> Result<(Node, HashMap<String, String>), ListError> {
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

pub(super) fn un_birth_date(n: &Node) -> Option<BirthDate> {
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

pub(super) fn load_un(path: &Path, out: &mut Loaded) -> Result<(), ListError> {
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
