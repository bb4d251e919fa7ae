//! Quality bar of the default detection pack, checked on every build.

use std::collections::HashSet;

use tripline::alert::threat_from_tags;
use tripline::rules::{run_tests, Level, RulesConfig};

#[test]
fn the_pack_loads_has_at_least_30_rules_and_every_embedded_test_passes() {
    let loaded = RulesConfig::default().load(&[], true);
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
    let loaded = RulesConfig::default().load(&[], true);
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
        assert_ne!(
            m.level,
            Level::Informational,
            "{name}: informational rules do not belong in the pack"
        );
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
        for t in &m.tags {
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
