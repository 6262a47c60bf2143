//! Screening speed: one customer (name and aliases, plus the alert's claimed matches) against
//! every loaded list.
//!
//! ```sh
//! cargo bench --bench screening -- --data ../shared/data
//! ```

use std::path::PathBuf;
use std::time::Instant;

use aml_triage::Alert;
use aml_triage::screening::ScreeningLists;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args
        .iter()
        .position(|a| a == "--data")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
    else {
        eprintln!(
            "usage: cargo bench --bench screening -- --data DIR (the folder with the lists and screening-dev.eval.jsonl)"
        );
        return;
    };
    let started = Instant::now();
    let lists = ScreeningLists::load_paths(std::slice::from_ref(&dir)).expect("lists load");
    println!(
        "loaded {} entries from {} list file(s) in {:.2?}: {}",
        lists.entry_count(),
        lists.lists().len(),
        started.elapsed(),
        lists.versions().join(", ")
    );
    let text = std::fs::read_to_string(dir.join("screening-dev.eval.jsonl")).expect("eval file");
    let alerts: Vec<Alert> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            Alert::from_value(v["alert"].clone()).expect("alert")
        })
        .collect();
    let unclaimed: Vec<Alert> = alerts
        .iter()
        .cloned()
        .map(|mut a| {
            a.screening = None;
            a
        })
        .collect();
    for (label, set) in [("with claims", &alerts), ("re-screen only", &unclaimed)] {
        let rounds = 20;
        let t = Instant::now();
        let mut hits = 0usize;
        for _ in 0..rounds {
            for a in set.iter() {
                hits += lists.screen(a).hits.len();
            }
        }
        let per = t.elapsed() / (rounds * set.len()) as u32;
        println!(
            "{label}: {per:?} per customer against {} entries ({} hits per round)",
            lists.entry_count(),
            hits / rounds
        );
    }
}
