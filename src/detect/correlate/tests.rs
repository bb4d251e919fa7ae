use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::*;
use crate::rules::correlation::GroupField;
use crate::rules::{Level, RuleMeta};

pub(super) fn correlation(
    kind: CorrelationKind,
    inputs: Vec<CorrelationInput>,
    condition: CountCondition,
    span_secs: u64,
    group_by: &[&str],
) -> Correlation {
    let n = inputs.len();
    let field = |name: &str| GroupField {
        name: name.into(),
        per_input: vec![None; n],
    };
    Correlation {
        meta: RuleMeta {
            id: "c".into(),
            title: "c".into(),
            description: None,
            status: None,
            author: None,
            date: None,
            modified: None,
            level: Level::High,
            tags: vec![],
            references: vec![],
            falsepositives: vec![],
            source: "test".into(),
            ruleset: "custom".into(),
        },
        name: None,
        kind,
        inputs,
        group_by: group_by.iter().map(|g| field(g)).collect(),
        value_field: (kind == CorrelationKind::ValueCount).then(|| field("value")),
        timespan: Duration::from_secs(span_secs),
        condition,
        generate: false,
        line: 1,
        references: vec![],
        alerts: true,
        inactive: vec![],
        tests: vec![],
    }
}

fn rules(n: usize) -> Vec<CorrelationInput> {
    (0..n).map(CorrelationInput::Rule).collect()
}

fn gte(n: u64) -> CountCondition {
    CountCondition {
        gte: Some(n),
        ..Default::default()
    }
}

fn simple(kind: CorrelationKind, inputs: usize, cond: CountCondition, span: u64) -> Correlation {
    correlation(kind, rules(inputs), cond, span, &["user"])
}

pub(super) fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
}

fn ob(input: usize, time: DateTime<Utc>, group: &str, doc: &str) -> Observation {
    Observation {
        corr: 0,
        input,
        time,
        group: vec![group.into()],
        value: None,
        doc_id: doc.into(),
    }
}

fn val(time: DateTime<Utc>, group: &str, value: &str, doc: &str) -> Observation {
    Observation {
        value: Some(value.into()),
        ..ob(0, time, group, doc)
    }
}

fn run_all(corrs: &[Correlation], opts: CorrelatorOptions, obs: Vec<Observation>) -> Vec<Fire> {
    let mut c = Correlator::new(corrs, opts);
    let mut out = Vec::new();
    for o in obs {
        c.observe(o, &mut out);
    }
    c.finish(&mut out);
    out
}

fn run(corr: Correlation, obs: Vec<Observation>) -> Vec<Fire> {
    run_all(&[corr], CorrelatorOptions::default(), obs)
}

fn docs(fires: &[Fire]) -> Vec<(&str, u64)> {
    fires
        .iter()
        .map(|f| (f.trigger.as_str(), f.count))
        .collect()
}

#[test]
fn event_count_window_includes_an_event_exactly_timespan_before() {
    let c = || simple(CorrelationKind::EventCount, 1, gte(3), 60);
    let fires = run(
        c(),
        vec![
            ob(0, t(0), "a", "1"),
            ob(0, t(30), "a", "2"),
            ob(0, t(60), "a", "3"),
        ],
    );
    assert_eq!(docs(&fires), [("3", 3)]);
    assert_eq!((fires[0].first, fires[0].last), (t(0), t(60)));
    assert_eq!(fires[0].group, [("user".to_string(), "a".to_string())]);
    assert_eq!(fires[0].doc_ids, ["1", "2", "3"]);

    let one_ns_later = t(60) + TimeDelta::nanoseconds(1);
    let fires = run(
        c(),
        vec![
            ob(0, t(0), "a", "1"),
            ob(0, t(30), "a", "2"),
            ob(0, one_ns_later, "a", "3"),
        ],
    );
    assert!(fires.is_empty(), "{fires:?}");
}

