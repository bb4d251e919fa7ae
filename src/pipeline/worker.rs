//! The detection workers: each takes a source batch, decodes its lines, runs the detect stage,
//! builds the alert and events-flow records, and hands every sink the records it takes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::config::types::Flow;
use crate::config::Config;
use crate::detect::correlate::CorrelatorOptions;
use crate::detect::Detector;
use crate::event::{decode_value_into, SkipReason};
use crate::rules::{Hits, RuleSet};
use crate::sink::{self, DeadLetters, InflightBudget, SinkBatch, SinkHandle};
use crate::source::Batch;
use crate::telemetry::{Counter, Metrics, SkipLabels, SourceLabels};

use super::partitions::{PartitionId, PartitionState, PartitionStates};
use super::state::{sourceless, Inflight};
use super::SharedRules;

/// What a detection worker needs: the batches, the current rules, the sinks.
pub(super) struct WorkerContext {
    /// Source batches, each with its share of the input budget.
    /// Source batches, each with its share of the input budget and its turn for the stateful
    /// step (consecutive numbers, in the channel's order).
    pub(super) rx: Receiver<(Batch, Option<sink::Charge>, u64)>,
    pub(super) rules: SharedRules,
    pub(super) sinks: Arc<[SinkHandle]>,
    pub(super) dead_letters: Arc<DeadLetters>,
    pub(super) cluster: Option<String>,
    pub(super) node: Option<String>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) abandon: Arc<AtomicBool>,
    /// `pipeline.max_event_bytes`: larger events are forwarded reduced in the events flow.
    pub(super) max_event_bytes: usize,
    /// `pipeline.max_inflight_bytes`, shared by every worker.
    pub(super) budget: Arc<InflightBudget>,
    /// The correlator of the current rule set, shared by every worker (its reorder buffer puts
    /// their observations back in event-time order); made again when the rules are swapped.
    pub(super) correlator: Arc<std::sync::Mutex<SharedCorrelator>>,
    /// Held (shared) while a batch changes state and its alerts are registered: a snapshot
    /// takes it exclusively, so it copies whole batches only.
    pub(super) gate: Arc<std::sync::RwLock<()>>,
    /// Batches between this worker and the next snapshot.
    pub(super) inflight: Arc<Inflight>,
    /// Bounds of new correlators (`stateful:`).
    pub(super) correlator_options: CorrelatorOptions,
    /// This worker looks after quiet streams (one worker does).
    pub(super) watches_idle: bool,
    /// `stateful.idle_timeout`.
    pub(super) idle_timeout: Duration,
    /// Wall time of the latest batch any worker took.
    pub(super) last_batch: Arc<std::sync::Mutex<Instant>>,
    /// The order in which the workers took their batches, which the stateful step follows.
    pub(super) turns: Arc<Turnstile>,
    /// The states of the Kafka partitions whose state follows them.
    pub(super) partitions: Arc<PartitionStates>,
}

/// Puts the stateful step of the workers' batches (throttles, once-per-request, first-seen
/// baselines, correlations, and the alerts they decide) in the order the batches entered the
/// workers' queue, so that any number of workers decides the same alerts, with the same ids,
/// as one worker: decoding, rule matching and the events flow's documents run in parallel,
/// and only the short stateful step waits for the batches before it. The turns are numbered
/// by the one thread that queues the batches, so they are taken in order: a worker waits only
/// for batches other workers took before its own, and one worker never waits.
#[derive(Default)]
pub(super) struct Turnstile {
    /// The turn whose stateful step may run.
    serving: std::sync::Mutex<u64>,
    turn: std::sync::Condvar,
}

/// A batch's place in [`Turnstile`]'s order. Dropping it (its batch done, skipped, or a panic
/// unwinding) waits for its turn if it has not yet, and passes the turn on.
struct Ticket {
    n: u64,
    turns: Arc<Turnstile>,
    waited: bool,
}

