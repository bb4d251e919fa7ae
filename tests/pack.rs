//! Quality bar of the default detection pack, checked on every build.

use std::collections::HashSet;

use tripline::alert::threat_from_tags;
use tripline::rules::{run_tests, Level, Rule, RulesConfig, AUDIT_TRAIL_FILE};

/// The whole pack, the opt-in audit-trail rules included.
fn whole_pack() -> RulesConfig {
    RulesConfig {
        audit_trail: true,
        ..RulesConfig::default()
    }
}

fn in_audit_trail(r: &Rule) -> bool {
    r.meta.source.ends_with(&format!("/{AUDIT_TRAIL_FILE}"))
}

#[test]
fn audit_trail_rules_load_only_when_asked_and_are_informational() {
    let default = RulesConfig::default().load(&[], true);
    assert!(default.errors.is_empty(), "{:?}", default.errors);
    assert!(!default.rules.iter().any(in_audit_trail));
    let all = whole_pack().load(&[], true);
    assert!(all.errors.is_empty(), "{:?}", all.errors);
    let trail: Vec<&Rule> = all.rules.iter().filter(|r| in_audit_trail(r)).collect();
    assert!(!trail.is_empty(), "no rules in {AUDIT_TRAIL_FILE}");
    assert_eq!(all.rules.len(), default.rules.len() + trail.len());
    for r in trail {
        assert_eq!(
            r.meta.level,
            Level::Informational,
            "{}: audit-trail rules are informational",
            r.meta.title
        );
    }
}

#[test]
fn the_pack_loads_has_at_least_30_rules_and_every_embedded_test_passes() {
    let loaded = whole_pack().load(&[], true);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert!(
        loaded.rules.len() >= 30,
        "only {} rules",
        loaded.rules.len()
    );
    let (ran, failures) = run_tests(&loaded.rules);
    let shown: Vec<String> = failures.iter().map(|f| f.to_string()).collect();
    assert!(failures.is_empty(), "{}", shown.join("\n"));
    assert!(ran >= 2 * loaded.rules.len());
}

#[test]
fn every_rule_is_complete_and_tagged_with_attack_ids() {
    let loaded = whole_pack().load(&[], true);
    let mut ids = HashSet::new();
    let mut titles = HashSet::new();
    for r in &loaded.rules {
        let m = &r.meta;
        let name = format!("{} ({})", m.title, m.source);
        assert!(ids.insert(m.id.clone()), "duplicate id {name}");
        assert!(titles.insert(m.title.clone()), "duplicate title {name}");
        assert!(
            m.description.as_deref().is_some_and(|d| d.len() >= 20),
            "{name}: description"
        );
        assert!(!m.falsepositives.is_empty(), "{name}: falsepositives");
        assert!(r.output.is_some(), "{name}: output");
        assert!(
            r.tests.iter().any(|t| t.expect_match),
            "{name}: no positive test"
        );
        assert!(
            r.tests.iter().any(|t| !t.expect_match),
            "{name}: no negative test"
        );
        if !in_audit_trail(r) {
            assert_ne!(
                m.level,
                Level::Informational,
                "{name}: informational rules belong in {AUDIT_TRAIL_FILE} only"
            );
        }
        let threat = threat_from_tags(&m.tags).unwrap_or_else(|| panic!("{name}: no ATT&CK tags"));
        assert!(
            threat["tactic"]["id"]
                .as_array()
                .is_some_and(|a| !a.is_empty()),
            "{name}: no known tactic tag"
        );
        assert!(
            threat["technique"]["id"]
                .as_array()
                .is_some_and(|a| !a.is_empty()),
            "{name}: no technique tag"
        );
        // Every technique and sub-technique is named in alerts (an unknown one is named by its
        // id, which tells an analyst nothing).
        for t in [&threat["technique"], &threat["technique"]["subtechnique"]] {
            let ids = t["id"].as_array().cloned().unwrap_or_default();
            let names = t["name"].as_array().cloned().unwrap_or_default();
            for (id, n) in ids.iter().zip(&names) {
                assert_ne!(
                    id, n,
                    "{name}: technique {id} has no name in src/alert/attack.rs"
                );
            }
        }
        for t in &m.tags {
            // Audit-trail rules are hunting material, and may say so.
            if in_audit_trail(r) && t == "detection.threat-hunting" {
                continue;
            }
            let ok = t.starts_with("attack.")
                && (t[7..].chars().all(|c| c.is_ascii_lowercase() || c == '-')
                    || regex_like_technique(&t[7..]));
            assert!(
                ok,
                "{name}: tag `{t}` is neither a tactic name nor a technique id"
            );
        }
    }
}

