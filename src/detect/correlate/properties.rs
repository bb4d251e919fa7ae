//! The engine against a naive reference that keeps every observation and recomputes each
//! window from all of them.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::tests::{correlation, t};
use super::*;

/// What both sides must agree on about a fire.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    corr: usize,
    group: Vec<(String, String)>,
    count: u64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    trigger: String,
    suppressed_before: u64,
}

impl From<&Fire> for Seen {
    fn from(f: &Fire) -> Seen {
        Seen {
            corr: f.corr,
            group: f.group.clone(),
            count: f.count,
            first: f.first,
            last: f.last,
            trigger: f.trigger.clone(),
            suppressed_before: f.suppressed_before,
        }
    }
}

#[derive(Default)]
struct RefGroup {
    /// Since the group last started afresh (or the open window's observations).
    kept: Vec<Observation>,
    fired_until: Option<DateTime<Utc>>,
    suppressed: u64,
    close: Option<DateTime<Utc>>,
}

struct Reference<'a> {
    corrs: &'a [Correlation],
    groups: BTreeMap<(usize, Vec<String>), RefGroup>,
    out: Vec<Seen>,
}

fn span(c: &Correlation) -> TimeDelta {
    TimeDelta::from_std(c.timespan).unwrap()
}

impl Reference<'_> {
    fn seen(&mut self, o: &Observation, count: usize, first: DateTime<Utc>, suppressed: u64) {
        self.out.push(Seen {
            corr: o.corr,
            group: vec![("g".to_string(), o.group[0].clone())],
            count: count as u64,
            first,
            last: o.time,
            trigger: o.doc_id.clone(),
            suppressed_before: suppressed,
        });
    }

    /// Closes the windows closing before `limit` (all if `None`), by (close, correlation, group).
    fn close_before(&mut self, limit: Option<DateTime<Utc>>) {
        let mut due: Vec<(DateTime<Utc>, usize, Vec<String>)> = self
            .groups
            .iter()
            .filter_map(|((c, g), st)| st.close.map(|close| (close, *c, g.clone())))
            .filter(|(close, _, _)| limit.is_none_or(|l| *close < l))
            .collect();
        due.sort();
        for (_, c, g) in due {
            let st = self.groups.remove(&(c, g)).unwrap();
            let corr = &self.corrs[c];
            let count = if corr.kind == CorrelationKind::ValueCount {
                let mut values: Vec<_> = st.kept.iter().map(|o| o.value.clone()).collect();
                values.sort();
                values.dedup();
                values.len()
            } else {
                st.kept.len()
            };
            if count > 0 && corr.condition.holds(count as u64) {
                let first = st.kept[0].time;
                let last = st.kept.last().unwrap().clone();
                self.seen(&last, count, first, 0);
            }
        }
    }

    fn apply(&mut self, o: &Observation) {
        let corr = &self.corrs[o.corr];
        if corr.kind == CorrelationKind::ValueCount && o.value.is_none() {
            return;
        }
        let span = span(corr);
        let from = o.time - span;
        let cond = corr.condition;
        let n = corr.inputs.len();
        let key = (o.corr, o.group.clone());
        let g = self.groups.entry(key.clone()).or_default();
        let hit: Option<(usize, DateTime<Utc>, u64)> = match corr.kind {
            CorrelationKind::EventCount | CorrelationKind::ValueCount
                if cond.only_lower_bounds() =>
            {
                if let Some(until) = g.fired_until {
                    if o.time <= until {
                        g.suppressed += 1;
                        return;
                    }
                    g.fired_until = None;
                    g.kept.clear();
                }
                g.kept.push(o.clone());
                let window: Vec<&Observation> = g.kept.iter().filter(|k| k.time >= from).collect();
                let (count, first) = if corr.kind == CorrelationKind::EventCount {
                    (window.len(), window[0].time)
                } else {
                    let mut latest: HashMap<&Option<String>, DateTime<Utc>> = HashMap::new();
                    for k in &window {
                        let e = latest.entry(&k.value).or_insert(k.time);
                        *e = (*e).max(k.time);
                    }
                    (latest.len(), *latest.values().min().unwrap())
                };
                if cond.holds(count as u64) {
                    g.fired_until = Some(o.time + span);
                    g.kept.clear();
                    Some((count, first, std::mem::take(&mut g.suppressed)))
                } else {
                    None
                }
            }
            CorrelationKind::EventCount | CorrelationKind::ValueCount => {
                if g.close.is_none() {
                    g.close = Some(o.time + span);
                }
                g.kept.push(o.clone());
                None
            }
            CorrelationKind::Temporal => {
                g.kept.push(o.clone());
                let mut latest: BTreeMap<usize, DateTime<Utc>> = BTreeMap::new();
                for k in g.kept.iter().filter(|k| k.time >= from) {
                    let e = latest.entry(k.input).or_insert(k.time);
                    *e = (*e).max(k.time);
                }
                let count = latest.len();
                if count > 0 && cond.holds(count as u64) {
                    g.kept.clear();
                    Some((count, *latest.values().min().unwrap(), 0))
                } else {
                    None
                }
            }
            CorrelationKind::TemporalOrdered => {
                g.kept.push(o.clone());
                let window: Vec<&Observation> = g.kept.iter().filter(|k| k.time >= from).collect();
                // Per step: (time of the step, start) of every chain completing it.
                let mut chains: Vec<Vec<(DateTime<Utc>, DateTime<Utc>)>> = vec![Vec::new(); n];
                for j in 0..n {
                    for k in window.iter().filter(|k| k.input == j) {
                        let start = if j == 0 {
                            Some(k.time)
                        } else {
                            chains[j - 1]
                                .iter()
                                .filter(|(at, _)| *at <= k.time)
                                .map(|(_, s)| *s)
                                .max()
                        };
                        if let Some(s) = start {
                            chains[j].push((k.time, s));
                        }
                    }
                }
                let best = chains.iter().rposition(|c| !c.is_empty());
                match best {
                    Some(step) if cond.holds(step as u64 + 1) => {
                        let first = chains[step].iter().map(|c| c.1).max().unwrap();
                        g.kept.clear();
                        Some((step + 1, first, 0))
                    }
                    _ => None,
                }
            }
        };
        if let Some((count, first, suppressed)) = hit {
            self.seen(o, count, first, suppressed);
        }
    }
}