impl Ticket {
    /// Blocks until the stateful steps of every batch taken before this one are done.
    fn wait(&mut self) {
        let mut serving = self
            .turns
            .serving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *serving != self.n {
            serving = self
                .turns
                .turn
                .wait(serving)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        self.waited = true;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.waited {
            self.wait();
        }
        let mut serving = self
            .turns
            .serving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *serving = self.n + 1;
        self.turns.turn.notify_all();
    }
}

/// Adds alerts saved in flight (before a restart, or with a partition's state) to `out`.
fn push_resent(rules: &RuleSet, records: Vec<Arc<sink::Record>>, out: &mut Outputs) {
    for r in records {
        let index = r
            .rule
            .as_ref()
            .and_then(|(id, _)| (0..rules.alert_sources()).find(|&i| &rules.meta(i).id == id));
        out.records.push(r);
        out.rules.push(index);
    }
}

/// The partition whose state follows it that `batch` is of.
fn partition_id(batch: &Batch) -> Option<PartitionId> {
    let (topic, partition, _) = batch.state_partition.as_ref()?;
    Some(PartitionId {
        source: batch.source.clone(),
        topic: topic.clone(),
        partition: *partition,
    })
}

/// The rule set whose state a batch is detected with: its partition's, else the daemon's.
fn state_rules<'a>(
    rules: &'a Arc<RuleSet>,
    part: &'a Option<Arc<PartitionState>>,
) -> &'a Arc<RuleSet> {
    part.as_ref().map_or(rules, |p| &p.rules)
}

/// The rule set a correlator was made for, and the correlator (`None`: it has no correlation).
pub(super) type SharedCorrelator = Option<(
    Arc<RuleSet>,
    Option<Arc<std::sync::Mutex<crate::detect::correlate::Correlator>>>,
)>;

/// `node_name` from the config, else the `NODE_NAME` environment variable.
pub(super) fn node_name(cfg: &Config) -> Option<String> {
    cfg.node_name
        .clone()
        .or_else(|| std::env::var("NODE_NAME").ok())
        .filter(|n| !n.is_empty())
}

