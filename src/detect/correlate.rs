//! The stateful engine for Sigma correlation rules ([`Correlation`]): it takes the matches of
//! the referenced rules as [`Observation`]s and returns a [`Fire`] each time a correlation holds
//! for a group.
//!
//! # Event time and lateness
//!
//! Windows are in event time. The engine keeps a watermark: the latest event time observed
//! minus [`CorrelatorOptions::lateness`] (or later, when [`Correlator::advance_to`] moves it).
//! An observation older than the watermark when it arrives is *late*: it is counted in
//! [`Correlator::late_total`] and otherwise ignored. The others wait in a reorder buffer and are
//! *released* into the windows in the order (time, doc id, correlation, input, group, value)
//! once their time is strictly before the watermark. Strictly: an observation whose time equals
//! the watermark is not late, so one could still arrive, and releasing the first one early would
//! make the order of equal times depend on arrival. So the windows see the observations in event
//! time order, ties broken by doc id, and the fires do not depend on the arrival order of
//! observations within the lateness (nor on how calls are interleaved when several threads feed
//! one engine under a lock). [`Correlator::advance_to`] moves the watermark without an
//! observation (an idle daemon); [`Correlator::finish`] releases everything and closes every
//! window (the end of a scan).
//!
//! Windows that are decided when they close (conditions with an upper bound) close in the same
//! event-time sequence: a window closing at `c` closes after every observation at `c` or before
//! and before any later one; windows closing at the same time close in the order (correlation,
//! group values).
//!
//! # Groups
//!
//! State is kept per correlation and group (the `group-by` values). A correlation holds at most
//! [`CorrelatorOptions::max_groups`] groups: a new group beyond that evicts the least recently
//! seen one with its state (counted in [`Correlator::evicted_total`]).
//!
//! # When each kind fires
//!
//! All windows are inclusive: a window of `timespan` ending at `t` holds the observations at
//! `t - timespan` through `t`.
//!
//! - `event_count` and `value_count` with only lower bounds (`gt`, `gte`): at each released
//!   observation `t`, the window is `[t - timespan, t]`; the group fires when the count (events,
//!   or distinct values of the field) first reaches the condition's minimum. The group keeps only
//!   what the condition needs: its latest `min_count` events, or at most `min_count` distinct
//!   values each with its latest event, so its memory is bounded by the condition, not the
//!   traffic (and each observation costs O(`min_count`)). After a fire at `f`, observations up to
//!   `f + timespan` (inclusive) are only counted: they are the next fire's `suppressed_before`.
//!   The first observation after that starts the group afresh, with an empty window.
//! - `event_count` and `value_count` with an upper bound (`lt`, `lte`, `eq`, or a range): decided
//!   when the window closes. A group's window opens at its first released observation `t0` and
//!   holds the observations up to `t0 + timespan` inclusive; when the watermark passes that
//!   (or at [`Correlator::finish`]), the group fires if the count satisfies the condition, and is
//!   dropped. The next observation opens a new window. A group with no observation has no window
//!   and never fires (`lt: 5` does not fire for the users who did nothing). Distinct values are
//!   kept up to the smallest count that fails the upper bound.
//! - `temporal`: the group keeps the latest observation of each input. At each released
//!   observation `t`, the count is the number of inputs whose latest observation is in
//!   `[t - timespan, t]`; the group fires when the condition holds (by default every input), and
//!   starts afresh.
//! - `temporal_ordered`: the inputs must match in the listed order within `timespan`. For each
//!   step `i` the group keeps the chain completing steps `0..=i` that started latest; an
//!   observation of input `i` at `t` extends the chain of step `i - 1` if that step's time is at
//!   or before `t`. Equal timestamps count as in order, whichever of them is released first.
//!   Chains that started before `t - timespan` are dropped. The count is the number of steps of
//!   the longest chain; the group fires when the condition holds (by default when the last step
//!   completes), and starts afresh.
//!
//! An observation of a `value_count` without a value (the field is missing) is ignored.
//!
//! # Chaining
//!
//! A correlation can count the fires of another ([`CorrelationInput::Correlation`]). When
//! correlation `j` fires, the fire is observed, at once and without passing the reorder buffer,
//! by each correlation `k` that lists `j`: at the fire's `last` time, with the fire's trigger as
//! its doc id, and with the group (and `value_count` value) of the same names in the fire's
//! group; if one of `k`'s names is missing, `k` does not observe it. Both fires are returned.
//! Fires of a window that closes arrive when it closes, after later observations may have been
//! released: a correlation fed by one with an upper bound should use a `timespan` that allows
//! for it. Chains deeper than the number of correlations are cut, so a cycle cannot loop.
//!
//! # Determinism
//!
//! The same set of observations that are not late gives the same fires, in the same order.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::rules::correlation::{Correlation, CorrelationInput, CorrelationKind, CountCondition};