#[test]
fn gte_fires_once_then_counts_suppressed_and_starts_afresh_after_timespan() {
    let obs = vec![
        ob(0, t(0), "a", "1"),
        ob(0, t(1), "a", "2"),  // fires, fired until 61
        ob(0, t(2), "a", "3"),  // suppressed
        ob(0, t(3), "a", "4"),  // suppressed
        ob(0, t(61), "a", "5"), // suppressed: the span is inclusive
        ob(0, t(62), "a", "6"), // afresh: 1
        ob(0, t(63), "a", "7"), // fires
    ];
    let fires = run(simple(CorrelationKind::EventCount, 1, gte(2), 60), obs);
    assert_eq!(docs(&fires), [("2", 2), ("7", 2)]);
    assert_eq!(fires[0].suppressed_before, 0);
    assert_eq!(fires[1].suppressed_before, 3);
    assert_eq!(fires[1].first, t(62));
    assert_eq!(fires[1].doc_ids, ["6", "7"]);
}

#[test]
fn gt_needs_one_more_than_its_bound() {
    let cond = CountCondition {
        gt: Some(2),
        ..Default::default()
    };
    let obs = (0..3).map(|i| ob(0, t(i), "a", &i.to_string())).collect();
    assert_eq!(
        docs(&run(simple(CorrelationKind::EventCount, 1, cond, 60), obs)),
        [("2", 3)]
    );
}

#[test]
fn lt_is_decided_when_the_window_closes() {
    let cond = CountCondition {
        lt: Some(3),
        ..Default::default()
    };
    let corrs = [simple(CorrelationKind::EventCount, 1, cond, 60)];
    let opts = CorrelatorOptions::default(); // 10 s lateness
    let mut c = Correlator::new(&corrs, opts);
    let mut out = Vec::new();
    c.observe(ob(0, t(0), "a", "1"), &mut out);
    c.observe(ob(0, t(10), "a", "2"), &mut out);
    // Three in b's window (one at its close) fail the condition.
    for (i, s) in [0, 30, 60].into_iter().enumerate() {
        c.observe(ob(0, t(s), "b", &format!("b{i}")), &mut out);
    }
    // The windows close at 60: the watermark must pass it.
    c.advance_to(t(70), &mut out);
    assert!(out.is_empty(), "{out:?}");
    c.advance_to(t(70) + TimeDelta::nanoseconds(1), &mut out);
    assert_eq!(docs(&out), [("2", 2)]);
    assert_eq!((out[0].first, out[0].last), (t(0), t(10)));
    assert_eq!(c.groups(), 0);
    // The next observation opens a new window.
    c.observe(ob(0, t(100), "a", "3"), &mut out);
    c.finish(&mut out);
    assert_eq!(docs(&out), [("2", 2), ("3", 1)]);
}

#[test]
fn eq_and_ranges_are_decided_at_close() {
    let eq = CountCondition {
        eq: Some(2),
        ..Default::default()
    };
    let range = CountCondition {
        gt: Some(1),
        lte: Some(3),
        ..Default::default()
    };
    for (cond, want) in [(eq, vec![2]), (range, vec![2, 3])] {
        // Group `n` gets n events.
        let mut obs = Vec::new();
        for n in 1..=4 {
            for i in 0..n {
                obs.push(ob(0, t(i), &n.to_string(), &format!("{n}.{i}")));
            }
        }
        let fires = run(simple(CorrelationKind::EventCount, 1, cond, 60), obs);
        let counts: Vec<u64> = fires.iter().map(|f| f.count).collect();
        assert_eq!(counts, want, "{cond:?}");
        for f in &fires {
            assert_eq!(f.group[0].1, f.count.to_string());
        }
    }
}

#[test]
fn value_count_counts_distinct_values_and_keeps_at_most_min_count() {
    let corrs = [simple(CorrelationKind::ValueCount, 1, gte(3), 10)];
    let mut c = Correlator::new(&corrs, CorrelatorOptions::default());
    let mut out = Vec::new();
    // Two distinct values per 10 s window, never three: 2000 values seen, at most 3 kept.
    for i in 0..2000 {
        c.observe(
            val(t(i * 6), "a", &format!("v{i}"), &i.to_string()),
            &mut out,
        );
        for g in c.groups[0].map.values() {
            let State::Early(st) = &g.state else { panic!() };
            assert!(st.recent.len() <= 3);
        }
    }
    c.finish(&mut out);
    assert!(out.is_empty(), "{out:?}");

    let fires = run(
        simple(CorrelationKind::ValueCount, 1, gte(3), 10),
        vec![
            val(t(0), "a", "x", "1"),
            val(t(1), "a", "y", "2"),
            val(t(2), "a", "x", "3"),
            val(t(3), "a", "y", "4"),
            Observation {
                value: None,
                ..ob(0, t(4), "a", "ignored")
            },
            val(t(5), "a", "z", "5"),
        ],
    );
    assert_eq!(docs(&fires), [("5", 3)]);
    assert_eq!(fires[0].values, ["x", "y", "z"]);
    assert_eq!(fires[0].doc_ids, ["3", "4", "5"]);
    assert_eq!(fires[0].first, t(2));
}