fn reference(
    corrs: &[Correlation],
    lateness: TimeDelta,
    arrivals: &[Observation],
) -> (Vec<Seen>, u64) {
    let mut max_seen: Option<DateTime<Utc>> = None;
    let mut late = 0;
    let mut kept = Vec::new();
    for o in arrivals {
        if max_seen.is_some_and(|m| o.time < m - lateness) {
            late += 1;
            continue;
        }
        max_seen = Some(max_seen.map_or(o.time, |m| m.max(o.time)));
        kept.push(o.clone());
    }
    kept.sort_by(|a, b| {
        (a.time, &a.doc_id, a.corr, a.input, &a.group, &a.value)
            .cmp(&(b.time, &b.doc_id, b.corr, b.input, &b.group, &b.value))
    });
    let mut r = Reference {
        corrs,
        groups: BTreeMap::new(),
        out: Vec::new(),
    };
    for o in &kept {
        r.close_before(Some(o.time));
        r.apply(o);
    }
    r.close_before(None);
    (r.out, late)
}

fn condition() -> impl Strategy<Value = CountCondition> {
    (0..8u8, 0..5u64, 0..4u64).prop_map(|(which, a, b)| {
        let mut c = CountCondition::default();
        match which {
            0 => c.gte = Some(a),
            1 => c.gt = Some(a),
            2 => c.lt = Some(a + 1),
            3 => c.lte = Some(a),
            4 => c.eq = Some(a),
            5 => (c.gt, c.lte) = (Some(a), Some(a + b)),
            6 => (c.gte, c.lt) = (Some(a), Some(a + b + 1)),
            _ => (c.gte, c.lte) = (Some(a.max(1)), Some(a + b)),
        }
        c
    })
}

fn correlations() -> impl Strategy<Value = Vec<Correlation>> {
    let one = (0..4u8, 1..4usize, condition(), any::<bool>(), 0..3usize).prop_map(
        |(kind, inputs, cond, default, span)| {
            let kind = [
                CorrelationKind::EventCount,
                CorrelationKind::ValueCount,
                CorrelationKind::Temporal,
                CorrelationKind::TemporalOrdered,
            ][kind as usize];
            let temporal = matches!(
                kind,
                CorrelationKind::Temporal | CorrelationKind::TemporalOrdered
            );
            let cond = if temporal && default {
                CountCondition {
                    gte: Some(inputs as u64),
                    ..Default::default()
                }
            } else {
                cond
            };
            let inputs = (0..inputs).map(CorrelationInput::Rule).collect();
            correlation(kind, inputs, cond, [5, 10, 20][span], &["g"])
        },
    );
    prop::collection::vec(one, 1..4)
}