/// Bounds and tolerances of a [`Correlator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorrelatorOptions {
    /// How far behind the latest event time an observation may arrive and still count.
    pub lateness: Duration,
    /// Groups kept per correlation; beyond, the least recently seen group is evicted.
    pub max_groups: usize,
    /// Doc ids reported per fire.
    pub max_doc_ids: usize,
    /// Distinct values reported per `value_count` fire.
    pub max_values: usize,
}

impl Default for CorrelatorOptions {
    fn default() -> Self {
        CorrelatorOptions {
            lateness: Duration::from_secs(10),
            max_groups: 10_000,
            max_doc_ids: 32,
            max_values: 32,
        }
    }
}

/// A match of one input of one correlation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Index of the correlation in the slice given to [`Correlator::new`].
    pub corr: usize,
    /// Position of the input in [`Correlation::inputs`].
    pub input: usize,
    pub time: DateTime<Utc>,
    /// One value per `group_by` entry, in order; then the event's cluster, if it named one
    /// ([`CLUSTER_FIELD`]).
    pub group: Vec<String>,
    /// The field value a `value_count` counts.
    pub value: Option<String>,
    /// The content-hash id of the event.
    pub doc_id: String,
}

/// The name under which an observation's cluster ([`crate::event::Event::cluster`]) is
/// reported in a fire's group. An observation's group holds one value per `group_by` entry,
/// then the cluster when its event named one.
pub const CLUSTER_FIELD: &str = "orchestrator.cluster.name";

/// A correlation that held for a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fire {
    pub corr: usize,
    /// `group_by` names and values; last, [`CLUSTER_FIELD`] and the cluster when the
    /// observations named one.
    pub group: Vec<(String, String)>,
    /// Events (`event_count`), distinct values (`value_count`) or inputs matched (`temporal`,
    /// `temporal_ordered`: steps completed in order).
    pub count: u64,
    /// `value_count`: the distinct values, at most `max_values` (the most recent ones).
    pub values: Vec<String>,
    /// Time of the oldest contributing observation.
    pub first: DateTime<Utc>,
    /// Time of the latest contributing observation.
    pub last: DateTime<Utc>,
    /// The contributing observations' doc ids, oldest first, at most `max_doc_ids` (the most
    /// recent ones).
    pub doc_ids: Vec<String>,
    /// Doc id of the observation that made it fire (for a window decided at its close: the
    /// window's latest observation).
    pub trigger: String,
    /// Observations of this group counted but not alerted since the previous fire.
    pub suppressed_before: u64,
}

/// The stateful engine. Not thread-safe by itself; the reorder buffer makes it safe to feed
/// from several threads under one lock.
pub struct Correlator {
    plans: Vec<Plan>,
    groups: Vec<Groups>,
    opts: CorrelatorOptions,
    lateness: TimeDelta,
    watermark: Option<DateTime<Utc>>,
    /// The latest event time observed or advanced to (not by [`Correlator::advance_idle`]).
    latest: Option<DateTime<Utc>>,
    pending: BinaryHeap<Reverse<Pending>>,
    /// Windows decided at their close: (close time, correlation, group).
    closes: BTreeSet<(DateTime<Utc>, usize, Vec<String>)>,
    seq: u64,
    tick: u64,
    late_total: u64,
    evicted_total: u64,
}