#[test]
fn value_count_with_an_upper_bound_keeps_values_up_to_the_first_failing_count() {
    let cond = CountCondition {
        lt: Some(3),
        ..Default::default()
    };
    let corrs = [simple(CorrelationKind::ValueCount, 1, cond, 60)];
    let mut c = Correlator::new(&corrs, CorrelatorOptions::default());
    let mut out = Vec::new();
    for i in 0..50 {
        c.observe(val(t(i), "many", &format!("v{i}"), "d"), &mut out);
        c.observe(val(t(i), "few", ["x", "y"][i as usize % 2], "d"), &mut out);
    }
    let State::AtClose(st) = &c.groups[0].map[&vec!["many".to_string()]].state else {
        panic!()
    };
    assert_eq!(st.values.len(), 3);
    c.finish(&mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].group[0].1, "few");
    assert_eq!(
        (out[0].count, &out[0].values[..]),
        (2, &["x".to_string(), "y".to_string()][..])
    );
}

#[test]
fn temporal_fires_with_every_input_in_any_order() {
    let c = || simple(CorrelationKind::Temporal, 3, gte(3), 60);
    let fires = run(
        c(),
        vec![
            ob(2, t(0), "a", "c"),
            ob(0, t(10), "a", "a"),
            ob(1, t(20), "a", "b"),
        ],
    );
    assert_eq!(docs(&fires), [("b", 3)]);
    assert_eq!((fires[0].first, fires[0].last), (t(0), t(20)));
    assert_eq!(fires[0].doc_ids, ["c", "a", "b"]);

    // Input 2 at 0 is out of the window at 61; again at 62 completes it.
    let fires = run(
        c(),
        vec![
            ob(2, t(0), "a", "1"),
            ob(0, t(30), "a", "2"),
            ob(1, t(61), "a", "3"),
            ob(2, t(62), "a", "4"),
        ],
    );
    assert_eq!(docs(&fires), [("4", 3)]);
    assert_eq!(fires[0].first, t(30));
}

#[test]
fn temporal_ordered_fires_only_in_the_listed_order() {
    let c = || simple(CorrelationKind::TemporalOrdered, 3, gte(3), 60);
    let wrong = vec![
        ob(1, t(0), "a", "1"),
        ob(0, t(10), "a", "2"),
        ob(2, t(20), "a", "3"),
    ];
    assert!(run(c(), wrong).is_empty());

    let right = vec![
        ob(0, t(0), "a", "1"),
        ob(1, t(10), "a", "2"),
        ob(2, t(20), "a", "3"),
    ];
    let fires = run(c(), right);
    assert_eq!(docs(&fires), [("3", 3)]);
    assert_eq!(fires[0].doc_ids, ["1", "2", "3"]);
    assert_eq!(fires[0].first, t(0));

    let too_slow = vec![
        ob(0, t(0), "a", "1"),
        ob(1, t(30), "a", "2"),
        ob(2, t(61), "a", "3"),
    ];
    assert!(run(c(), too_slow).is_empty());

    // A later start is kept: 0 at 0, 0 at 40, 1 at 50, 2 at 95 (the chain from 40).
    let restart = vec![
        ob(0, t(0), "a", "1"),
        ob(0, t(40), "a", "2"),
        ob(1, t(50), "a", "3"),
        ob(2, t(95), "a", "4"),
    ];
    let fires = run(c(), restart);
    assert_eq!(docs(&fires), [("4", 3)]);
    assert_eq!(fires[0].first, t(40));
}

#[test]
fn temporal_ordered_counts_equal_timestamps_as_in_order() {
    // Released by doc id: input 2 ("a") first, input 0 ("c") last.
    let same = vec![
        ob(0, t(5), "a", "c"),
        ob(1, t(5), "a", "b"),
        ob(2, t(5), "a", "a"),
    ];
    let fires = run(
        simple(CorrelationKind::TemporalOrdered, 3, gte(3), 60),
        same,
    );
    assert_eq!(docs(&fires), [("c", 3)]);
    assert_eq!(fires[0].doc_ids, ["c", "b", "a"]);
}

