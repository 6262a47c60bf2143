//! Real-data evaluation on `screening-dev.eval.jsonl`: loads every list from the shared data
//! folder, screens every alert and prints a confusion table. Fails when the data is absent
//! (a silent skip would pass a CI run that checked nothing). Set `AML_SHARED_DATA` to point
//! elsewhere (default `../shared/data` next to the crate).

use std::path::PathBuf;
use std::time::Instant;

use aml_triage::domain::alert::Alert;
use aml_triage::domain::facts::MatchClass;
use aml_triage::screening::ScreeningLists;

fn list_paths(dir: &std::path::Path) -> Vec<PathBuf> {
    ["ofac_sdn", "ofac_consolidated", "un", "pep"]
        .iter()
        .map(|d| dir.join(d))
        .filter(|p| p.exists())
        .collect()
}

#[test]
fn screening_dev_eval_has_no_misses_and_clears_most_false_alerts() {
    let dir = crate::support::shared_data();
    let t0 = Instant::now();
    let lists = ScreeningLists::load_paths(&list_paths(&dir)).expect("lists load");
    eprintln!(
        "loaded {} entries in {:?}: {:?}; {} warnings",
        lists.entry_count(),
        t0.elapsed(),
        lists.versions(),
        lists.warnings().len()
    );
    for w in lists.warnings().iter().take(5) {
        eprintln!("  warning: {w}");
    }
    let text = std::fs::read_to_string(dir.join("screening-dev.eval.jsonl")).expect("eval file");
    let (mut tp, mut fneg, mut fp, mut tn) = (0, 0, 0, 0);
    let (mut confirmed, mut potential_only, mut unverif_only) = (0, 0, 0);
    let (mut sanc_conf, mut sanc_total, mut pep_conf, mut pep_total) = (0, 0, 0, 0);
    let mut misses = Vec::new();
    let mut kept_false = Vec::new();
    let verbose = std::env::var("SCREEN_VERBOSE").is_ok();
    let t1 = Instant::now();
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("json line");
        let alert = Alert::from_value(v["alert"].clone()).expect("valid alert");
        let suspicious = v["expected"]["suspicious"].as_bool().unwrap_or(false);
        let typology = v["expected"]["typology"].as_str().unwrap_or("").to_string();
        let out = lists.screen(&alert);
        n += 1;
        let blocked = !out.all_discounted();
        match (suspicious, blocked) {
            (true, true) => tp += 1,
            (true, false) => {
                fneg += 1;
                misses.push((
                    alert.alert_id.clone(),
                    alert.customer.name.clone(),
                    out.clone(),
                ));
            }
            (false, true) => {
                fp += 1;
                kept_false.push((
                    alert.alert_id.clone(),
                    alert.customer.name.clone(),
                    out.clone(),
                ));
            }
            (false, false) => tn += 1,
        }
        if suspicious {
            let best = out.hits.iter().map(|h| h.class).max();
            match best {
                Some(MatchClass::Confirmed) => confirmed += 1,
                Some(MatchClass::Potential) => potential_only += 1,
                Some(MatchClass::Unverifiable) => unverif_only += 1,
                _ => {}
            }
            let conf = best == Some(MatchClass::Confirmed);
            if !conf && verbose {
                eprintln!(
                    "TRUE-NOT-CONFIRMED {} {:?}",
                    alert.alert_id, alert.customer.name
                );
                for h in out
                    .hits
                    .iter()
                    .filter(|h| h.class != MatchClass::Discounted)
                {
                    eprintln!("   {:?} {} {:?}", h.class, h.evidence_id, h.explanation);
                }
            }
            if typology == "pep_match" {
                pep_total += 1;
                pep_conf += usize::from(conf);
            } else {
                sanc_total += 1;
                sanc_conf += usize::from(conf);
            }
        }
    }
    let per_alert = t1.elapsed() / n.max(1) as u32;
    eprintln!(
        "screened {n} alerts in {:?} ({per_alert:?} per alert, debug build)",
        t1.elapsed()
    );
    eprintln!("                     blocked/escalated  cleared");
    eprintln!("  true match   (200)  {tp:>17}  {fneg:>7}");
    eprintln!("  false match  (400)  {fp:>17}  {tn:>7}");
    eprintln!(
        "  false alerts cleared: {:.1}%",
        100.0 * tn as f64 / (fp + tn).max(1) as f64
    );
    eprintln!(
        "  true matches: {confirmed} Confirmed, {potential_only} Potential, {unverif_only} Unverifiable at best; \
         sanctions {sanc_conf}/{sanc_total} Confirmed, PEP {pep_conf}/{pep_total} Confirmed"
    );
    for (id, name, out) in &misses {
        eprintln!("MISS {id} {name:?}");
        for h in &out.hits {
            eprintln!("   {:?} {} {:?}", h.class, h.evidence_id, h.explanation);
        }
    }
    if verbose {
        for (id, name, out) in &kept_false {
            eprintln!("KEPT-FALSE {id} {name:?}");
            for h in out
                .hits
                .iter()
                .filter(|h| h.class != MatchClass::Discounted)
            {
                eprintln!("   {:?} {} {:?}", h.class, h.evidence_id, h.explanation);
            }
        }
    }
    assert_eq!(fneg, 0, "every true match must keep a non-discounted hit");
    assert!(
        tn as f64 >= 0.9 * (fp + tn) as f64,
        "at least 90% of false alerts must clear the matcher, got {tn}/{}",
        fp + tn
    );
}
