//! Layering of `src/`: the module graph (from `crate::` paths in non-test code, as
//! `/work/shared/tools/rust_layers.py` reads it) has no cycle, and the pure layer imports
//! nothing else.
//!
//! Every top-level module is one node. The pure layer is `domain` (which imports nothing of
//! the crate), the engines built on its types (`screening`, `typologies`, `jurisdiction`) and
//! `assessment`, which composes them; they import only each other (and std/serde-level crates).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The pure layer: may import only itself.
const PURE: &[&str] = &[
    "domain",
    "screening",
    "typologies",
    "jurisdiction",
    "assessment",
];

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("src readable") {
        let p = e.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Code before the first `#[cfg(test)] mod`, without `//` comments.
fn code_of(text: &str) -> String {
    let mut code = String::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() == "#[cfg(test)]"
            && lines
                .get(i + 1)
                .is_some_and(|n| n.trim_start().starts_with("mod ") && n.trim_end().ends_with('{'))
        {
            break;
        }
        let line = line.find("//").map_or(*line, |at| &line[..at]);
        code.push_str(line);
        code.push('\n');
    }
    code
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Top-level modules named by `crate::x` paths and `use crate::{x, y::z}` groups.
fn refs(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => start = true,
                    c if start && depth == 1 && (c.is_alphanumeric() || c == '_') => {
                        out.insert(ident_at(&group[i..]).to_string());
                        start = false;
                    }
                    c if c.is_whitespace() => {}
                    _ if depth == 1 => start = false,
                    _ => {}
                }
            }
        } else {
            out.insert(ident_at(rest).to_string());
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let tops: BTreeSet<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            if name == "main.rs" || name == "lib.rs" {
                None
            } else if p.is_dir() {
                Some(name)
            } else {
                name.strip_suffix(".rs").map(str::to_string)
            }
        })
        .collect();
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> =
        tops.iter().map(|t| (t.clone(), BTreeSet::new())).collect();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        if rel.components().count() == 1 && (first == "main.rs" || first == "lib.rs") {
            continue;
        }
        let top = first.strip_suffix(".rs").unwrap_or(first).to_string();
        let code = code_of(&std::fs::read_to_string(&f).unwrap());
        for r in refs(&code) {
            if tops.contains(&r) && r != top {
                g.get_mut(&top).unwrap().insert(r);
            }
        }
    }
    g
}

/// One cycle, if any (depth-first search for a back edge).
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        v: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(v.to_string(), 1);
        path.push(v.to_string());
        for w in g.get(v).into_iter().flatten() {
            match state.get(w.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = path.iter().position(|p| p == w).unwrap();
                    let mut c = path[at..].to_vec();
                    c.push(w.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(w, g, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(v.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for v in g.keys() {
        if state.get(v).copied().unwrap_or(0) == 0
            && let Some(c) = visit(v, g, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_import_cycle_among_modules() {
    let g = graph();
    assert!(
        g.len() > 10 && g.values().map(BTreeSet::len).sum::<usize>() > 30,
        "{g:?}"
    );
    if let Some(cycle) = find_cycle(&g) {
        panic!("import cycle among src/ modules: {}", cycle.join(" -> "));
    }
    // The check can fail: a back edge makes a cycle.
    let mut with_back_edge = g.clone();
    with_back_edge
        .get_mut("config")
        .unwrap()
        .insert("engine".to_string());
    assert!(find_cycle(&with_back_edge).is_some());
}

/// Agents reach remote workers through `protocol::RemoteSteps`, not through the queue module,
/// and the queue module knows nothing of the actors.
#[test]
fn agents_and_the_message_queue_do_not_import_each_other() {
    let g = graph();
    assert!(!g["actors"].contains("mq"), "actors import mq");
    assert!(!g["mq"].contains("actors"), "mq imports actors");
    assert!(!g["mq"].contains("engine"), "mq imports the engine");
    let leaf: Vec<&String> = g["protocol"]
        .iter()
        .filter(|d| !PURE.contains(&d.as_str()))
        .collect();
    assert!(
        leaf.is_empty(),
        "the step protocol is a leaf: imports {leaf:?}"
    );
}

#[test]
fn domain_imports_only_the_pure_layer() {
    let g = graph();
    for m in PURE {
        let outside: Vec<&String> = g[*m]
            .iter()
            .filter(|d| !PURE.contains(&d.as_str()))
            .collect();
        assert!(outside.is_empty(), "{m} (pure layer) imports {outside:?}");
    }
    assert!(
        g["domain"].is_empty(),
        "domain imports {:?} of the crate",
        g["domain"]
    );
    assert!(refs("use crate::{config::X, llm};").contains("llm"));
    assert!(refs("use crate::{a::{b, c}, d};") == ["a", "d"].map(String::from).into());
}