#[test]
fn advance_to_releases_what_is_strictly_older_than_now_minus_lateness() {
    let corrs = [simple(CorrelationKind::EventCount, 1, gte(2), 60)];
    let mut c = Correlator::new(&corrs, CorrelatorOptions::default());
    let mut out = Vec::new();
    c.observe(ob(0, t(0), "a", "1"), &mut out);
    c.observe(ob(0, t(1), "a", "2"), &mut out);
    assert!(out.is_empty());
    // The watermark at 1 releases the observation at 0 only: another at 1 may still come.
    c.advance_to(t(11), &mut out);
    assert!(out.is_empty(), "{out:?}");
    c.observe(ob(0, t(1), "a", "0"), &mut out);
    assert_eq!(c.late_total(), 0);
    c.advance_to(t(11) + TimeDelta::nanoseconds(1), &mut out);
    // Released by doc id: "0" before "2".
    assert_eq!(docs(&out), [("0", 2)]);
    assert_eq!(out[0].doc_ids, ["1", "0"]);
    // An observation before the watermark is now late.
    c.observe(ob(0, t(1), "a", "3"), &mut out);
    assert_eq!(c.late_total(), 1);
}

#[test]
fn a_late_observation_is_counted_and_not_used() {
    let corrs = [simple(CorrelationKind::EventCount, 1, gte(2), 60)];
    let mut c = Correlator::new(&corrs, CorrelatorOptions::default());
    let mut out = Vec::new();
    c.observe(ob(0, t(100), "a", "1"), &mut out);
    c.observe(
        ob(0, t(90) - TimeDelta::nanoseconds(1), "a", "late"),
        &mut out,
    );
    assert_eq!(c.late_total(), 1);
    c.finish(&mut out);
    assert!(out.is_empty(), "{out:?}");

    // Exactly at the watermark is not late.
    let mut c = Correlator::new(&corrs, CorrelatorOptions::default());
    c.observe(ob(0, t(100), "a", "1"), &mut out);
    c.observe(ob(0, t(90), "a", "2"), &mut out);
    c.finish(&mut out);
    assert_eq!(c.late_total(), 0);
    assert_eq!(docs(&out), [("1", 2)]);
    assert_eq!(out[0].first, t(90));
}

#[test]
fn reordering_within_the_lateness_gives_the_same_fires_as_sorted_input() {
    let corrs = [
        simple(CorrelationKind::EventCount, 2, gte(3), 10),
        simple(CorrelationKind::TemporalOrdered, 2, gte(2), 10),
        simple(
            CorrelationKind::EventCount,
            1,
            CountCondition {
                lte: Some(2),
                ..Default::default()
            },
            5,
        ),
    ];
    let mut sorted = Vec::new();
    for i in 0..40i64 {
        for (corr, c) in corrs.iter().enumerate() {
            let input = (i % 2) as usize % c.inputs.len();
            let group = ["a", "b"][(i / 3 % 2) as usize];
            sorted.push(Observation {
                corr,
                ..ob(input, t(i / 2 * 3), group, &format!("{}", (i * 7) % 5))
            });
        }
    }
    sorted.sort_by(|a, b| (a.time, &a.doc_id).cmp(&(b.time, &b.doc_id)));
    let want = run_all(&corrs, CorrelatorOptions::default(), sorted.clone());
    assert!(want.len() >= 5, "{want:?}");
    // Reverse each run of 8 (spanning at most 9 s).
    let mut shuffled = Vec::new();
    for chunk in sorted.chunks(8) {
        shuffled.extend(chunk.iter().rev().cloned());
    }
    let mut c = Correlator::new(&corrs, CorrelatorOptions::default());
    let mut got = Vec::new();
    for o in shuffled {
        c.observe(o, &mut got);
    }
    c.finish(&mut got);
    assert_eq!(c.late_total(), 0);
    assert_eq!(got, want);
}