impl WorkerContext {
    pub(super) fn run(self) {
        let wants_events = self.sinks.iter().any(|s| s.takes(Flow::Events));
        let latency = &self.metrics.batch_duration;
        let queue_depth = &self.metrics.queue_batches;
        // The alert counter of each rule, resolved again only when the rule set is swapped.
        let mut alert_counters: Option<(Arc<RuleSet>, Vec<Counter>)> = None;
        // When the watcher last looked for quiet partitions while batches kept coming.
        let mut partitions_looked = Instant::now();
        loop {
            if self.watches_idle && partitions_looked.elapsed() >= IDLE_TICK {
                partitions_looked = Instant::now();
                if !self.abandon.load(Ordering::Relaxed) {
                    self.idle_partitions(&mut alert_counters);
                }
            }
            let (batch, _input, mut ticket) = match self.rx.recv_timeout(IDLE_TICK) {
                Ok((batch, input, n)) => {
                    let ticket = Ticket {
                        n,
                        turns: self.turns.clone(),
                        waited: false,
                    };
                    (batch, input, ticket)
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    if self.watches_idle && !self.abandon.load(Ordering::Relaxed) {
                        self.idle(&mut alert_counters);
                    }
                    continue;
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            };
            if self.abandon.load(Ordering::Relaxed) {
                // Past the shutdown deadline: leave the batch unconfirmed.
                continue;
            }
            *self
                .last_batch
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
            queue_depth.set(self.rx.len() as i64);
            let started = Instant::now();
            let mut rules = self.current_rules();
            // A partition whose state follows it is detected with its own state (whose hash
            // keys the reading phase uses too).
            let Ok(mut part) = self.partition_state(&batch, &rules) else {
                // Of a partition no longer (or no longer so) assigned here: its owner reads
                // it again.
                continue;
            };
            let mut read = self.read_batch(&batch, state_rules(&rules, &part), wants_events);
            // The stateful step, in the order the batches were taken.
            ticket.wait();
            let (cut, current) = self.enter();
            let Ok(now_part) = self.partition_state(&batch, &current) else {
                continue;
            };
            let part_changed = match (&part, &now_part) {
                (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
                _ => false,
            };
            if !Arc::ptr_eq(&current, &rules) || part_changed {
                // The rules were swapped, or the partition's state restored, while the batch
                // was read: read it again with the current ones.
                rules = current;
                part = now_part;
                read = self.read_batch(&batch, state_rules(&rules, &part), wants_events);
            }
            if !alert_counters
                .as_ref()
                .is_some_and(|(r, _)| r.same_rules(&rules))
            {
                let ids = (0..rules.alert_sources()).map(|i| {
                    let m = rules.meta(i);
                    (m.id.as_str(), m.level)
                });
                alert_counters = Some((rules.clone(), self.metrics.alert_counters(ids)));
            }
            let correlator = match &part {
                Some(p) => p.correlator.clone(),
                None => self.correlator_of(&rules),
            };
            let alerts = alert_counters.as_ref().map_or(&[][..], |(_, c)| &c[..]);
            let mut out = Outputs::default();
            self.detect_in_order(
                &batch,
                state_rules(&rules, &part),
                alerts,
                correlator,
                read,
                &mut out,
            );
            if let Some(p) = &part {
                p.touched();
            }
            if let (Some(p), Some(&(_, last))) = (&part, batch.message_offsets.last()) {
                p.next_offset.store(
                    i64::try_from(last).unwrap_or(i64::MAX).saturating_add(1),
                    Ordering::Relaxed,
                );
            }
            self.resend_restored(&rules, &mut out);
            if let Some(p) = &part {
                push_resent(&p.rules, p.take_resend(), &mut out);
            }
            let ack = self
                .inflight
                .hold(batch.ack.clone(), out.alerts(), partition_id(&batch));
            drop(cut);
            drop(ticket);
            self.dispatch(&ack, &rules, out);
            latency.observe(started.elapsed().as_secs_f64());
            ack.done();
        }
    }

    /// The state of the batch's partition, when its state follows it (`Ok(None)`: the
    /// daemon's shared state); `Err(())` for a batch of an assignment this instance no longer
    /// holds, which is left alone.
    #[allow(clippy::result_unit_err)]
    fn partition_state(
        &self,
        batch: &Batch,
        rules: &Arc<RuleSet>,
    ) -> Result<Option<Arc<PartitionState>>, ()> {
        let Some((_, _, generation)) = &batch.state_partition else {
            return Ok(None);
        };
        let Some(id) = partition_id(batch) else {
            return Ok(None);
        };
        match self.partitions.state_for(&id, *generation, rules) {
            Some(s) => Ok(Some(s)),
            None => Err(()),
        }
    }

    /// Enters the gate (a snapshot waits until the batch is registered) and takes the current
    /// rules (a reload swaps them inside the gate, with their correlator).
    fn enter(&self) -> (std::sync::RwLockReadGuard<'_, ()>, Arc<RuleSet>) {
        let cut = self
            .gate
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (cut, self.current_rules())
    }

    fn current_rules(&self) -> Arc<RuleSet> {
        match self.rules.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The correlator of `rules`, made when the rules were swapped without one (the reloader
    /// makes it, carrying the windows over, before it swaps the rules).
    fn correlator_of(
        &self,
        rules: &Arc<RuleSet>,
    ) -> Option<Arc<std::sync::Mutex<crate::detect::correlate::Correlator>>> {
        let mut slot = match self.correlator.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        match slot.as_ref() {
            Some((r, c)) if Arc::ptr_eq(r, rules) => c.clone(),
            _ => {
                let c = Detector::correlator_with(rules, self.correlator_options);
                *slot = Some((rules.clone(), c.clone()));
                c
            }
        }
    }

    /// Adds the alerts saved in flight before a restart (once, to the first batch or tick).
    fn resend_restored(&self, rules: &RuleSet, out: &mut Outputs) {
        push_resent(rules, self.inflight.take_restored(), out);
    }

    /// No batch came for a while: after `idle_timeout` of silence, moves the correlations'
    /// event time on with the clock (closing windows on a quiet stream), and sends the alerts
    /// saved before a restart if no batch has taken them.
    fn idle(&self, alert_counters: &mut Option<(Arc<RuleSet>, Vec<Counter>)>) {
        let quiet = self
            .last_batch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed();
        let beyond = quiet.saturating_sub(self.idle_timeout);
        if beyond.is_zero() && !self.inflight.has_restored() {
            self.idle_partitions(alert_counters);
            return;
        }
        let (cut, rules) = self.enter();
        let mut out = Outputs::default();
        if !beyond.is_zero() {
            if let Some(c) = self.correlator_of(&rules) {
                let counters = alert_counters
                    .as_ref()
                    .filter(|(r, _)| Arc::ptr_eq(r, &rules))
                    .map_or(&[][..], |(_, c)| &c[..]);
                let mut detector =
                    Detector::new(&rules, self.cluster.clone()).with_correlator(Some(c));
                detector.node_name = self.node.clone();
                detector.advance_idle(beyond, &mut |a| {
                    push_correlation_alert(&rules, counters, a, &mut out)
                });
            }
        }
        self.resend_restored(&rules, &mut out);
        // Registered under the gate, sent after it.
        let mut send = Vec::new();
        if !out.records.is_empty() {
            let ack = self.inflight.hold(sourceless(), out.alerts(), None);
            send.push((ack, rules.clone(), out));
        }
        drop(cut);
        for (ack, rules, out) in send {
            self.dispatch(&ack, &rules, out);
            ack.done();
        }
        self.idle_partitions(alert_counters);
    }

    /// The partitions whose state follows them, each on its own clock: one that had no batch
    /// for `idle_timeout` (however busy the others) has its correlations' event time moved on
    /// with the clock; alerts restored with a partition's state are sent. Their alerts are
    /// saved with the partition's state until sent.
    fn idle_partitions(&self, alert_counters: &mut Option<(Arc<RuleSet>, Vec<Counter>)>) {
        let due: Vec<(PartitionId, Arc<PartitionState>, Duration)> = self
            .partitions
            .all()
            .into_iter()
            .filter_map(|(id, p)| {
                let beyond = p.quiet_for().saturating_sub(self.idle_timeout);
                let resend = !p.resend_is_empty();
                (resend || (!beyond.is_zero() && p.correlator.is_some())).then_some((id, p, beyond))
            })
            .collect();
        if due.is_empty() {
            return;
        }
        let (cut, _) = self.enter();
        let mut send = Vec::new();
        for (id, p, beyond) in due {
            let mut out = Outputs::default();
            if let (false, Some(c)) = (beyond.is_zero(), p.correlator.clone()) {
                let counters = alert_counters
                    .as_ref()
                    .filter(|(r, _)| r.same_rules(&p.rules))
                    .map_or(&[][..], |(_, c)| &c[..]);
                let mut detector =
                    Detector::new(&p.rules, self.cluster.clone()).with_correlator(Some(c));
                detector.node_name = self.node.clone();
                detector.advance_idle(beyond, &mut |a| {
                    push_correlation_alert(&p.rules, counters, a, &mut out)
                });
            }
            push_resent(&p.rules, p.take_resend(), &mut out);
            if out.records.is_empty() {
                continue;
            }
            p.dirty.store(true, Ordering::Relaxed);
            let ack = self.inflight.hold(sourceless(), out.alerts(), Some(id));
            send.push((ack, p.rules.clone(), out));
        }
        drop(cut);
        for (ack, rules, out) in send {
            self.dispatch(&ack, &rules, out);
            ack.done();
        }
    }

    /// The part of a batch that needs no state, run by the workers in parallel: decodes its
    /// lines, works out the rule hits of each event and what the stateful step reads of those
    /// with hits ([`Detector::prepare`]), and writes the events flow's documents.
    fn read_batch(&self, batch: &Batch, rules: &RuleSet, wants_events: bool) -> ReadBatch {
        let events_read = self
            .metrics
            .events_received
            .get_or_create_owned(&SourceLabels::new(batch.source.clone()));
        let mut read = ReadBatch::default();
        let mut reduced = None;
        let event_template = wants_events
            .then(|| crate::alert::AlertTemplate::for_events().with_host(self.node.as_deref()));
        // The correlations' event time.
        let timed = !rules.correlations().is_empty();
        let mut hits = Hits::new();
        let mut offset = batch.start_offset;
        let mut start = 0;
        let data = &batch.data;
        // The events flow's document ids: each line's content hash, many lines side by side
        // (an event whose text is its whole line takes its line's; any other hashes its own).
        let mut line_hashes = Vec::new();
        // The lists below hold up to one entry per line: sized up front rather than grown (and
        // copied) from empty as they fill; the events with hits, often few, up to a bound.
        let lines_at_most = memchr::memchr_iter(b'\n', data).count();
        read.hits.reserve(lines_at_most.min(256));
        if wants_events {
            let mut lines: Vec<&[u8]> = Vec::with_capacity(lines_at_most);
            lines.extend(Lines::of(data).map(|(_, line)| line));
            crate::event::content_hashes(&lines, &mut line_hashes);
            read.events.reserve(lines.len());
        }
        let mut line_hashes = line_hashes.into_iter();
        for (this_line, nl) in (batch.first_line..).zip(memchr::memchr_iter(b'\n', data)) {
            let raw = &data[start..nl];
            let line_start = start;
            let line_offset = offset;
            offset += (nl + 1 - start) as u64;
            start = nl + 1;
            let trimmed = raw.strip_suffix(b"\r").unwrap_or(raw);
            if trimmed.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let line_hash = line_hashes.next();
            let text = match crate::event::utf8(trimmed) {
                Ok(t) => t,
                Err(e) => {
                    self.skip(
                        batch,
                        this_line,
                        line_offset,
                        SkipReason::InvalidUtf8,
                        &e.to_string(),
                        trimmed,
                    );
                    continue;
                }
            };
            let mut event = 0usize;
            decode_value_into(text, &mut |d| match d {
                Ok(ev) => {
                    events_read.inc();
                    if let Some(h) =
                        line_hash.filter(|_| std::ptr::eq(ev.raw().as_bytes(), trimmed))
                    {
                        ev.set_content_hash(h);
                    }
                    let this_event = event;
                    event += 1;
                    if timed {
                        read.times.note(ev);
                    }
                    hits.clear();
                    rules.hits(ev, &mut hits);
                    if !hits.is_empty() {
                        read.hits.push(EventHits {
                            line: line_start..line_start + trimmed.len(),
                            event: this_event,
                            prepared: Detector::prepare(rules, ev, std::mem::take(&mut hits)),
                        });
                    }
                    if let Some(template) = &event_template {
                        // The rules saw the whole event; what is forwarded is bounded.
                        let doc = if ev.raw().len() > self.max_event_bytes {
                            reduced
                                .get_or_insert_with(|| {
                                    self.metrics.events_reduced.get_or_create_owned(
                                        &SourceLabels::new(batch.source.clone()),
                                    )
                                })
                                .inc();
                            crate::alert::write_reduced_event_document(
                                template,
                                ev,
                                ev.cluster().or(self.cluster.as_deref()),
                            )
                        } else {
                            crate::alert::write_event_document(
                                template,
                                ev,
                                ev.cluster().or(self.cluster.as_deref()),
                            )
                        };
                        let e = RecordMeta::of(ev);
                        read.events.push(Arc::new(sink::Record {
                            flow: Flow::Events,
                            id: e.id,
                            time: e.time,
                            level: None,
                            rule: None,
                            user: e.user,
                            doc,
                        }));
                    }
                }
                Err((reason, msg)) => {
                    self.skip(batch, this_line, line_offset, reason, &msg, trimmed)
                }
            });
        }
        read
    }

    /// The stateful step of a batch, in the order the batches were taken: throttles,
    /// once-per-request, first-seen baselines and correlations see the events with hits in
    /// input order ([`Detector::detect_prepared`]), and the events whose rules alert are decoded
    /// again for their alerts.
    fn detect_in_order(
        &self,
        batch: &Batch,
        rules: &RuleSet,
        alerts: &[Counter],
        correlator: Option<Arc<std::sync::Mutex<crate::detect::correlate::Correlator>>>,
        mut read: ReadBatch,
        out: &mut Outputs,
    ) {
        let mut detector = Detector::new(rules, self.cluster.clone()).with_correlator(correlator);
        detector.node_name = self.node.clone();
        detector.max_event_bytes = Some(self.max_event_bytes);
        for h in read.hits {
            let matches = detector.detect_prepared(h.prepared, &mut |a| {
                push_correlation_alert(rules, alerts, a, out)
            });
            if matches.is_empty() {
                continue;
            }
            let Some(text) = batch
                .data
                .get(h.line)
                .and_then(|t| crate::event::utf8(t).ok())
            else {
                continue;
            };
            let mut matches = Some(matches);
            let mut event = 0usize;
            decode_value_into(text, &mut |d| {
                let this_event = event;
                event += 1;
                let (Ok(ev), true) = (d, this_event == h.event) else {
                    return;
                };
                let Some(matches) = matches.take() else {
                    return;
                };
                let mut meta: Option<RecordMeta> = None;
                detector.alerts_of(ev, matches, &mut |a| {
                    let rule = rules.meta(a.rule);
                    if let Some(c) = alerts.get(a.rule) {
                        c.inc();
                    }
                    let index = a.rule;
                    let e = meta.get_or_insert_with(|| RecordMeta::of(ev));
                    out.records.push(Arc::new(sink::Record {
                        flow: Flow::Alerts,
                        id: sink::content_id(&[e.id.as_bytes(), rule.id.as_bytes()]),
                        time: e.time,
                        level: Some(rule.level),
                        rule: Some((rule.id.clone(), rule.title.clone())),
                        user: e.user.clone(),
                        doc: a.into_json(),
                    }));
                    out.rules.push(Some(index));
                });
            });
        }
        for record in read.events {
            out.records.push(record);
            out.rules.push(None);
        }
        // The batch's events move the correlations' watermark; what that releases travels with
        // this batch.
        if let Some(t) = read.times.take() {
            detector.saw_time(t);
        }
        detector.flush(&mut |a| push_correlation_alert(rules, alerts, a, out));
    }

    fn skip(
        &self,
        batch: &Batch,
        line: u64,
        offset: u64,
        reason: SkipReason,
        msg: &str,
        raw: &[u8],
    ) {
        self.metrics
            .lines_skipped
            .get_or_create_owned(&SkipLabels::new(batch.source.clone(), reason))
            .inc();
        let reason = reason.as_str();
        let offset = batch.report_offset(offset);
        crate::warn_limited!(
            &batch.source,
            tracing::warn!(source = %batch.source, path = %batch.path, line, offset, reason, "skipped: {msg}")
        );
        self.dead_letters
            .write(&batch.source, &batch.path, line, offset, reason, msg, raw);
    }

    /// Hands each sink the records it takes (flows, level, tags); every required sink that
    /// receives something must confirm before the batch is confirmed.
    fn dispatch(&self, ack: &Arc<dyn crate::ack::Confirm>, rules: &RuleSet, out: Outputs) {
        if out.records.is_empty() {
            return;
        }
        // The batch's records count once against the budget, however many sinks take them.
        let bytes = out.records.iter().map(|r| r.doc.len()).sum();
        let Some(charge) = self
            .budget
            .take(bytes, &|| self.abandon.load(Ordering::Relaxed))
        else {
            // Past the shutdown deadline: never confirmed, read again at the next start.
            ack.add(1);
            return;
        };
        let charge = Arc::new(charge);
        for s in self.sinks.iter() {
            let records: Vec<Arc<sink::Record>> = out
                .records
                .iter()
                .zip(&out.rules)
                .filter(|(r, rule)| {
                    s.filter.takes(r.flow)
                        && rule.is_none_or(|i| {
                            let meta = rules.meta(i);
                            s.filter.takes_alert(meta.level, &meta.tags)
                        })
                })
                .map(|(r, _)| r.clone())
                .collect();
            if records.is_empty() {
                continue;
            }
            if s.required {
                // Backpressure: a full queue blocks this worker, and in turn the sources.
                ack.add(1);
                let mut item = SinkBatch {
                    records,
                    ack: Some(ack.clone()),
                    charge: Some(charge.clone()),
                };
                loop {
                    match s.tx.send_timeout(item, Duration::from_millis(100)) {
                        Ok(()) => break,
                        Err(crossbeam_channel::SendTimeoutError::Timeout(back)) => {
                            if self.abandon.load(Ordering::Relaxed) {
                                // Never confirmed: read again at the next start.
                                break;
                            }
                            item = back;
                        }
                        Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => {
                            tracing::error!(sink = %s.name, "sink stopped; batch not delivered");
                            break;
                        }
                    }
                }
            } else {
                // A sink nobody waits for never stalls the pipeline: when it is behind, drop.
                if let Err(e) = s.tx.try_send(SinkBatch {
                    records,
                    ack: None,
                    charge: Some(charge.clone()),
                }) {
                    let b = e.into_inner();
                    sink::dropped_counter(&self.metrics, &s.name).inc_by(b.records.len() as u64);
                    for r in &b.records {
                        self.dead_letters.write_record(
                            &s.name,
                            "sink_dropped",
                            "sink queue full",
                            r,
                        );
                    }
                }
            }
        }
    }
}

/// The lines of a batch's data that [`WorkerContext::read_batch`] decodes, in order: each
/// with its start, without its newline and `\r`, blank lines left out.
struct Lines<'a> {
    data: &'a [u8],
    start: usize,
}

impl<'a> Lines<'a> {
    fn of(data: &'a [u8]) -> Lines<'a> {
        Lines { data, start: 0 }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, &'a [u8]);

    fn next(&mut self) -> Option<(usize, &'a [u8])> {
        loop {
            let rest = self.data.get(self.start..)?;
            let nl = memchr::memchr(b'\n', rest)?;
            let at = self.start;
            self.start += nl + 1;
            let raw = &rest[..nl];
            let trimmed = raw.strip_suffix(b"\r").unwrap_or(raw);
            if !trimmed.iter().all(u8::is_ascii_whitespace) {
                return Some((at, trimmed));
            }
        }
    }
}

/// What the records of one event share: its content id, time and user.
struct RecordMeta {
    id: String,
    time: Option<chrono::DateTime<chrono::Utc>>,
    user: Option<String>,
}

impl RecordMeta {
    fn of(ev: &crate::event::Event<'_>) -> RecordMeta {
        RecordMeta {
            id: ev.content_id(),
            time: ev.time(),
            user: ev.username().map(str::to_owned),
        }
    }
}

/// What [`WorkerContext::read_batch`] read of a batch, for its stateful step.
#[derive(Default)]
struct ReadBatch {
    /// The events with rule hits, in input order.
    hits: Vec<EventHits>,
    /// The events flow's records, in input order.
    events: Vec<Arc<sink::Record>>,
    /// The batch's event times, for the correlations' watermark.
    times: crate::detect::TimeSample,
}

/// An event with rule hits: where it is (its line's bytes in the batch, its place among the
/// line's events) and what the stateful step reads of it.
struct EventHits {
    line: std::ops::Range<usize>,
    event: usize,
    prepared: crate::detect::PreparedEvent,
}

#[derive(Default)]
struct Outputs {
    records: Vec<Arc<sink::Record>>,
    /// Per record, the rule of an alert (for the sinks' level and tag filters).
    rules: Vec<Option<usize>>,
}

impl Outputs {
    /// The alert records (kept with the state until their sinks confirm them).
    fn alerts(&self) -> Vec<Arc<sink::Record>> {
        self.records
            .iter()
            .filter(|r| r.flow == Flow::Alerts)
            .cloned()
            .collect()
    }
}

/// How often an idle worker wakes to look after quiet streams.
const IDLE_TICK: Duration = Duration::from_millis(250);

/// A correlation alert as a record.
fn push_correlation_alert(
    rules: &RuleSet,
    counters: &[Counter],
    a: crate::detect::Alert,
    out: &mut Outputs,
) {
    let rule = rules.meta(a.rule);
    if let Some(c) = counters.get(a.rule) {
        c.inc();
    }
    let index = a.rule;
    out.records.push(Arc::new(sink::Record {
        flow: Flow::Alerts,
        id: a.id.clone().unwrap_or_default(),
        time: a.time(),
        level: Some(rule.level),
        rule: Some((rule.id.clone(), rule.title.clone())),
        user: a.user().map(str::to_owned),
        doc: a.into_json(),
    }));
    out.rules.push(Some(index));
}
