//! Throughput of decoding and detection, next to the cost of merely validating the same JSON
//! (`serde_json::from_slice::<IgnoredAny>`).
//!
//! Two corpora are built from real event shapes: `../shared/data/real` when present (set
//! `TRIPLINE_SHARED_DATA` to point elsewhere), otherwise the bundled `samples/audit.log`.
//! - `request_response`: events as logged at `RequestResponse` level, bodies included.
//! - `metadata`: the same events at `Metadata` level (bodies removed).
//!
//! Run: `cargo bench --bench engine`. After criterion's output, a summary table prints events/s,
//! MB/s and the ratio of decode+detect to IgnoredAny for each corpus.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, BenchmarkId, Criterion, Throughput};
use serde_json::Value;

#[path = "support/corpus.rs"]
#[allow(dead_code, reason = "its validator is the daemon benchmark's")]
mod corpus;

use tripline::alert::{
    write_document, write_event_document, AlertTemplate, AuditFields, EventPart,
};
use tripline::detect::Detector;
use tripline::event::decode_value_into;
use tripline::event::redact::write_redacted_event;
use tripline::event::Event;
use tripline::rules::LazyRegex;
use tripline::rules::{RuleSet, RulesConfig};

/// Target corpus size: large enough to leave the caches, small enough for a 2-core machine.
const CORPUS_BYTES: usize = 16 << 20;

/// A number from the environment, if set and valid.
fn env_num<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("TRIPLINE_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    dir.join("real").is_dir().then_some(dir)
}

/// Real events, one JSON object per line, as written.
fn seed_events() -> (Vec<String>, String) {
    let mut files = Vec::new();
    let origin;
    if let Some(dir) = data_dir() {
        origin = format!("{}/real", dir.display());
        for f in [
            "openshift/audit_in.log",
            "openshift/audit_small.log",
            "audit2rbac/demo.log",
        ] {
            files.push(dir.join("real").join(f));
        }
    } else {
        origin = "samples/audit.log (../shared/data not found)".to_string();
        files.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/audit.log"));
    }
    let mut events = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        events.extend(
            text.lines()
                .filter(|l| serde_json::from_str::<serde_json::Map<String, Value>>(l).is_ok())
                .map(String::from),
        );
    }
    assert!(!events.is_empty(), "no seed events found in {origin}");
    (events, origin)
}

/// The shared recipe at `TRIPLINE_BENCH_CORPUS_KB` (to see what the caches change) or
/// [`CORPUS_BYTES`].
fn build_corpus(seed: &[String], metadata_only: bool) -> Vec<u8> {
    let size = env_num::<usize>("TRIPLINE_BENCH_CORPUS_KB").map_or(CORPUS_BYTES, |kb| kb << 10);
    corpus::build_corpus(seed, metadata_only, size)
}

/// Lines split with memchr, as the file reader does.
fn lines(corpus: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', corpus).filter_map(move |nl| {
        let line = &corpus[start..nl];
        start = nl + 1;
        (!line.is_empty()).then_some(line)
    })
}

fn ignored_any(corpus: &[u8]) -> usize {
    let mut n = 0;
    for line in lines(corpus) {
        if serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok() {
            n += 1;
        }
    }
    n
}