/// (correlation, input, group, value, time step, time offset, doc, arrival delay)
type Raw = (usize, usize, u8, u8, i64, u8, u8, u8);

fn stream() -> impl Strategy<Value = Vec<Raw>> {
    prop::collection::vec(
        (
            0..4usize,
            0..4usize,
            0..3u8,
            0..5u8,
            0..13i64,
            0..8u8,
            0..12u8,
            0..100u8,
        ),
        0..70,
    )
}

fn observations(corrs: &[Correlation], raw: &[Raw]) -> Vec<Observation> {
    let mut timed: Vec<(DateTime<Utc>, usize, Observation)> = raw
        .iter()
        .enumerate()
        .map(|(i, &(c, input, group, value, step, offset, doc, delay))| {
            let corr = c % corrs.len();
            // Multiples of 5 s (the timespans' boundaries), and just around them.
            let ns = TimeDelta::nanoseconds(1);
            let time = t(step * 5)
                + match offset {
                    0 => ns,
                    1 => -ns,
                    2 => TimeDelta::seconds(2),
                    _ => TimeDelta::zero(),
                };
            let obs = Observation {
                corr,
                input: input % corrs[corr].inputs.len(),
                time,
                group: vec![["a", "b", "c"][group as usize].to_string()],
                value: (value < 4).then(|| ["w", "x", "y", "z"][value as usize].to_string()),
                doc_id: format!("d{doc}"),
            };
            // Within the lateness (10 s) mostly; now and then far beyond it.
            let delay = if delay < 92 { i64::from(delay % 9) } else { 30 };
            (time + TimeDelta::seconds(delay), i, obs)
        })
        .collect();
    timed.sort_by_key(|(arrival, i, _)| (*arrival, *i));
    timed.into_iter().map(|(_, _, o)| o).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn the_engine_fires_as_the_naive_reference(corrs in correlations(), raw in stream()) {
        let arrivals = observations(&corrs, &raw);
        let opts = CorrelatorOptions::default();
        let mut engine = Correlator::new(&corrs, opts);
        let mut out = Vec::new();
        for o in arrivals.iter().cloned() {
            engine.observe(o, &mut out);
        }
        engine.finish(&mut out);
        let got: Vec<Seen> = out.iter().map(Seen::from).collect();
        let (want, late) =
            reference(&corrs, TimeDelta::from_std(opts.lateness).unwrap(), &arrivals);
        prop_assert_eq!(engine.late_total(), late);
        prop_assert_eq!(got, want);
    }

    /// A snapshot taken anywhere in the stream, written out as JSON and restored into a new
    /// engine, gives the fires the uninterrupted engine gives.
    #[test]
    fn a_restored_snapshot_fires_as_the_uninterrupted_engine(
        corrs in correlations(),
        raw in stream(),
        cut in 0..70usize,
    ) {
        let arrivals = observations(&corrs, &raw);
        let cut = cut.min(arrivals.len());
        let opts = CorrelatorOptions::default();
        let mut whole = Correlator::new(&corrs, opts);
        let mut want = Vec::new();
        for o in arrivals.iter().cloned() {
            whole.observe(o, &mut want);
        }
        whole.finish(&mut want);

        let mut first = Correlator::new(&corrs, opts);
        let mut got = Vec::new();
        for o in arrivals[..cut].iter().cloned() {
            first.observe(o, &mut got);
        }
        // Written from the live engine, as the daemon does; read as a copy.
        let text = first.snapshot_json().unwrap();
        prop_assert_eq!(
            serde_json::to_value(first.snapshot()).unwrap(),
            serde_json::from_slice::<serde_json::Value>(&text).unwrap()
        );
        drop(first);
        let mut second = Correlator::new(&corrs, opts);
        let restored = second.restore(serde_json::from_slice(&text).unwrap());
        prop_assert_eq!(restored, corrs.len());
        for o in arrivals[cut..].iter().cloned() {
            second.observe(o, &mut got);
        }
        second.finish(&mut got);
        prop_assert_eq!(second.late_total(), whole.late_total());
        prop_assert_eq!(got, want);
    }
}