/// `t1234` or `t1234.001`.
fn regex_like_technique(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: &[u8]| r.iter().all(u8::is_ascii_digit);
    match b.len() {
        5 => b[0] == b't' && digits(&b[1..]),
        9 => b[0] == b't' && digits(&b[1..5]) && b[5] == b'.' && digits(&b[6..]),
        _ => false,
    }
}

/// Exports often drop bookkeeping fields (SIEM normalisers, some Fluent Bit and Logstash
/// filters): every positive embedded test of the pack must still match with `stage` removed,
/// with `responseStatus` removed (unless the rule is about the status, a denial), with
/// `objectRef.apiGroup` removed, with `stageTimestamp` removed, and with all of them removed.
#[test]
fn every_positive_test_still_matches_when_an_export_drops_bookkeeping_fields() {
    let loaded = RulesConfig::default().load(&[], true);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    type Strip = fn(&mut serde_json::Map<String, serde_json::Value>);
    let variants: [(&str, Strip); 5] = [
        ("no stage", |o| {
            o.remove("stage");
        }),
        ("no responseStatus", |o| {
            o.remove("responseStatus");
        }),
        ("no objectRef.apiGroup", |o| {
            if let Some(r) = o.get_mut("objectRef").and_then(|r| r.as_object_mut()) {
                r.remove("apiGroup");
            }
        }),
        ("no stageTimestamp", |o| {
            o.remove("stageTimestamp");
        }),
        ("none of them", |o| {
            for k in ["stage", "responseStatus", "stageTimestamp"] {
                o.remove(k);
            }
            if let Some(r) = o.get_mut("objectRef").and_then(|r| r.as_object_mut()) {
                r.remove("apiGroup");
            }
        }),
    ];
    let mut checked = 0;
    let mut failures = Vec::new();
    for rule in &loaded.rules {
        for t in rule.tests.iter().filter(|t| t.expect_match) {
            let event: serde_json::Value = serde_json::from_str(&t.event_json).expect("test event");
            let code = event
                .pointer("/responseStatus/code")
                .and_then(|c| c.as_i64());
            for (what, strip) in &variants {
                let denial = code.is_some_and(|c| c >= 400);
                if denial && (what.contains("responseStatus") || *what == "none of them") {
                    continue; // the status is what such a rule is about
                }
                let mut stripped = event.clone();
                if let Some(o) = stripped.as_object_mut() {
                    strip(o);
                }
                if stripped == event {
                    continue;
                }
                let mut variant = rule.clone();
                let mut test = t.clone();
                test.name = format!("{} ({what})", t.name);
                test.event_json = stripped.to_string();
                variant.tests = vec![test];
                let (ran, failed) = run_tests(std::slice::from_ref(&variant));
                checked += ran;
                failures.extend(failed.iter().map(|f| f.to_string()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!(
        "{checked} stripped variants of the positive tests of {} rules still match",
        loaded.rules.len()
    );
    assert!(
        checked > 3 * loaded.rules.len(),
        "only {checked} variants checked"
    );
}

/// The pack's correlation rules: complete like its rules, active, and every rule they count
/// is in the pack.
#[test]
fn every_correlation_is_complete_and_tagged() {
    let loaded = RulesConfig::default().load(&[], true);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert!(
        loaded.correlations.len() >= 5,
        "only {} correlations",
        loaded.correlations.len()
    );
    for c in &loaded.correlations {
        let m = &c.meta;
        let name = format!("{} ({})", m.title, m.source);
        assert!(c.is_active(), "{name}: inactive {:?}", c.inactive);
        assert!(
            uuid_like(&m.id),
            "{name}: the id must be a UUID, got {:?}",
            m.id
        );
        assert!(
            m.description.as_deref().is_some_and(|d| d.len() >= 20),
            "{name}: description"
        );
        assert!(!m.falsepositives.is_empty(), "{name}: falsepositives");
        assert!(m.level > Level::Informational, "{name}: level");
        let threat = threat_from_tags(&m.tags).unwrap_or_else(|| panic!("{name}: no ATT&CK tags"));
        assert!(
            threat["tactic"]["id"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
                && threat["technique"]["id"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty()),
            "{name}: needs a tactic and a technique"
        );
        assert!(!c.inputs.is_empty(), "{name}: no inputs");
        assert!(
            c.tests.iter().any(|t| t.expect_match) && c.tests.iter().any(|t| !t.expect_match),
            "{name}: needs a positive and a negative embedded test"
        );
    }
    // Their embedded tests: event sequences through the rules and a fresh correlator.
    let set = tripline::rules::RuleSet::new(loaded.rules.clone())
        .with_correlations(loaded.correlations.clone());
    let (ran, failures) = tripline::detect::run_correlation_tests(&set);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(ran >= 2 * loaded.correlations.len(), "only {ran} tests");
}

fn uuid_like(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}