/// What the engine needs of a correlation, resolved once.
struct Plan {
    kind: CorrelationKind,
    mode: Mode,
    condition: CountCondition,
    span: TimeDelta,
    inputs: usize,
    group_names: Vec<String>,
    value_name: Option<String>,
    /// The (correlation, input position) pairs that observe this correlation's fires.
    feeds: Vec<(usize, usize)>,
    /// [`Correlation::fingerprint`]: which saved state is this correlation's.
    fingerprint: String,
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// A count with only lower bounds: fires as soon as `min` is reached.
    Early {
        min: usize,
    },
    /// A count with an upper bound: decided at the window's close; distinct values are kept
    /// up to `cap` (a count that fails the condition).
    AtClose {
        cap: usize,
    },
    Temporal,
    Ordered,
}

/// An observation in the reorder buffer, ordered by release order.
struct Pending {
    obs: Observation,
    /// Arrival order: breaks ties between identical observations only.
    seq: u64,
}

impl Pending {
    #[allow(clippy::type_complexity)]
    fn key(
        &self,
    ) -> (
        DateTime<Utc>,
        &str,
        usize,
        usize,
        &[String],
        Option<&str>,
        u64,
    ) {
        let o = &self.obs;
        (
            o.time,
            &o.doc_id,
            o.corr,
            o.input,
            &o.group,
            o.value.as_deref(),
            self.seq,
        )
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// The groups of one correlation, with their recency for eviction.
#[derive(Default)]
struct Groups {
    map: HashMap<Vec<String>, Slot>,
    /// Last-seen tick to group: the first entry is the least recently seen group.
    recency: BTreeMap<u64, Vec<String>>,
}

struct Slot {
    touched: u64,
    state: State,
}

impl Groups {
    /// Marks `key` seen at `tick`, creating it with `make` if absent. A new group beyond `max`
    /// evicts the least recently seen one, which is returned.
    fn touch(
        &mut self,
        key: &[String],
        tick: u64,
        max: usize,
        make: impl FnOnce() -> State,
    ) -> Option<(Vec<String>, State)> {
        if let Some(slot) = self.map.get_mut(key) {
            self.recency.remove(&slot.touched);
            slot.touched = tick;
            self.recency.insert(tick, key.to_vec());
            return None;
        }
        let mut evicted = None;
        if self.map.len() >= max.max(1) {
            if let Some((_, old)) = self.recency.pop_first() {
                evicted = self.map.remove(&old).map(|slot| (old, slot.state));
            }
        }
        self.map.insert(
            key.to_vec(),
            Slot {
                touched: tick,
                state: make(),
            },
        );
        self.recency.insert(tick, key.to_vec());
        evicted
    }

    fn remove(&mut self, key: &[String]) -> Option<State> {
        let slot = self.map.remove(key)?;
        self.recency.remove(&slot.touched);
        Some(slot.state)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stamp {
    time: DateTime<Utc>,
    doc_id: String,
}

#[derive(Clone, Serialize, Deserialize)]
enum State {
    Early(EarlyState),
    AtClose(CloseState),
    Temporal(Vec<Option<Stamp>>),
    Ordered(OrderedState),
}

/// A count with only lower bounds.
#[derive(Clone, Serialize, Deserialize)]
struct EarlyState {
    /// Oldest first. `event_count`: the latest `min` events (value `None`); `value_count`: at
    /// most `min` distinct values, each with its latest event.
    recent: VecDeque<(Option<String>, Stamp)>,
    /// After a fire: observations up to this time are only counted.
    fired_until: Option<DateTime<Utc>>,
    suppressed: u64,
}

/// A count decided when its window closes.
#[derive(Clone, Serialize, Deserialize)]
struct CloseState {
    open: DateTime<Utc>,
    close: DateTime<Utc>,
    events: u64,
    /// Distinct values in first-seen order, at most the plan's cap.
    values: Vec<String>,
    last: Stamp,
    docs: VecDeque<String>,
}

#[derive(Clone, Serialize, Deserialize)]
struct OrderedState {
    /// The latest observation of each input.
    latest: Vec<Option<Stamp>>,
    /// Per step `i`: the chain completing steps `0..=i` that started latest.
    chains: Vec<Option<Chain>>,
}

#[derive(Clone, Serialize, Deserialize)]
struct Chain {
    start: DateTime<Utc>,
    /// Time of its last step.
    at: DateTime<Utc>,
    docs: Vec<String>,
}

/// What a fire reports about its group's state.
struct Hit {
    count: u64,
    values: Vec<String>,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    doc_ids: Vec<String>,
    trigger: String,
    suppressed_before: u64,
}

fn minus(t: DateTime<Utc>, d: TimeDelta) -> DateTime<Utc> {
    t.checked_sub_signed(d).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn plus(t: DateTime<Utc>, d: TimeDelta) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The last `max` items, oldest first.
fn last_n<T: Clone>(items: impl ExactSizeIterator<Item = T>, max: usize) -> Vec<T> {
    let skip = items.len().saturating_sub(max);
    items.skip(skip).collect()
}

impl Plan {
    fn new(c: &Correlation) -> Plan {
        let cond = c.condition;
        let mode = match c.kind {
            CorrelationKind::Temporal => Mode::Temporal,
            CorrelationKind::TemporalOrdered => Mode::Ordered,
            _ if cond.only_lower_bounds() => Mode::Early {
                min: usize_of(cond.min_count().unwrap_or(1).max(1)),
            },
            _ => {
                let cap = [
                    cond.lt,
                    cond.lte.map(|b| b.saturating_add(1)),
                    cond.eq.map(|b| b.saturating_add(1)),
                ]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(u64::MAX);
                Mode::AtClose { cap: usize_of(cap) }
            }
        };
        Plan {
            kind: c.kind,
            mode,
            condition: cond,
            span: delta(c.timespan),
            inputs: c.inputs.len(),
            group_names: c.group_by.iter().map(|g| g.name.clone()).collect(),
            value_name: c.value_field.as_ref().map(|v| v.name.clone()),
            feeds: Vec::new(),
            fingerprint: c.fingerprint(),
        }
    }
}

impl Correlator {
    /// An engine for `correlations`; observations refer to them by index.
    pub fn new(correlations: &[Correlation], opts: CorrelatorOptions) -> Self {
        let mut plans: Vec<Plan> = correlations.iter().map(Plan::new).collect();
        for (k, c) in correlations.iter().enumerate() {
            for (pos, input) in c.inputs.iter().enumerate() {
                if let CorrelationInput::Correlation(j) = *input {
                    if let Some(p) = plans.get_mut(j) {
                        p.feeds.push((k, pos));
                    }
                }
            }
        }
        Correlator {
            groups: plans.iter().map(|_| Groups::default()).collect(),
            plans,
            opts,
            lateness: delta(opts.lateness),
            watermark: None,
            latest: None,
            pending: BinaryHeap::new(),
            closes: BTreeSet::new(),
            seq: 0,
            tick: 0,
            late_total: 0,
            evicted_total: 0,
        }
    }

    /// Takes one observation. It is late (counted, not used) if older than the watermark;
    /// otherwise it is buffered, the watermark moves, and what it passes is released (which
    /// may fire into `out`). An observation naming an unknown correlation or input, or with the
    /// wrong number of group values, is ignored.
    pub fn observe(&mut self, obs: Observation, out: &mut Vec<Fire>) {
        if !self.valid(&obs) {
            return;
        }
        if self.watermark.is_some_and(|w| obs.time < w) {
            self.late_total += 1;
            return;
        }
        self.latest = Some(self.latest.map_or(obs.time, |l| l.max(obs.time)));
        self.raise_watermark(minus(obs.time, self.lateness));
        self.seq += 1;
        self.pending.push(Reverse(Pending { obs, seq: self.seq }));
        self.run(self.watermark, out);
    }

    /// Moves the watermark to `now - lateness` (if later): releases what is older and closes
    /// the windows it passes.
    pub fn advance_to(&mut self, now: DateTime<Utc>, out: &mut Vec<Fire>) {
        self.latest = Some(self.latest.map_or(now, |l| l.max(now)));
        self.raise_watermark(minus(now, self.lateness));
        self.run(self.watermark, out);
    }

    /// The input has been quiet for `idle` (wall time): event time is taken to have moved on
    /// as far from the latest event seen, so that windows close and buffered observations are
    /// released without a new event. Reading a backlog of old events is never quiet, so this
    /// does not jump the watermark to the present ahead of them. Nothing happens before the
    /// first event.
    pub fn advance_idle(&mut self, idle: Duration, out: &mut Vec<Fire>) {
        let Some(latest) = self.latest else {
            return;
        };
        self.raise_watermark(minus(plus(latest, delta(idle)), self.lateness));
        self.run(self.watermark, out);
    }

    /// End of input: releases every buffered observation and closes every window.
    pub fn finish(&mut self, out: &mut Vec<Fire>) {
        self.run(None, out);
    }

    /// Observations that arrived older than the watermark.
    pub fn late_total(&self) -> u64 {
        self.late_total
    }

    /// Groups evicted to stay within `max_groups`.
    pub fn evicted_total(&self) -> u64 {
        self.evicted_total
    }

    /// Groups held, all correlations together.
    pub fn groups(&self) -> usize {
        self.groups.iter().map(|g| g.map.len()).sum()
    }

    fn valid(&self, obs: &Observation) -> bool {
        self.plans.get(obs.corr).is_some_and(|p| {
            obs.input < p.inputs
                && (obs.group.len() == p.group_names.len()
                    || obs.group.len() == p.group_names.len() + 1)
        })
    }

    fn raise_watermark(&mut self, w: DateTime<Utc>) {
        if self.watermark.is_none_or(|cur| w > cur) {
            self.watermark = Some(w);
        }
    }

    /// Releases the buffered observations and closes the windows before `limit` (all of them
    /// if `None`), in event-time order: a close at `c` after the observations at `c`.
    fn run(&mut self, limit: Option<DateTime<Utc>>, out: &mut Vec<Fire>) {
        let before = |t: DateTime<Utc>| limit.is_none_or(|w| t < w);
        loop {
            let next_obs = self
                .pending
                .peek()
                .map(|p| p.0.obs.time)
                .filter(|&t| before(t));
            let next_close = self.closes.first().map(|c| c.0).filter(|&t| before(t));
            match (next_obs, next_close) {
                (o, Some(c)) if o.is_none_or(|o| c < o) => {
                    if let Some(key) = self.closes.pop_first() {
                        let start = out.len();
                        self.close_window(key.1, &key.2, out);
                        self.chain(start, out);
                    }
                }
                (Some(_), _) => {
                    if let Some(Reverse(p)) = self.pending.pop() {
                        let start = out.len();
                        self.apply(p.obs, out);
                        self.chain(start, out);
                    }
                }
                _ => break,
            }
        }
    }

    /// Feeds the fires in `out[start..]` to the correlations that count them, and theirs to
    /// theirs, breadth first. Depth is bounded by the number of correlations.
    fn chain(&mut self, start: usize, out: &mut Vec<Fire>) {
        let mut queue = VecDeque::new();
        self.feeds_of(start, 1, out, &mut queue);
        while let Some((obs, depth)) = queue.pop_front() {
            let from = out.len();
            self.apply(obs, out);
            if depth < self.plans.len() {
                self.feeds_of(from, depth + 1, out, &mut queue);
            }
        }
    }

    fn feeds_of(
        &self,
        start: usize,
        depth: usize,
        out: &[Fire],
        queue: &mut VecDeque<(Observation, usize)>,
    ) {
        for fire in out.get(start..).unwrap_or_default() {
            let Some(plan) = self.plans.get(fire.corr) else {
                continue;
            };
            for &(k, input) in &plan.feeds {
                let Some(target) = self.plans.get(k) else {
                    continue;
                };
                let find = |name: &str| {
                    fire.group
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.clone())
                };
                let Some(mut group) = target
                    .group_names
                    .iter()
                    .map(|n| find(n))
                    .collect::<Option<Vec<_>>>()
                else {
                    continue;
                };
                // The cluster goes along: a fire in one cluster feeds that cluster's groups.
                if fire.group.len() > plan.group_names.len() {
                    if let Some(cluster) = find(CLUSTER_FIELD) {
                        group.push(cluster);
                    }
                }
                let value = target.value_name.as_deref().and_then(find);
                queue.push_back((
                    Observation {
                        corr: k,
                        input,
                        time: fire.last,
                        group,
                        value,
                        doc_id: fire.trigger.clone(),
                    },
                    depth,
                ));
            }
        }
    }

    /// One released observation: updates its group and fires at most once.
    fn apply(&mut self, obs: Observation, out: &mut Vec<Fire>) {
        let Some(plan) = self.plans.get(obs.corr) else {
            return;
        };
        let (kind, mode, span, inputs, cond) =
            (plan.kind, plan.mode, plan.span, plan.inputs, plan.condition);
        let value = match kind {
            CorrelationKind::ValueCount => match obs.value {
                Some(v) => Some(v),
                None => return,
            },
            _ => None,
        };
        let c = obs.corr;
        // A window that closed before this observation (possible only for a chained one).
        let closed = match self.groups[c].map.get(&obs.group).map(|s| &s.state) {
            Some(State::AtClose(st)) if obs.time > st.close => Some(st.close),
            _ => None,
        };
        if let Some(close) = closed {
            self.closes.remove(&(close, c, obs.group.clone()));
            self.close_window(c, &obs.group, out);
        }
        self.tick += 1;
        let time = obs.time;
        let make = || match mode {
            Mode::Early { .. } => State::Early(EarlyState {
                recent: VecDeque::new(),
                fired_until: None,
                suppressed: 0,
            }),
            Mode::AtClose { .. } => State::AtClose(CloseState {
                open: time,
                close: plus(time, span),
                events: 0,
                values: Vec::new(),
                last: Stamp {
                    time,
                    doc_id: String::new(),
                },
                docs: VecDeque::new(),
            }),
            Mode::Temporal => State::Temporal(vec![None; inputs]),
            Mode::Ordered => State::Ordered(OrderedState {
                latest: vec![None; inputs],
                chains: vec![None; inputs],
            }),
        };
        let groups = &mut self.groups[c];
        if let Some((old, state)) = groups.touch(&obs.group, self.tick, self.opts.max_groups, make)
        {
            self.evicted_total += 1;
            if let State::AtClose(st) = state {
                self.closes.remove(&(st.close, c, old));
            }
        }
        let Some(slot) = groups.map.get_mut(&obs.group) else {
            return;
        };
        let stamp = Stamp {
            time,
            doc_id: obs.doc_id,
        };
        let opts = &self.opts;
        let hit = match (&mut slot.state, mode) {
            (State::Early(st), Mode::Early { min }) => early(st, min, span, value, stamp, opts),
            (State::AtClose(st), Mode::AtClose { cap }) => {
                if st.events == 0 {
                    self.closes.insert((st.close, c, obs.group.clone()));
                }
                st.events += 1;
                if let Some(v) = value {
                    if st.values.len() < cap && !st.values.contains(&v) {
                        st.values.push(v);
                    }
                }
                st.docs.push_back(stamp.doc_id.clone());
                while st.docs.len() > opts.max_doc_ids {
                    st.docs.pop_front();
                }
                st.last = stamp;
                None
            }
            (State::Temporal(latest), Mode::Temporal) => {
                temporal(latest, obs.input, span, &cond, stamp, opts)
            }
            (State::Ordered(st), Mode::Ordered) => ordered(st, obs.input, span, &cond, stamp, opts),
            _ => None,
        };
        if let Some(hit) = hit {
            out.push(self.fire(c, &obs.group, hit));
        }
    }

    /// Closes the window of a group decided at its close; fires if the condition holds.
    fn close_window(&mut self, c: usize, group: &[String], out: &mut Vec<Fire>) {
        let Some(plan) = self.plans.get(c) else {
            return;
        };
        let Some(State::AtClose(st)) = self.groups[c].remove(group) else {
            return;
        };
        let count = match plan.kind {
            CorrelationKind::ValueCount => st.values.len() as u64,
            _ => st.events,
        };
        if count == 0 || !plan.condition.holds(count) {
            return;
        }
        let hit = Hit {
            count,
            values: last_n(st.values.into_iter(), self.opts.max_values),
            first: st.open,
            last: st.last.time,
            doc_ids: st.docs.into_iter().collect(),
            trigger: st.last.doc_id,
            suppressed_before: 0,
        };
        out.push(self.fire(c, group, hit));
    }

    fn fire(&self, c: usize, group: &[String], hit: Hit) -> Fire {
        let names = self.plans.get(c).map(|p| &p.group_names[..]).unwrap_or(&[]);
        Fire {
            corr: c,
            group: names
                .iter()
                .cloned()
                .zip(group.iter().cloned())
                .chain(
                    group
                        .get(names.len())
                        .map(|cluster| (CLUSTER_FIELD.to_string(), cluster.clone())),
                )
                .collect(),
            count: hit.count,
            values: hit.values,
            first: hit.first,
            last: hit.last,
            doc_ids: hit.doc_ids,
            trigger: hit.trigger,
            suppressed_before: hit.suppressed_before,
        }
    }
}

/// A count with only lower bounds, at a released observation.
fn early(
    st: &mut EarlyState,
    min: usize,
    span: TimeDelta,
    value: Option<String>,
    stamp: Stamp,
    opts: &CorrelatorOptions,
) -> Option<Hit> {
    if let Some(until) = st.fired_until {
        if stamp.time <= until {
            st.suppressed += 1;
            return None;
        }
        st.fired_until = None;
        st.recent.clear();
    }
    if let Some(v) = &value {
        if let Some(i) = st.recent.iter().position(|(x, _)| x.as_ref() == Some(v)) {
            st.recent.remove(i);
        }
    }
    let time = stamp.time;
    st.recent.push_back((value, stamp));
    let from = minus(time, span);
    while st.recent.front().is_some_and(|(_, s)| s.time < from) {
        st.recent.pop_front();
    }
    while st.recent.len() > min {
        st.recent.pop_front();
    }
    if st.recent.len() < min {
        return None;
    }
    let recent = std::mem::take(&mut st.recent);
    st.fired_until = Some(plus(time, span));
    let first = recent.front().map_or(time, |(_, s)| s.time);
    let count = recent.len() as u64;
    let trigger = recent
        .back()
        .map(|(_, s)| s.doc_id.clone())
        .unwrap_or_default();
    let values = last_n(
        recent
            .iter()
            .filter_map(|(v, _)| v.clone())
            .collect::<Vec<_>>()
            .into_iter(),
        opts.max_values,
    );
    let doc_ids = last_n(recent.into_iter().map(|(_, s)| s.doc_id), opts.max_doc_ids);
    Some(Hit {
        count,
        values,
        first,
        last: time,
        doc_ids,
        trigger,
        suppressed_before: std::mem::take(&mut st.suppressed),
    })
}

/// `temporal`, at a released observation of `input`.
fn temporal(
    latest: &mut [Option<Stamp>],
    input: usize,
    span: TimeDelta,
    cond: &CountCondition,
    stamp: Stamp,
    opts: &CorrelatorOptions,
) -> Option<Hit> {
    let time = stamp.time;
    let trigger = stamp.doc_id.clone();
    *latest.get_mut(input)? = Some(stamp);
    let from = minus(time, span);
    let mut matched: Vec<&Stamp> = latest.iter().flatten().filter(|s| s.time >= from).collect();
    let count = matched.len() as u64;
    if count == 0 || !cond.holds(count) {
        return None;
    }
    matched.sort_by_key(|s| s.time);
    let hit = Hit {
        count,
        values: Vec::new(),
        first: matched.first().map_or(time, |s| s.time),
        last: time,
        doc_ids: last_n(
            matched
                .iter()
                .map(|s| s.doc_id.clone())
                .collect::<Vec<_>>()
                .into_iter(),
            opts.max_doc_ids,
        ),
        trigger,
        suppressed_before: 0,
    };
    latest.iter_mut().for_each(|s| *s = None);
    Some(hit)
}

/// `temporal_ordered`, at a released observation of `input`.
fn ordered(
    st: &mut OrderedState,
    input: usize,
    span: TimeDelta,
    cond: &CountCondition,
    stamp: Stamp,
    opts: &CorrelatorOptions,
) -> Option<Hit> {
    let time = stamp.time;
    let from = minus(time, span);
    let trigger = stamp.doc_id.clone();
    let extended = if input == 0 {
        Some(Chain {
            start: time,
            at: time,
            docs: vec![stamp.doc_id.clone()],
        })
    } else {
        st.chains
            .get(input - 1)?
            .as_ref()
            .filter(|c| c.at <= time)
            .map(|c| extend(c, &stamp))
    };
    *st.latest.get_mut(input)? = Some(stamp);
    if let Some(chain) = extended {
        set_chain(st, input, chain);
    }
    for slot in &mut st.chains {
        if slot.as_ref().is_some_and(|c| c.start < from) {
            *slot = None;
        }
    }
    let (step, chain) = st
        .chains
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, c)| c.as_ref().map(|c| (i, c)))?;
    let count = step as u64 + 1;
    if !cond.holds(count) {
        return None;
    }
    let hit = Hit {
        count,
        values: Vec::new(),
        first: chain.start,
        last: time,
        doc_ids: last_n(chain.docs.iter().cloned(), opts.max_doc_ids),
        trigger,
        suppressed_before: 0,
    };
    st.chains.iter_mut().for_each(|c| *c = None);
    st.latest.iter_mut().for_each(|s| *s = None);
    Some(hit)
}

fn extend(chain: &Chain, stamp: &Stamp) -> Chain {
    let mut docs = chain.docs.clone();
    docs.push(stamp.doc_id.clone());
    Chain {
        start: chain.start,
        at: stamp.time,
        docs,
    }
}

/// Sets the chain of `step` if it started no earlier than the one there, then carries it on
/// through the following inputs whose latest observation is at or after it (equal
/// timestamps released in the other order).
fn set_chain(st: &mut OrderedState, mut step: usize, mut chain: Chain) {
    loop {
        let Some(slot) = st.chains.get_mut(step) else {
            return;
        };
        if slot.as_ref().is_some_and(|c| c.start > chain.start) {
            return;
        }
        *slot = Some(chain.clone());
        let Some(Some(next)) = st.latest.get(step + 1) else {
            return;
        };
        if next.time < chain.at {
            return;
        }
        chain = extend(&chain, next);
        step += 1;
    }
}

mod snapshot;
pub use snapshot::CorrelatorSnapshot;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