/// Calls `f` with each event decoded from `text` (one line).
fn each_decoded(text: &str, mut f: impl FnMut(&Event<'_>)) {
    decode_value_into(text, &mut |ev| {
        if let Ok(ev) = ev {
            f(ev)
        }
    });
}

/// Calls `f` with each line of the corpus that is text and each event decoded from it, as the
/// daemon reads them.
fn each_event(corpus: &[u8], mut f: impl FnMut(&str, &Event<'_>)) {
    for line in lines(corpus) {
        if let Ok(text) = tripline::event::utf8(line) {
            each_decoded(text, |ev| f(text, ev));
        }
    }
}

fn decode_only(corpus: &[u8]) -> usize {
    let mut n = 0;
    each_event(corpus, |_, ev| {
        black_box(ev.verb());
        n += 1;
    });
    n
}

fn decode_detect(corpus: &[u8], rules: &RuleSet) -> (usize, usize) {
    let mut detector = Detector::new(rules, Some("bench".into()));
    let (mut n, mut alerts) = (0, 0);
    each_event(corpus, |_, ev| {
        n += 1;
        detector.detect(ev, &mut |a| {
            black_box(&a);
            alerts += 1;
        });
    });
    (n, alerts)
}

/// Rule matching only, without building alert documents (to separate the two costs).
fn decode_match(corpus: &[u8], rules: &RuleSet) -> usize {
    let mut hits = Vec::new();
    let mut n = 0;
    each_event(corpus, |_, ev| {
        hits.clear();
        rules.matching_into(ev, &mut hits);
        n += hits.len();
    });
    n
}

/// The rule hits of each event ([`RuleSet::hits`], the stateless step alone), summed.
fn decode_hits(corpus: &[u8], rules: &RuleSet) -> usize {
    let mut n = 0;
    let mut hits = tripline::rules::Hits::new();
    each_event(corpus, |_, ev| {
        rules.hits(ev, &mut hits);
        n += hits.len();
    });
    n
}

/// The best time of [`decode_match`] with each of `sets`, the sets taking turns for `ROUNDS`
/// rounds (`rounds` by default), so that a slower moment of the machine hits all of them.
fn interleaved_match_times(
    corpus: &[u8],
    sets: &[(String, RuleSet)],
    rounds: usize,
) -> Vec<Duration> {
    let mut best = vec![Duration::MAX; sets.len()];
    for _ in 0..env_num::<usize>("ROUNDS").unwrap_or(rounds) {
        for (b, (_, set)) in best.iter_mut().zip(sets) {
            *b = (*b).min(best_of(1, || {
                black_box(decode_match(corpus, set));
            }));
        }
    }
    best
}

/// The default pack's stateless rules: without its first-seen rules and without the rules that
/// only feed correlations (and without the correlations).
fn full_pack() -> RuleSet {
    let loaded = RulesConfig::default().load(&[], true);
    assert!(
        loaded.errors.is_empty(),
        "default pack has errors: {:?}",
        loaded.errors
    );
    RuleSet::new(
        loaded
            .rules
            .into_iter()
            .filter(|r| r.alerts && r.first_seen.is_none())
            .collect(),
    )
}

/// The whole default pack: its stateless rules, its first-seen rules and its correlations.
fn stateful_pack() -> RuleSet {
    let cfg = RulesConfig::default();
    let loaded = cfg.load(&[], true);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded.into_rule_set(&cfg)
}

/// Falco's own `k8s_audit_rules.yaml` (from the shared data), loaded as `rules.paths` loads it,
/// alone: the Falco front end's cost. `None` without the shared data.
fn falco_pack() -> Option<RuleSet> {
    let file = data_dir()?.join("falco/k8s_audit_rules.yaml");
    let cfg = RulesConfig {
        builtin: false,
        paths: vec![file],
        ..RulesConfig::default()
    };
    let loaded = cfg.load(&[], false);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    Some(loaded.into_rule_set(&cfg))
}

/// The whole pack without its first-seen rules (to tell their cost from the correlations').
fn correlations_pack() -> RuleSet {
    let cfg = RulesConfig::default();
    let mut loaded = cfg.load(&[], true);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded.rules.retain(|r| r.first_seen.is_none());
    loaded.into_rule_set(&cfg)
}

/// `decode_detect` with the correlations running (a fresh correlator per pass, every window
/// closed at the end as `scan` does).
fn decode_detect_stateful(corpus: &[u8], rules: &RuleSet) -> (usize, usize) {
    let mut detector =
        Detector::new(rules, Some("bench".into())).with_correlator(Detector::correlator_for(rules));
    let (mut n, mut alerts) = (0, 0);
    each_event(corpus, |_, ev| {
        n += 1;
        detector.detect(ev, &mut |a| {
            black_box(&a);
            alerts += 1;
        });
    });
    detector.finish(&mut |a| {
        black_box(&a);
        alerts += 1;
    });
    (n, alerts)
}

struct Corpus {
    name: &'static str,
    bytes: Vec<u8>,
    events: usize,
}

fn corpora() -> Vec<Corpus> {
    let (seed, _) = seed_events();
    [("request_response", false), ("metadata", true)]
        .into_iter()
        .map(|(name, meta)| {
            let bytes = build_corpus(&seed, meta);
            let events = ignored_any(&bytes);
            Corpus {
                name,
                bytes,
                events,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let rules = full_pack();
    for corpus in corpora() {
        let mut g = c.benchmark_group(corpus.name);
        g.throughput(Throughput::Bytes(corpus.bytes.len() as u64));
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(4));
        g.bench_function(BenchmarkId::new("ignored_any", corpus.events), |b| {
            b.iter(|| ignored_any(black_box(&corpus.bytes)))
        });
        g.bench_function(BenchmarkId::new("decode", corpus.events), |b| {
            b.iter(|| decode_only(black_box(&corpus.bytes)))
        });
        g.bench_function(
            BenchmarkId::new("decode_match_full_pack", corpus.events),
            |b| b.iter(|| decode_match(black_box(&corpus.bytes), &rules)),
        );
        g.bench_function(
            BenchmarkId::new("decode_detect_full_pack", corpus.events),
            |b| b.iter(|| decode_detect(black_box(&corpus.bytes), &rules)),
        );
        g.finish();
    }
}

/// Best of `runs` wall-clock times.
fn best_of(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn summary() {
    let (_, origin) = seed_events();
    let rules = full_pack();
    let stateful = stateful_pack();
    let correlations = correlations_pack();
    let falco = falco_pack();
    let runs = 7;
    println!(
        "\nSummary (best of {runs} interleaved runs; corpus from {origin}; {} rules)",
        rules.len()
    );
    println!(
        "{:<18} {:<26} {:>12} {:>10} {:>16}",
        "corpus", "mode", "events/s", "MB/s", "vs IgnoredAny"
    );
    let only = std::env::var("TRIPLINE_BENCH_CORPUS")
        .ok()
        .filter(|c| !c.is_empty());
    for corpus in corpora() {
        if only.as_deref().is_some_and(|o| o != corpus.name) {
            continue;
        }
        let mb = corpus.bytes.len() as f64 / 1e6;
        let (mut alerts, mut matches, mut stateful_alerts, mut falco_alerts) = (0, 0, 0, 0);
        // The modes take turns, so that a slower moment of a shared machine hits all of them.
        let mut best = [Duration::MAX; 7];
        for _ in 0..runs {
            let times = [
                best_of(1, || {
                    black_box(ignored_any(&corpus.bytes));
                }),
                best_of(1, || {
                    black_box(decode_only(&corpus.bytes));
                }),
                best_of(1, || matches = decode_match(&corpus.bytes, &rules)),
                best_of(1, || alerts = decode_detect(&corpus.bytes, &rules).1),
                best_of(1, || {
                    black_box(decode_detect_stateful(&corpus.bytes, &correlations));
                }),
                best_of(1, || {
                    stateful_alerts = decode_detect_stateful(&corpus.bytes, &stateful).1
                }),
                match &falco {
                    Some(f) => best_of(1, || falco_alerts = decode_detect(&corpus.bytes, f).1),
                    None => Duration::MAX,
                },
            ];
            for (b, t) in best.iter_mut().zip(times) {
                *b = (*b).min(t);
            }
        }
        let base = best[0];
        for (mode, d) in [
            "ignored_any",
            "decode",
            "decode+match (no alerts)",
            "decode+detect (full pack)",
            "  +correlations",
            "  +correlations+first-seen",
            "decode+detect (Falco rules)",
        ]
        .into_iter()
        .zip(best)
        {
            if d == Duration::MAX {
                continue;
            }
            let s = d.as_secs_f64();
            println!(
                "{:<18} {:<26} {:>12.0} {:>10.1} {:>15.2}x",
                corpus.name,
                mode,
                corpus.events as f64 / s,
                mb / s,
                base.as_secs_f64() / s
            );
        }
        println!(
            "{:<18} {} events, {:.1} MB, {:.0} bytes/event, {} rule matches and {} alerts per pass",
            "",
            corpus.events,
            mb,
            corpus.bytes.len() as f64 / corpus.events as f64,
            matches,
            alerts
        );
        println!(
            "{:<18} with the stateful rules ({} rules, {} correlations): {} alerts per pass, {:.2}x the stateless pack's throughput",
            "",
            stateful.len(),
            stateful.correlations().len(),
            stateful_alerts,
            best[3].as_secs_f64() / best[5].as_secs_f64()
        );
        if let Some(f) = &falco {
            println!(
                "{:<18} with Falco's k8s_audit_rules.yaml instead ({} rules, rule_matching first): {} alerts per pass",
                "",
                f.len(),
                falco_alerts
            );
        }
    }
}

/// The rules of `rules` that name no verb (the index cannot skip them), and the others.
fn split_by_verb(rules: &RuleSet) -> (RuleSet, RuleSet) {
    let part = |any_verb: bool| {
        RuleSet::new(
            (0..rules.len())
                .filter(|&i| rules.is_any_verb(i) == any_verb)
                .map(|i| rules.rules()[i].clone())
                .collect(),
        )
    };
    (part(true), part(false))
}

/// With `TRIPLINE_BENCH_PER_RULE=1`: the matching cost of each rule alone on the metadata
/// corpus, most expensive first (for tuning the pack).
fn per_rule() {
    let loaded = RulesConfig::default().load(&[], true);
    let corpus = corpora().remove(1);
    let base = best_of(3, || {
        black_box(decode_only(&corpus.bytes));
    });
    let mut rows = Vec::new();
    for r in loaded.rules {
        let title = r.meta.title.clone();
        let set = RuleSet::new(vec![r]);
        let d = best_of(3, || {
            black_box(decode_match(&corpus.bytes, &set));
        });
        rows.push((d.saturating_sub(base), title));
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    // The whole pack, and the pack without the rules the index cannot narrow by verb.
    let all = full_pack();
    let (_, indexed) = split_by_verb(&all);
    let empty = RuleSet::new(Vec::new());
    for (name, set) in [
        ("full pack", &all),
        ("verb-indexed rules only", &indexed),
        ("no rules", &empty),
    ] {
        let d = best_of(3, || {
            black_box(decode_match(&corpus.bytes, set));
        });
        println!(
            "{:>8.2} ns/event  {name} ({} rules)",
            d.saturating_sub(base).as_nanos() as f64 / corpus.events as f64,
            set.len()
        );
    }
    for (d, t) in rows.iter().take(15) {
        println!(
            "{:>8.2} ns/event  {t}",
            d.as_nanos() as f64 / corpus.events as f64
        );
    }
}

criterion_group!(benches, bench);

/// With `TRIPLINE_BENCH_PROFILE=<mode>`, only that, on the metadata corpus (to run under a
/// profiler); nothing else runs. `ignored`, `decode`, `match`, `throttle` (matching with
/// throttling, no alert documents) and `detect` (the stateless pack, alerts built) repeat a
/// pass for `SECS` seconds (default 10) or `PASSES` passes and print the time per event; so do
/// `match-any-verb` and `match-indexed` (only the rules that name no verb, or only the others)
/// and `match-one` (rule number `RULE` alone); `stateful` and `correlations` detect with the
/// whole pack, or the pack without its first-seen rules, and their correlator; `redact` writes
/// each redacted event and `eventdoc` each events-flow document. `stats` prints the rule
/// candidates per event by verb and resource; `alertparts` times the steps of building alerts.
/// `scripts/instructions.sh` counts the instructions of a mode's passes under callgrind.
///
/// For the stateful pack's cost: `hits` and `hits-stateful` run the stateless step alone
/// ([`RuleSet::hits`]) with the stateless or the whole pack, `match-stateful` matches with the
/// whole pack, `hits-per-rule` prints how many events each rule of the whole pack matches,
/// `extra-rules` the matching cost each rule the stateless pack lacks adds to it (`ROUNDS`
/// interleaved passes, the minimum), and `drop-one` the cost of each stateless rule (the pack
/// with and without it). `match-title` matches with the rules whose title contains `TITLE`;
/// `eval-title` runs them on the corpus's first 200 events decoded once, `REPS` times over
/// (their cost without decoding).
fn profile(mode: &str) {
    let rules = full_pack();
    // `match-one`: rule number `RULE` alone (none if out of range).
    let one = RuleSet::new(
        env_num::<usize>("RULE")
            .and_then(|i| rules.rules().get(i).cloned())
            .into_iter()
            .collect(),
    );
    let (any_verb, indexed) = split_by_verb(&rules);
    // `match-title`: the rules of the whole pack whose title contains `TITLE`.
    let titled = {
        let t = std::env::var("TITLE").unwrap_or_default();
        RuleSet::new(
            stateful_pack()
                .rules()
                .iter()
                .filter(|r| !t.is_empty() && r.meta.title.contains(&t))
                .cloned()
                .collect(),
        )
    };
    // `hits-plus`: the stateless pack and the stateful pack's rules whose title contains
    // `TITLE` (what those rules add to the stateless pack's matching).
    let plus = {
        let t = std::env::var("TITLE").unwrap_or_default();
        let ids: std::collections::HashSet<_> =
            rules.rules().iter().map(|r| r.meta.id.clone()).collect();
        let mut v = rules.rules().to_vec();
        v.extend(
            stateful_pack()
                .rules()
                .iter()
                .filter(|r| !ids.contains(&r.meta.id) && !t.is_empty() && r.meta.title.contains(&t))
                .cloned(),
        );
        RuleSet::new(v)
    };
    let falco = falco_pack();
    let stateful = stateful_pack();
    let correlations = correlations_pack();
    let first_seen = {
        let cfg = RulesConfig::default();
        let mut loaded = cfg.load(&[], true);
        loaded.rules.retain(|r| r.first_seen.is_some());
        loaded.correlations.clear();
        loaded.into_rule_set(&cfg)
    };
    // `CORPUS=0`: request_response; the metadata corpus by default.
    let corpus = corpora().remove(env_num("CORPUS").unwrap_or(1));
    // Regular expressions compile on first use: compile them now, outside the measured
    // functions, so that counts and times are of matching alone.
    for set in [
        &rules,
        &one,
        &titled,
        &plus,
        &stateful,
        &correlations,
        &first_seen,
        &indexed,
        &any_verb,
    ]
    .into_iter()
    .chain(falco.as_ref())
    {
        set.regexes().iter().for_each(LazyRegex::compile);
    }
    let t = Instant::now();
    let mut passes = 0u32;
    let secs: u64 = env_num("SECS").unwrap_or(10);
    let max_passes: u32 = env_num("PASSES").unwrap_or(u32::MAX);
    while passes < max_passes && t.elapsed() < Duration::from_secs(secs) {
        match mode {
            "decode" => {
                black_box(decode_only(&corpus.bytes));
            }
            "ignored" => {
                black_box(ignored_any(&corpus.bytes));
            }
            "match" => {
                black_box(decode_match(&corpus.bytes, &rules));
            }
            "detect" => {
                black_box(decode_detect(&corpus.bytes, &rules));
            }
            "match-indexed" => {
                black_box(decode_match(&corpus.bytes, &indexed));
            }
            "match-any-verb" => {
                black_box(decode_match(&corpus.bytes, &any_verb));
            }
            "eval-title" => {
                // The `TITLE` rules on each of the corpus's first 200 events, 2,000 times
                // over (the decoded events kept): the rules' cost without decoding.
                let lines: Vec<&str> = lines(&corpus.bytes)
                    .take(200)
                    .filter_map(|l| std::str::from_utf8(l).ok())
                    .collect();
                let mut owned = Vec::new();
                for l in &lines {
                    tripline::event::decode_value_into(l, &mut |ev| {
                        if ev.is_ok() {
                            owned.push(l.to_string());
                        }
                    });
                }
                let evs: Vec<_> = owned
                    .iter()
                    .filter_map(|l| tripline::event::Event::parse(l).ok())
                    .collect();
                let t = Instant::now();
                let mut n = 0usize;
                let mut hits = Vec::new();
                for _ in 0..env_num::<usize>("REPS").unwrap_or(2000) {
                    for ev in &evs {
                        hits.clear();
                        titled.matching_into(ev, &mut hits);
                        n += hits.len();
                    }
                }
                println!(
                    "{:.1} ns per event, {} rules, {n} hits",
                    t.elapsed().as_nanos() as f64 / (2000.0 * evs.len() as f64),
                    titled.len()
                );
                return;
            }
            "match-title" => {
                black_box(decode_match(&corpus.bytes, &titled));
            }
            "match-one" => {
                black_box(decode_match(&corpus.bytes, &one));
            }
            "falco" => {
                let falco = falco.as_ref().expect("the shared data's Falco rules");
                black_box(decode_detect(&corpus.bytes, falco));
            }
            "falco-stats" => {
                let falco = falco.as_ref().expect("the shared data's Falco rules");
                let (mut n, mut cands) = (0usize, 0usize);
                each_event(&corpus.bytes, |_, ev| {
                    n += 1;
                    cands += falco.candidate_count(ev);
                });
                println!(
                    "{n} events, {:.2} Falco candidates/event of {} rules",
                    cands as f64 / n as f64,
                    falco.len()
                );
                let mut by_rule = std::collections::BTreeMap::<String, usize>::new();
                each_event(&corpus.bytes, |_, ev| {
                    let mut c = Vec::new();
                    falco.candidates_into(ev, &mut c);
                    for i in c {
                        *by_rule.entry(falco.meta(i).title.clone()).or_default() += 1;
                    }
                });
                let mut v: Vec<_> = by_rule.into_iter().collect();
                v.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
                for (t, n) in v.iter().take(12) {
                    println!("  {n:7} {t}");
                }
                return;
            }
            "stats" => {
                let (mut n, mut cands) = (0usize, 0usize);
                let mut by_verb = std::collections::BTreeMap::<String, (usize, usize)>::new();
                each_event(&corpus.bytes, |_, ev| {
                    n += 1;
                    let c = rules.candidate_count(ev);
                    cands += c;
                    let e = by_verb
                        .entry(format!("{:?}/{:?}", ev.verb(), ev.resource()))
                        .or_default();
                    e.0 += 1;
                    e.1 = c;
                });
                println!(
                    "{n} events, {:.2} candidates/event",
                    cands as f64 / n as f64
                );
                let mut v: Vec<_> = by_verb.into_iter().collect();
                v.sort_by_key(|(_, (k, c))| std::cmp::Reverse(k * c));
                for (k, (cnt, c)) in v.iter().take(25) {
                    println!("{cnt:6} x {c:3} candidates  {k}");
                }
                for (gate, group) in rules.gate_groups() {
                    let titles: Vec<&str> = group
                        .iter()
                        .map(|&i| rules.rules()[i].meta.title.as_str())
                        .collect();
                    println!("gate {gate}: {titles:?}");
                }
                return;
            }
            "per-rule" => {
                per_rule();
                return;
            }
            "alertparts" => {
                // The events that alert, and the cost of each step of building their alerts.
                let mut raws: Vec<String> = Vec::new();
                let mut detector = Detector::new(&rules, Some("bench".into()));
                each_event(&corpus.bytes, |text, ev| {
                    let mut fired = false;
                    detector.detect(ev, &mut |_| fired = true);
                    if fired {
                        raws.push(text.to_string());
                    }
                });
                let reps: u32 = env_num("REPS").unwrap_or(20);
                let per_alert = |label: &str, f: &mut dyn FnMut(&str)| {
                    let t = Instant::now();
                    for _ in 0..reps {
                        raws.iter().for_each(|r| f(r));
                    }
                    let ns = t.elapsed().as_nanos() as f64 / (raws.len() as f64 * reps as f64);
                    println!("{label}: {ns:.0} ns per alerting event");
                };
                // Each step on its own, in the order `Detector::detect` takes them.
                per_alert("decode", &mut |r| {
                    each_decoded(r, |ev| {
                        black_box(ev);
                    })
                });
                let mut matches = Vec::new();
                per_alert("decode, match with throttling", &mut |r| {
                    each_decoded(r, |ev| {
                        matches.clear();
                        rules.matches_into(ev, &mut matches);
                        black_box(&matches);
                    })
                });
                per_alert("decode, write the redacted event", &mut |r| {
                    each_decoded(r, |ev| {
                        let mut out = Vec::new();
                        black_box(write_redacted_event(ev, &mut out));
                    })
                });
                per_alert("decode, render every matching rule's message", &mut |r| {
                    each_decoded(r, |ev| {
                        let mut hits = Vec::new();
                        rules.matching_into(ev, &mut hits);
                        for i in hits {
                            black_box(rules.rules()[i].render_output_redacted(ev, &[]));
                        }
                    })
                });
                let template = AlertTemplate::new(&rules.rules()[0].meta);
                per_alert("decode, write an ECS document (event as `{}`)", &mut |r| {
                    each_decoded(r, |ev| {
                        let fields = AuditFields::of_event(ev, None);
                        let part = EventPart {
                            fields: &fields,
                            message: "message",
                            cluster_name: Some("bench"),
                            suppressed: 0,
                            audit: b"{}",
                        };
                        let mut doc = Vec::new();
                        write_document(&mut doc, &template, &part);
                        black_box(doc);
                    })
                });
                let mut alerts = 0;
                per_alert("decode, detect, drop the alerts", &mut |r| {
                    each_decoded(r, |ev| {
                        detector.detect(ev, &mut |a| {
                            alerts += 1;
                            black_box(a);
                        });
                    });
                });
                println!(
                    "{:.2} alerts per alerting event",
                    alerts as f64 / (raws.len() as f64 * reps as f64)
                );
                return;
            }
            "match-stateful" => {
                black_box(decode_match(&corpus.bytes, &stateful));
            }
            "hits-plus" => {
                black_box(decode_hits(&corpus.bytes, &plus));
            }
            "hits-stateful" => {
                let n = decode_hits(&corpus.bytes, &stateful);
                if passes == 0 {
                    println!("{n} hits per pass");
                }
            }
            "hits-per-rule" => {
                let mut per = vec![0usize; stateful.len()];
                let mut n = 0;
                each_event(&corpus.bytes, |_, ev| {
                    n += 1;
                    let mut hits = tripline::rules::Hits::new();
                    stateful.hits(ev, &mut hits);
                    for &i in &hits {
                        per[i] += 1;
                    }
                });
                println!("{n} events");
                for (i, c) in per.iter().enumerate() {
                    if *c > 0 {
                        let r = &stateful.rules()[i];
                        println!(
                            "{c:>7} {} alerts={} first_seen={} inputs={}",
                            r.meta.title,
                            r.alerts,
                            r.first_seen.is_some(),
                            !stateful.correlation_inputs(i).is_empty()
                        );
                    }
                }
                return;
            }
            "drop-one" => {
                // The matching cost of each rule of the stateless pack: the pack's time less
                // the pack's time without the rule (min of interleaved passes), top 25.
                let all = rules.rules().to_vec();
                let mut sets = vec![("whole pack".to_string(), RuleSet::new(all.clone()))];
                for (i, r) in all.iter().enumerate() {
                    let mut v = all.clone();
                    v.remove(i);
                    sets.push((r.meta.title.clone(), RuleSet::new(v)));
                }
                let best = interleaved_match_times(&corpus.bytes, &sets, 10);
                let n = corpus.events as f64;
                let mut rows: Vec<_> = best
                    .iter()
                    .zip(&sets)
                    .skip(1)
                    .map(|(b, (t, _))| ((best[0].as_nanos() as f64 - b.as_nanos() as f64) / n, t))
                    .collect();
                rows.sort_by(|a, b| b.0.total_cmp(&a.0));
                println!(
                    "{:>8.1} ns/event  whole pack",
                    best[0].as_nanos() as f64 / n
                );
                for (d, t) in rows.iter().take(25) {
                    println!("{d:>+8.1} ns/event  {t}");
                }
                return;
            }
            "extra-rules" => {
                // Each rule of the stateful pack that the stateless pack lacks: the matching
                // cost it adds to the stateless pack (min of interleaved passes).
                let base_titles: std::collections::HashSet<_> =
                    rules.rules().iter().map(|r| r.meta.id.clone()).collect();
                let extra: Vec<_> = stateful
                    .rules()
                    .iter()
                    .filter(|r| !base_titles.contains(&r.meta.id))
                    .cloned()
                    .collect();
                let mut sets = vec![("stateless".to_string(), rules.rules().to_vec())];
                for r in &extra {
                    let mut v = rules.rules().to_vec();
                    v.push(r.clone());
                    sets.push((r.meta.title.clone(), v));
                }
                let mut all = rules.rules().to_vec();
                all.extend(extra.iter().cloned());
                sets.push(("all extra".to_string(), all));
                sets.push(("stateless again".to_string(), rules.rules().to_vec()));
                let sets: Vec<_> = sets
                    .into_iter()
                    .map(|(t, v)| (t, RuleSet::new(v)))
                    .collect();
                let best = interleaved_match_times(&corpus.bytes, &sets, 15);
                let n = corpus.events as f64;
                for (b, (t, _)) in best.iter().zip(&sets) {
                    println!(
                        "{:>8.1} ns/event {:>+7.1}  {t}",
                        b.as_nanos() as f64 / n,
                        (b.as_nanos() as f64 - best[0].as_nanos() as f64) / n
                    );
                }
                return;
            }
            "hits" => {
                let n = decode_hits(&corpus.bytes, &rules);
                if passes == 0 {
                    println!("{n} hits per pass");
                }
            }
            "match-first-seen" => {
                let n = decode_match(&corpus.bytes, &first_seen);
                if passes == 0 {
                    println!("{n} first-seen matches per pass");
                }
            }
            "detect-first-seen" => {
                black_box(decode_detect_stateful(&corpus.bytes, &first_seen));
            }
            "stateful" => {
                black_box(decode_detect_stateful(&corpus.bytes, &stateful));
            }
            "correlations" => {
                black_box(decode_detect_stateful(&corpus.bytes, &correlations));
            }
            // The events flow's parts: the redacted event alone, then the whole document.
            "redact" => {
                let mut out = Vec::new();
                each_event(&corpus.bytes, |_, ev| {
                    out.clear();
                    black_box(write_redacted_event(ev, &mut out));
                });
            }
            "eventdoc" => {
                let (mut n, mut extra, mut most) = (0usize, 0usize, 0usize);
                // The events flow's template, as the daemon's workers use it.
                let template = AlertTemplate::for_events();
                each_event(&corpus.bytes, |_, ev| {
                    let doc = write_event_document(&template, ev, Some("bench"));
                    n += 1;
                    // What the document adds to the event (its ECS fields).
                    extra += doc.len() - ev.raw().len().min(doc.len());
                    most = most.max(doc.len() - ev.raw().len().min(doc.len()));
                    black_box(doc);
                });
                if passes == 0 {
                    println!(
                        "{n} documents, {} bytes more than their event on average, {most} at most",
                        extra / n.max(1)
                    );
                }
            }
            "throttle" => {
                let mut out = Vec::new();
                let mut n = 0;
                each_event(&corpus.bytes, |_, ev| {
                    out.clear();
                    rules.matches_into(ev, &mut out);
                    n += out.len();
                });
                black_box(n);
            }
            _ => {
                black_box(decode_detect(&corpus.bytes, &rules));
            }
        }
        passes += 1;
    }
    let per = t.elapsed().as_secs_f64() / passes.max(1) as f64;
    println!(
        "{mode}: {:.0} ns/event ({passes} passes of {} events)",
        per * 1e9 / corpus.events as f64,
        corpus.events
    );
}

fn main() {
    if let Ok(mode) = std::env::var("TRIPLINE_BENCH_PROFILE") {
        return profile(&mode);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
    if std::env::var_os("TRIPLINE_BENCH_PER_RULE").is_some() {
        per_rule();
    }
}