#[test]
fn a_new_group_beyond_max_groups_evicts_the_least_recently_seen() {
    let corrs = [simple(CorrelationKind::EventCount, 1, gte(2), 60)];
    let opts = CorrelatorOptions {
        max_groups: 2,
        lateness: Duration::ZERO,
        ..Default::default()
    };
    let mut c = Correlator::new(&corrs, opts);
    let mut out = Vec::new();
    for (s, g) in [(0, "a"), (1, "b"), (2, "c"), (3, "a"), (4, "c"), (5, "c")] {
        c.observe(ob(0, t(s), g, &format!("{g}{s}")), &mut out);
    }
    c.finish(&mut out);
    // c evicted a, a evicted b (a restarted from nothing), c fired with its two.
    assert_eq!(c.evicted_total(), 2);
    assert_eq!(c.groups(), 2);
    assert_eq!(docs(&out), [("c4", 2)]);
}

#[test]
fn doc_ids_are_bounded_to_the_most_recent() {
    let opts = CorrelatorOptions {
        max_doc_ids: 2,
        ..Default::default()
    };
    let obs = (0..5).map(|i| ob(0, t(i), "a", &i.to_string())).collect();
    let fires = run_all(
        &[simple(CorrelationKind::EventCount, 1, gte(5), 60)],
        opts,
        obs,
    );
    assert_eq!(fires[0].doc_ids, ["3", "4"]);
    assert_eq!(fires[0].count, 5);
}

/// The specification's example: many failed logins followed by a successful login.
#[test]
fn an_event_count_feeds_a_temporal_ordered_correlation() {
    let corrs = [
        correlation(
            CorrelationKind::EventCount,
            rules(1),
            gte(3),
            60,
            &["host", "user"],
        ),
        correlation(
            CorrelationKind::TemporalOrdered,
            vec![CorrelationInput::Correlation(0), CorrelationInput::Rule(1)],
            gte(2),
            3600,
            &["user"],
        ),
    ];
    let failed = |s, user: &str, doc: &str| Observation {
        corr: 0,
        input: 0,
        time: t(s),
        group: vec!["h1".into(), user.into()],
        value: None,
        doc_id: doc.into(),
    };
    let success = |s, user: &str, doc: &str| Observation {
        corr: 1,
        ..ob(1, t(s), user, doc)
    };
    let fires = run_all(
        &corrs,
        CorrelatorOptions::default(),
        vec![
            success(0, "alice", "s0"), // before the failures: not in order
            failed(1, "alice", "f1"),
            failed(2, "alice", "f2"),
            failed(3, "alice", "f3"),
            failed(4, "bob", "b1"),
            success(500, "alice", "s1"),
            success(501, "bob", "s2"),
        ],
    );
    assert_eq!(fires.len(), 2, "{fires:?}");
    assert_eq!((fires[0].corr, fires[0].trigger.as_str()), (0, "f3"));
    let f = &fires[1];
    assert_eq!((f.corr, f.count, f.trigger.as_str()), (1, 2, "s1"));
    assert_eq!(f.group, [("user".to_string(), "alice".to_string())]);
    assert_eq!((f.first, f.last), (t(3), t(500)));
    assert_eq!(f.doc_ids, ["f3", "s1"]);
}

#[test]
fn a_correlation_missing_a_group_name_is_not_fed() {
    let corrs = [
        correlation(CorrelationKind::EventCount, rules(1), gte(1), 60, &["user"]),
        correlation(
            CorrelationKind::Temporal,
            vec![CorrelationInput::Correlation(0)],
            gte(1),
            60,
            &["host"],
        ),
    ];
    let fires = run_all(
        &corrs,
        CorrelatorOptions::default(),
        vec![ob(0, t(0), "a", "1")],
    );
    assert_eq!(docs(&fires), [("1", 1)]);
}

#[test]
fn a_cycle_of_correlations_terminates() {
    let feeds = |other| {
        vec![
            CorrelationInput::Rule(0),
            CorrelationInput::Correlation(other),
        ]
    };
    let corrs = [
        correlation(CorrelationKind::Temporal, feeds(1), gte(1), 60, &["user"]),
        correlation(CorrelationKind::Temporal, feeds(0), gte(1), 60, &["user"]),
    ];
    let fires = run_all(
        &corrs,
        CorrelatorOptions::default(),
        vec![ob(0, t(0), "a", "1")],
    );
    // The observation, then at most one hop per correlation.
    assert!(!fires.is_empty() && fires.len() <= 3, "{fires:?}");
}
