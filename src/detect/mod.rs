//! The detect stage, shared by `tripline scan` and the daemon: a [`Detector`] runs the rule set
//! over decoded events and turns each match into an [`Alert`] (an ECS document written from the
//! redacted event). [`Report`] sums alerts up for `tripline scan`; [`Forensic`] keeps what its
//! HTML page ([`HtmlReport`]) and timeline export need of each alert.
//!
//! The stateful stage belongs here too, after the stateless matching: correlation windows
//! ([`correlate`]). First-seen baselines ([`crate::rules::baseline`]) live with the rule set,
//! like throttling, because they decide whether a match alerts before throttling does.

pub mod correlate;
pub mod forensic;
mod report;
pub mod report_html;

pub use forensic::{AlertRow, Forensic, TimelineFormat};
pub use report::{Report, RuleSummary, MAX_ERRORS_SHOWN};
pub use report_html::HtmlReport;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::Value;

use self::correlate::{Correlator, Fire, Observation};

use crate::alert::{AlertTemplate, AuditFields, EventPart};
use crate::event::redact::redacted_event_json;
use crate::event::Event;
use crate::rules::{Hits, Match, RuleSet};

/// One alert: the rule that fired and its ECS document, written as JSON.
#[derive(Debug, Clone)]
pub struct Alert {
    /// Index of the alert's source in the rule set: a rule, or a correlation after the rules
    /// ([`RuleSet::meta`]).
    pub rule: usize,
    /// The document id of a correlation alert (rule, group and the event that made it fire); a
    /// rule's alert takes its id from its event.
    pub id: Option<String>,
    doc: Vec<u8>,
    message: String,
    user: Option<String>,
    time: Option<DateTime<Utc>>,
}

impl Alert {
    /// The ECS document, as compact JSON.
    pub fn json(&self) -> &[u8] {
        &self.doc
    }

    pub fn into_json(self) -> Vec<u8> {
        self.doc
    }

    /// The ECS document as a value (parsed from [`Alert::json`]).
    pub fn to_value(&self) -> Value {
        serde_json::from_slice(&self.doc).unwrap_or_default()
    }

    /// `message`: the rendered rule output.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// `user.name`.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// `@timestamp`.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        self.time
    }
}

/// Turns events into alerts. Shared by `scan` and the daemon.
pub struct Detector<'r> {
    pub rules: &'r RuleSet,
    pub cluster_name: Option<String>,
    /// `host.name` of alerts (the daemon's node).
    pub node_name: Option<String>,
    /// Events larger than this (bytes of JSON text) are matched whole, but their alerts carry
    /// them reduced ([`crate::alert::with_reduced_event`]): bodies replaced by a marker. `None`:
    /// no limit (`scan`).
    pub max_event_bytes: Option<usize>,
    matches: Vec<Match<'r>>,
    /// Per rule, built on its first alert.
    templates: Vec<Option<Arc<AlertTemplate>>>,
    /// The stateful stage, shared by the workers of the daemon (its reorder buffer puts their
    /// observations back in event-time order); `None` when no correlation is loaded.
    correlator: Option<Arc<Mutex<Correlator>>>,
    /// Rules referenced by correlations that matched the event.
    inputs: Vec<usize>,
    fires: Vec<Fire>,
    /// The event times seen since the last [`Detector::flush`]: every event moves the
    /// correlations' watermark, not only those they count.
    times: TimeSample,
}

/// The event times that move the correlations' watermark, read cheaply: one event in 32 has
/// its time parsed, and the last event's time is kept as written and parsed only when the
/// sample is taken, so that the end of a burst moves time past it.
#[derive(Debug, Default)]
pub struct TimeSample {
    seen: u64,
    latest: Option<DateTime<Utc>>,
    /// The time (as written) of the latest event not parsed.
    last_time: String,
}

impl TimeSample {
    /// Samples `ev`'s time.
    pub fn note(&mut self, ev: &Event<'_>) {
        self.seen = self.seen.wrapping_add(1);
        if self.seen % 32 == 1 {
            if let Some(t) = ev.time() {
                self.saw(t);
            }
        } else {
            self.last_time.clear();
            self.last_time.push_str(ev.time_str().unwrap_or(""));
        }
    }

    /// A time known without sampling.
    pub fn saw(&mut self, t: DateTime<Utc>) {
        self.latest = Some(self.latest.map_or(t, |l| l.max(t)));
    }

    /// The latest time sampled (the last event's included), and a fresh start.
    pub fn take(&mut self) -> Option<DateTime<Utc>> {
        if let Some(t) = crate::event::parse_timestamp(&self.last_time) {
            self.saw(t);
        }
        self.last_time.clear();
        self.latest.take()
    }
}

impl<'r> Detector<'r> {
    pub fn new(rules: &'r RuleSet, cluster_name: Option<String>) -> Self {
        Detector {
            rules,
            cluster_name,
            node_name: None,
            max_event_bytes: None,
            matches: Vec::new(),
            templates: vec![None; rules.len()],
            correlator: None,
            inputs: Vec::new(),
            fires: Vec::new(),
            times: TimeSample::default(),
        }
    }

    /// A correlator for `rules`' correlations, to share between the detectors of one rule set;
    /// `None` when it has none.
    pub fn correlator_for(rules: &RuleSet) -> Option<Arc<Mutex<Correlator>>> {
        Self::correlator_with(rules, correlate::CorrelatorOptions::default())
    }

    /// [`Detector::correlator_for`] with other bounds (the daemon's `stateful:` settings).
    pub fn correlator_with(
        rules: &RuleSet,
        opts: correlate::CorrelatorOptions,
    ) -> Option<Arc<Mutex<Correlator>>> {
        if rules.correlations().iter().any(|c| c.is_active()) {
            Some(Arc::new(Mutex::new(Correlator::new(
                rules.correlations(),
                opts,
            ))))
        } else {
            None
        }
    }

    /// The input has been quiet for `idle` beyond the daemon's idle timeout: moves the
    /// correlations' event time on by as much ([`Correlator::advance_idle`]) and emits the
    /// correlation alerts that releases.
    pub fn advance_idle(&mut self, idle: std::time::Duration, emit: &mut dyn FnMut(Alert)) {
        let Some(c) = self.correlator.clone() else {
            return;
        };
        let mut fires = std::mem::take(&mut self.fires);
        if let Ok(mut c) = c.lock() {
            c.advance_idle(idle, &mut fires);
        }
        self.correlation_alerts(&mut fires, emit);
        self.fires = fires;
    }

    /// Feeds matches of the rules that correlations count to `correlator`.
    pub fn with_correlator(mut self, correlator: Option<Arc<Mutex<Correlator>>>) -> Self {
        self.correlator = correlator;
        self
    }

    /// Moves the correlations' watermark to the latest event time seen (less the lateness) and
    /// emits the correlation alerts that releases. The daemon's workers call it after each
    /// batch, so that events no correlation counts still move time forward.
    pub fn flush(&mut self, emit: &mut dyn FnMut(Alert)) {
        let (Some(c), Some(t)) = (self.correlator.clone(), self.times.take()) else {
            return;
        };
        let mut fires = std::mem::take(&mut self.fires);
        if let Ok(mut c) = c.lock() {
            c.advance_to(t, &mut fires);
        }
        self.correlation_alerts(&mut fires, emit);
        self.fires = fires;
    }

    /// An event time seen by the caller: [`Detector::flush`] moves the watermark at least to
    /// it. For callers that give [`Detector::detect_prepared`] only the events with hits.
    pub fn saw_time(&mut self, t: DateTime<Utc>) {
        self.times.saw(t);
    }

    /// End of input (`scan`): every buffered observation is released and every window closed;
    /// the correlation alerts that gives are passed to `emit`.
    pub fn finish(&mut self, emit: &mut dyn FnMut(Alert)) {
        let Some(c) = self.correlator.clone() else {
            return;
        };
        let mut fires = std::mem::take(&mut self.fires);
        if let Ok(mut c) = c.lock() {
            c.finish(&mut fires);
        }
        self.correlation_alerts(&mut fires, emit);
        self.fires = fires;
    }

    /// Late observations (older than the lateness bound when they arrived) the correlations
    /// did not count.
    pub fn correlation_late_total(&self) -> u64 {
        self.correlator
            .as_ref()
            .and_then(|c| c.lock().ok().map(|c| c.late_total()))
            .unwrap_or(0)
    }

    /// Runs the rules on `ev` and calls `emit` with each alert. Detection sees the original
    /// event; the alert carries the redacted copy, and its message is scrubbed of every value
    /// that redaction removed. Allocates only when a rule fires.
    pub fn detect(&mut self, ev: &Event<'_>, emit: &mut dyn FnMut(Alert)) {
        let mut hits = Hits::new();
        self.rules.hits(ev, &mut hits);
        self.detect_hits(ev, &hits, emit);
    }

    /// [`Detector::detect`] with the event's [`RuleSet::hits`] worked out before, on any
    /// thread: the stateful part of detection (throttling, once-per-request, first-seen
    /// baselines, correlations) and the alerts, to be run on the events in their order.
    ///
    /// `tripline scan` with several threads calls it only for events with hits. Skipping the
    /// others changes what [`Detector::flush`] would move the correlations' watermark to,
    /// which `scan` never calls ([`Detector::finish`] closes every window at the end).
    pub fn detect_hits(&mut self, ev: &Event<'_>, hits: &[usize], emit: &mut dyn FnMut(Alert)) {
        self.matches.clear();
        if self.correlator.is_some() {
            // The watermark needs a recent time, not every one (every event a correlation
            // counts moves it too, below).
            self.times.note(ev);
            self.inputs.clear();
            // An event delivered again (a source re-reading after a restart) was counted when
            // it first came.
            let fresh = std::cell::OnceCell::new();
            self.rules.matches_from_hits_into(
                ev,
                hits,
                &mut self.matches,
                Some(&mut self.inputs),
                &fresh,
            );
            if !self.inputs.is_empty() && *fresh.get_or_init(|| self.rules.first_delivery(ev)) {
                self.observe(ev, emit);
            }
        } else {
            self.rules.matches_from_hits_into(
                ev,
                hits,
                &mut self.matches,
                None,
                &std::cell::OnceCell::new(),
            );
        }
        self.alerts_of_matches(ev, emit);
    }

    /// What [`Detector::detect_prepared`] reads of `ev`, an event whose [`RuleSet::hits`] are
    /// `hits` (not empty): the stateless part of [`Detector::detect_hits`], on any thread.
    pub fn prepare(rules: &RuleSet, ev: &Event<'_>, hits: Hits) -> PreparedEvent {
        let inputs: Hits = hits
            .iter()
            .copied()
            .filter(|&i| !rules.correlation_inputs(i).is_empty())
            .collect();
        let prepared = rules.prepare(ev, hits);
        let observations = if inputs.is_empty() {
            None
        } else {
            prepared.time().map(|time| {
                let hash = prepared
                    .hash()
                    .copied()
                    .unwrap_or_else(|| ev.content_hash());
                let all = observations(rules, &inputs, ev, time, "");
                PreparedObservations::new(time, hash, all)
            })
        };
        PreparedEvent {
            rules: prepared,
            counted: !inputs.is_empty(),
            observations,
        }
    }

    /// [`Detector::detect_hits`] from what [`Detector::prepare`] read of the event: the
    /// stateful part, run on the events with hits in their order. Correlation alerts go to
    /// `emit`; the matches that alert are returned, for [`Detector::alerts_of`] to turn into
    /// alerts with the event, after those correlation alerts.
    ///
    /// Every event it is given moves the correlations' watermark, which only
    /// [`Detector::flush`] reads (`tripline scan` never calls it).
    pub fn detect_prepared(
        &mut self,
        p: PreparedEvent,
        emit: &mut dyn FnMut(Alert),
    ) -> Vec<Match<'r>> {
        let mut matches = Vec::new();
        let fresh = std::cell::OnceCell::new();
        self.rules
            .matches_from_prepared_into(&p.rules, &mut matches, &fresh);
        if self.correlator.is_some() {
            if let Some(t) = p.rules.time() {
                self.times.saw(t);
            }
            if p.counted && *fresh.get_or_init(|| self.rules.first_delivery_prepared(&p.rules)) {
                if let Some(o) = p.observations {
                    let time = o.time;
                    self.observe_all(time, o.expand(), emit);
                }
            }
        }
        matches
    }

    /// The alerts of `matches` ([`Detector::detect_prepared`]), carrying `ev`.
    pub fn alerts_of(
        &mut self,
        ev: &Event<'_>,
        matches: Vec<Match<'r>>,
        emit: &mut dyn FnMut(Alert),
    ) {
        self.matches = matches;
        self.alerts_of_matches(ev, emit);
    }

    /// The alerts of `self.matches`, carrying `ev` or its reduced form.
    fn alerts_of_matches(&mut self, ev: &Event<'_>, emit: &mut dyn FnMut(Alert)) {
        if self.matches.is_empty() {
            return;
        }
        if self.max_event_bytes.is_some_and(|max| ev.raw().len() > max) {
            let mut emit = Some(emit);
            let done = crate::alert::with_reduced_event(ev, |small| {
                if let Some(emit) = emit.take() {
                    self.alerts(small, emit);
                }
            });
            if done.is_some() {
                return;
            }
            if let Some(emit) = emit {
                self.alerts(ev, emit);
            }
            return;
        }
        self.alerts(ev, emit);
    }

    /// Hands the event's matches of correlated rules to the correlator, and emits the
    /// correlation alerts that releases.
    fn observe(&mut self, ev: &Event<'_>, emit: &mut dyn FnMut(Alert)) {
        if self.correlator.is_none() {
            return;
        }
        let Some(time) = ev.time() else {
            return; // windows run on event time: an event without one cannot be placed
        };
        let doc_id = ev.content_id();
        let observations = observations(self.rules, &self.inputs, ev, time, &doc_id);
        self.observe_all(time, observations, emit);
    }

    /// Hands `observations` of an event at `time` to the correlator, and emits the correlation
    /// alerts that releases.
    fn observe_all(
        &mut self,
        time: DateTime<Utc>,
        observations: Vec<Observation>,
        emit: &mut dyn FnMut(Alert),
    ) {
        let Some(correlator) = self.correlator.clone() else {
            return;
        };
        self.times.saw(time);
        let mut fires = std::mem::take(&mut self.fires);
        if let Ok(mut c) = correlator.lock() {
            for obs in observations {
                c.observe(obs, &mut fires);
            }
        }
        self.correlation_alerts(&mut fires, emit);
        self.fires = fires;
    }

    /// The alerts of the correlations that fired (those that alert on their own), drained from
    /// `fires`.
    fn correlation_alerts(&mut self, fires: &mut Vec<Fire>, emit: &mut dyn FnMut(Alert)) {
        for fire in fires.drain(..) {
            let Some(c) = self.rules.correlations().get(fire.corr) else {
                continue;
            };
            if !c.alerts {
                continue;
            }
            let index = self.rules.len() + fire.corr;
            let group_text: Vec<String> =
                fire.group.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let what = match c.kind {
                crate::rules::correlation::CorrelationKind::EventCount => {
                    format!("{} matching events", fire.count)
                }
                crate::rules::correlation::CorrelationKind::ValueCount => format!(
                    "{} distinct {}",
                    fire.count,
                    c.value_field.as_ref().map_or("values", |f| f.name.as_str())
                ),
                _ => format!("{} of {} rules matched", fire.count, c.inputs.len()),
            };
            let message = format!(
                "{}: {} for {} between {} and {}",
                c.meta.title,
                what,
                group_text.join(", "),
                fire.first
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                fire.last
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            );
            let template = AlertTemplate::new(&c.meta).with_host(self.node_name.as_deref());
            // The cluster of the events counted, else the instance's.
            let cluster = fire
                .group
                .iter()
                .find(|(k, _)| k == correlate::CLUSTER_FIELD)
                .map(|(_, v)| v.as_str())
                .or(self.cluster_name.as_deref());
            let mut doc = template.render(
                serde_json::json!({}),
                &message,
                cluster,
                fire.suppressed_before,
            );
            let group: serde_json::Map<String, Value> = fire
                .group
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            let user = fire
                .group
                .iter()
                .find(|(k, _)| k == "user.username")
                .map(|(_, v)| v.clone());
            let source_ip = fire
                .group
                .iter()
                .find(|(k, _)| k == "source.ip")
                .map(|(_, v)| v.clone());
            if let Some(obj) = doc.as_object_mut() {
                // No single audit event: the contributing ones are listed by id below.
                obj.remove("kubernetes");
                let first = fire
                    .first
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                let last = fire
                    .last
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                obj.insert("@timestamp".into(), Value::String(last.clone()));
                if let Some(event) = obj.get_mut("event").and_then(|e| e.as_object_mut()) {
                    event.insert("start".into(), Value::String(first.clone()));
                    event.insert("end".into(), Value::String(last.clone()));
                }
                if let Some(u) = &user {
                    obj.insert("user".into(), serde_json::json!({"name": u}));
                }
                if let Some(ip) = &source_ip {
                    obj.insert("source".into(), serde_json::json!({"ip": ip}));
                }
                let mut related = serde_json::Map::new();
                if let Some(u) = &user {
                    related.insert("user".into(), serde_json::json!([u]));
                }
                if let Some(ip) = &source_ip {
                    related.insert("ip".into(), serde_json::json!([ip]));
                }
                if !related.is_empty() {
                    obj.insert("related".into(), Value::Object(related));
                }
                let tripline = obj
                    .entry("tripline")
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Some(t) = tripline.as_object_mut() {
                    t.insert(
                        "correlation".into(),
                        serde_json::json!({
                            "type": c.kind.as_str(),
                            "group": group,
                            "count": fire.count,
                            "values": fire.values,
                            "first": first,
                            "last": last,
                            "timespan_seconds": c.timespan.as_secs(),
                            "events": fire.doc_ids,
                            "trigger": fire.trigger,
                        }),
                    );
                }
            }
            let mut id_parts: Vec<&[u8]> = vec![c.meta.id.as_bytes(), c.meta.title.as_bytes()];
            for (k, v) in &fire.group {
                id_parts.push(k.as_bytes());
                id_parts.push(v.as_bytes());
            }
            id_parts.push(fire.trigger.as_bytes());
            let id = crate::event::content_id(&id_parts);
            emit(Alert {
                rule: index,
                id: Some(id),
                doc: serde_json::to_vec(&doc).unwrap_or_default(),
                user,
                message,
                time: Some(fire.last),
            });
        }
    }

    /// The alerts of `self.matches`, carrying `ev` (the event matched, or its reduced form).
    fn alerts(&mut self, ev: &Event<'_>, emit: &mut dyn FnMut(Alert)) {
        let (audit, redacted) = redacted_event_json(ev);
        // The same scanner, with the same nesting limit, decoded the event, so its text parses
        // again; if it ever did not, the alert would carry no event, no fields from it and the
        // rule's title as its message, rather than anything unredacted.
        let fields = AuditFields::of_redacted(ev, &redacted);
        let time = fields.time().map(|(_, t)| t);
        for m in &self.matches {
            let (message, output_fields) = if redacted.complete {
                // A Falco output reads its fields from the redacted event.
                let text = std::str::from_utf8(&audit).unwrap_or_default();
                m.rule.render(ev, text, &redacted.secrets)
            } else {
                (m.rule.meta.title.clone(), serde_json::Map::new())
            };
            let template = self.templates[m.index].get_or_insert_with(|| {
                Arc::new(AlertTemplate::new(&m.rule.meta).with_host(self.node_name.as_deref()))
            });
            let doc = EventPart {
                fields: &fields,
                message: &message,
                cluster_name: ev.cluster().or(self.cluster_name.as_deref()),
                suppressed: m.suppressed,
                audit: &audit,
            }
            .document(template);
            let doc = match &m.rule.falco {
                Some(falco) => with_falco(doc, &m.rule.meta, falco, output_fields),
                None => doc,
            };
            emit(Alert {
                rule: m.index,
                id: None,
                doc,
                user: fields.username.map(String::from),
                message,
                time,
            });
        }
    }
}

/// The observations of the correlations that count the rules `inputs` (hits of `ev`, an event
/// at `time` whose content id is `doc_id`).
fn observations(
    rules: &RuleSet,
    inputs: &[usize],
    ev: &Event<'_>,
    time: DateTime<Utc>,
    doc_id: &str,
) -> Vec<Observation> {
    // Values that redaction removes never reach a correlation alert.
    let secrets = std::cell::OnceCell::new();
    let text = |field: &crate::event::FieldRef| -> Option<String> {
        let mut values: Vec<String> = Vec::new();
        ev.any_value(field, &mut |v| {
            match v {
                crate::event::FieldValue::Str(s) => values.push(s.to_string()),
                crate::event::FieldValue::Int(i) => values.push(i.to_string()),
                crate::event::FieldValue::Float(x) => values.push(x.to_string()),
                crate::event::FieldValue::Bool(b) => values.push(b.to_string()),
                crate::event::FieldValue::Null | crate::event::FieldValue::Object => {}
            }
            false
        });
        if values.is_empty() {
            return None;
        }
        let joined = values.join(",");
        // Only these fields can hold what redaction removes; redacting the event (bodies of
        // many megabytes) is left to the rare group-by on them.
        if !field.may_be_redacted() {
            return Some(joined);
        }
        let secrets: &Vec<String> = secrets.get_or_init(|| redacted_event_json(ev).1.secrets);
        if secrets
            .iter()
            .any(|s| !s.is_empty() && joined.contains(s.as_str()))
        {
            Some("<redacted>".to_string())
        } else {
            Some(joined)
        }
    };
    let mut observations = Vec::new();
    for &rule in inputs {
        for &(corr, input) in rules.correlation_inputs(rule) {
            let c = &rules.correlations()[corr];
            // A group-by field the event lacks: the event belongs to no group.
            let group: Option<Vec<String>> = c
                .group_by
                .iter()
                .map(|g| {
                    g.per_input
                        .get(input)
                        .and_then(|f| f.as_ref())
                        .and_then(text)
                })
                .collect();
            let Some(mut group) = group else { continue };
            // The cluster closes the group: one cluster's events never complete another's
            // window, and an event without one keeps the group it always had.
            if let Some(cluster) = ev.cluster() {
                group.push(cluster.to_string());
            }
            let value = c
                .value_field
                .as_ref()
                .and_then(|v| v.per_input.get(input).and_then(|f| f.as_ref()))
                .and_then(text);
            observations.push(Observation {
                corr,
                input,
                time,
                group,
                value,
                doc_id: doc_id.to_string(),
            });
        }
    }
    observations
}

/// An event with hits as [`Detector::detect_prepared`] reads it, without the event.
pub struct PreparedEvent {
    pub rules: crate::rules::Prepared,
    /// A correlation counts one of the rules hit.
    counted: bool,
    /// The correlation observations of a counted event with a time.
    observations: Option<PreparedObservations>,
}

/// The correlation observations of an event, made on one thread for another: their texts in
/// one buffer (one allocation to free on the other thread, not one per text).
struct PreparedObservations {
    time: DateTime<Utc>,
    /// The event's [`crate::event::content_hash`], its id.
    hash: [u8; 16],
    /// The group-by values and values, one after another.
    text: String,
    /// Where each text ends in `text`, in order.
    ends: smallvec::SmallVec<[usize; 8]>,
    /// Per observation: the correlation, the input, its number of group-by values, and whether
    /// a value follows them.
    items: smallvec::SmallVec<[(usize, usize, usize, bool); 2]>,
}

impl PreparedObservations {
    fn new(time: DateTime<Utc>, hash: [u8; 16], all: Vec<Observation>) -> Self {
        let mut o = PreparedObservations {
            time,
            hash,
            text: String::new(),
            ends: smallvec::SmallVec::new(),
            items: smallvec::SmallVec::new(),
        };
        for obs in &all {
            for g in &obs.group {
                o.text.push_str(g);
                o.ends.push(o.text.len());
            }
            if let Some(v) = &obs.value {
                o.text.push_str(v);
                o.ends.push(o.text.len());
            }
            o.items
                .push((obs.corr, obs.input, obs.group.len(), obs.value.is_some()));
        }
        o
    }

    /// The observations again.
    fn expand(self) -> Vec<Observation> {
        let doc_id = crate::event::hex_id(&self.hash);
        let mut at = 0;
        let mut ends = self.ends.iter();
        let mut next = || {
            let &end = ends.next()?;
            let t = self.text.get(at..end).unwrap_or_default().to_string();
            at = end;
            Some(t)
        };
        self.items
            .iter()
            .map(|&(corr, input, n, value)| Observation {
                corr,
                input,
                time: self.time,
                group: (0..n).filter_map(|_| next()).collect(),
                value: if value { next() } else { None },
                doc_id: doc_id.clone(),
            })
            .collect()
    }
}

/// Adds the `falco` object of a Falco rule's alert to its document: the rule's name, its
/// priority as Falco names it, its source and tags, and the `output_fields` of its output
/// (what Falco's JSON alert holds beside the ECS fields).
fn with_falco(
    mut doc: Vec<u8>,
    meta: &crate::rules::RuleMeta,
    falco: &crate::rules::falco::FalcoInfo,
    output_fields: serde_json::Map<String, Value>,
) -> Vec<u8> {
    if doc.last() != Some(&b'}') || doc.len() < 2 {
        return doc;
    }
    doc.pop();
    // Written directly, its keys in the order a `serde_json::Map` keeps them (sorted).
    doc.extend_from_slice(b",\"falco\":{\"output_fields\":");
    // A map of JSON values always serialises.
    let _ = serde_json::to_writer(&mut doc, &output_fields);
    doc.extend_from_slice(b",\"priority\":");
    crate::event::write_json_str(&mut doc, falco.priority.as_str());
    doc.extend_from_slice(b",\"rule\":");
    crate::event::write_json_str(&mut doc, &meta.title);
    doc.extend_from_slice(b",\"source\":");
    crate::event::write_json_str(&mut doc, &falco.source);
    doc.extend_from_slice(b",\"tags\":[");
    for (i, tag) in meta.tags.iter().enumerate() {
        if i > 0 {
            doc.push(b',');
        }
        crate::event::write_json_str(&mut doc, tag);
    }
    doc.extend_from_slice(b"]}}");
    doc
}

/// Runs the embedded tests of `set`'s correlations (`tests:` with event sequences): each test
/// feeds its events, in order, through a fresh correlator and the rules, closes every window,
/// and checks whether the correlation alerted. Returns the number of tests run and a message per
/// failure (`source:line: ...`). Tests of inactive correlations are not run.
pub fn run_correlation_tests(set: &RuleSet) -> (usize, Vec<String>) {
    let mut ran = 0;
    let mut failures = Vec::new();
    for (ci, c) in set.correlations().iter().enumerate() {
        if !c.is_active() {
            continue;
        }
        let index = set.len() + ci;
        for t in &c.tests {
            ran += 1;
            let mut detector =
                Detector::new(set, None).with_correlator(Detector::correlator_for(set));
            let mut fired = 0;
            let mut problem = None;
            for (i, text) in t.events_json.iter().enumerate() {
                crate::event::decode_value_into(text, &mut |d| match d {
                    Ok(ev) => {
                        if ev.time().is_none() {
                            problem = Some(format!("event {} has no time", i + 1));
                        }
                        detector.detect(ev, &mut |a| fired += usize::from(a.rule == index));
                    }
                    Err((reason, msg)) => {
                        problem =
                            Some(format!("event {} does not decode ({reason}): {msg}", i + 1));
                    }
                });
            }
            detector.finish(&mut |a| fired += usize::from(a.rule == index));
            let ok = problem.is_none() && (fired > 0) == t.expect_match;
            if !ok {
                failures.push(format!(
                    "{}:{}: correlation `{}` ({}), test `{}`: expected {}, got {} alert(s){}",
                    c.meta.source,
                    t.line,
                    c.meta.title,
                    c.meta.id,
                    t.name,
                    if t.expect_match {
                        "an alert"
                    } else {
                        "no alert"
                    },
                    fired,
                    problem.map(|p| format!("; {p}")).unwrap_or_default()
                ));
            }
        }
    }
    (ran, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `falco` object is written directly: the bytes that serializing it as a value gives.
    #[test]
    fn the_falco_object_is_what_serializing_it_writes() {
        let meta = crate::rules::RuleMeta {
            id: "falco:Odd \"rule\"".into(),
            title: "Odd \"rule\" é\u{1}".into(),
            description: None,
            status: None,
            author: None,
            date: None,
            modified: None,
            level: crate::rules::Level::High,
            tags: vec!["k8s".into(), "mitre_\\x".into()],
            references: vec![],
            falsepositives: vec![],
            source: "f.yaml".into(),
            ruleset: "custom".into(),
        };
        let falco = crate::rules::falco::FalcoInfo {
            priority: crate::rules::falco::Priority::Warning,
            output_fields: Vec::new(),
            source: "k8s_audit".into(),
        };
        let mut fields = serde_json::Map::new();
        fields.insert("ka.user.name".into(), Value::from("bob"));
        fields.insert(
            "ka.req.pod.containers.image".into(),
            serde_json::json!(["a", null]),
        );
        for tags in [meta.tags.clone(), Vec::new()] {
            let meta = crate::rules::RuleMeta {
                tags,
                ..meta.clone()
            };
            let doc = with_falco(b"{\"a\":1}".to_vec(), &meta, &falco, fields.clone());
            let want = serde_json::json!({
                "a": 1,
                "falco": {
                    "rule": meta.title,
                    "priority": falco.priority.as_str(),
                    "source": falco.source,
                    "tags": meta.tags,
                    "output_fields": fields,
                }
            });
            assert_eq!(
                String::from_utf8(doc).unwrap(),
                serde_json::to_string(&want).unwrap()
            );
        }
    }
    use crate::alert::render_alert;
    use crate::event::decode_value_into;
    use crate::event::redact::redact_event;

    /// A correlation grouped by a field that can hold a credential (here `requestURI` with an
    /// `access_token`) writes the group value as `<redacted>`; one grouped by a user name
    /// writes it as it is.
    #[test]
    fn correlation_groups_never_carry_what_redaction_removes() {
        let text = r#"title: Secret get
id: 0b6d1c2e-3f4a-4b5c-8d6e-7f8091a2b3c4
name: secret_get
logsource: {product: kubernetes, service: audit}
detection:
  selection: {verb: get, objectRef.resource: secrets}
  condition: selection
level: low
---
title: By URI
id: 1c7e2d3f-4a5b-4c6d-8e7f-8091a2b3c4d5
correlation:
  type: event_count
  rules: [secret_get]
  group-by: [requestURI, user.username]
  timespan: 1m
  condition: {gte: 2}
level: high
"#;
        let set = rule_set(text);
        let mut d = Detector::new(&set, None).with_correlator(Detector::correlator_for(&set));
        let mut alerts = Vec::new();
        for i in 0..2 {
            let ev = format!(
                r#"{{"kind":"Event","auditID":"a{i}","verb":"get","requestURI":"/api/v1/namespaces/p/secrets/s?access_token=abcdefgh123","user":{{"username":"mallory"}},"objectRef":{{"resource":"secrets","namespace":"p","name":"s"}},"stageTimestamp":"2026-01-02T03:04:0{i}Z"}}"#
            );
            decode_value_into(&ev, &mut |r| {
                if let Ok(ev) = r {
                    d.detect(ev, &mut |a| alerts.push(a));
                }
            });
        }
        d.finish(&mut |a| alerts.push(a));
        let corr: Vec<Value> = alerts
            .iter()
            .filter(|a| a.rule >= set.len())
            .map(Alert::to_value)
            .collect();
        assert_eq!(corr.len(), 1, "{corr:?}");
        let group = &corr[0]["tripline"]["correlation"]["group"];
        assert_eq!(group["requestURI"], "<redacted>", "{group}");
        assert_eq!(group["user.username"], "mallory");
        assert!(!String::from_utf8_lossy(alerts[alerts.len() - 1].json()).contains("abcdefgh123"));
    }

    /// A rule set compiled from `text` (Sigma rules and correlations).
    fn rule_set(text: &str) -> RuleSet {
        crate::rules::test_rule_set(text)
    }

    /// A secret read by `user` at `time`, as the events-flow document a first-tier tripline of
    /// `cluster` writes it (or as the API server wrote it, for `None`).
    fn secret_get_from(cluster: Option<&str>, user: &str, time: &str, n: u32) -> String {
        let ev = format!(
            r#"{{"kind":"Event","auditID":"c{n}","stage":"ResponseComplete","verb":"get","requestURI":"/api/v1/namespaces/p/secrets/s","user":{{"username":"{user}"}},"sourceIPs":["192.0.2.7"],"objectRef":{{"resource":"secrets","namespace":"p","name":"s"}},"responseStatus":{{"code":200}},"requestReceivedTimestamp":"{time}","stageTimestamp":"{time}"}}"#
        );
        let Some(cluster) = cluster else { return ev };
        let mut doc = None;
        decode_value_into(&ev, &mut |d| {
            doc = Some(crate::alert::write_event_document(
                &AlertTemplate::for_events(),
                d.unwrap(),
                Some(cluster),
            ));
        });
        String::from_utf8(doc.unwrap()).unwrap()
    }

    /// Runs `events` through `d` in order, then closes every window: the alerts, as documents.
    fn run(d: &mut Detector<'_>, events: &[String]) -> Vec<Value> {
        let mut alerts = Vec::new();
        for text in events {
            let n = decode_value_into(text, &mut |r| d.detect(r.unwrap(), &mut |a| alerts.push(a)));
            assert_eq!(n, 1, "{text}");
        }
        d.finish(&mut |a| alerts.push(a));
        alerts.iter().map(Alert::to_value).collect()
    }

    const SECRET_GET_RULE: &str = "title: Secret get\nid: 0b6d1c2e-3f4a-4b5c-8d6e-7f8091a2b3c4\nname: secret_get\nlogsource: {product: kubernetes, service: audit}\ndetection:\n  selection: {verb: get, objectRef.resource: secrets}\n  condition: selection\nlevel: low\n";

    #[test]
    fn two_clusters_interleaved_never_complete_each_others_correlation_window() {
        let set = rule_set(&format!(
            "{SECRET_GET_RULE}---\ntitle: Many secrets\nid: 1c7e2d3f-4a5b-4c6d-8e7f-8091a2b3c4d5\ncorrelation:\n  type: event_count\n  rules: [secret_get]\n  group-by: [user.username]\n  timespan: 1m\n  condition: {{gte: 2}}\nlevel: high\n"
        ));
        let corr = |alerts: &[Value]| -> Vec<Value> {
            alerts
                .iter()
                .filter(|a| a["tripline"]["correlation"].is_object())
                .cloned()
                .collect()
        };
        // alice reads one secret in each cluster: no cluster reached two.
        let mut d = Detector::new(&set, Some("central".into()))
            .with_correlator(Detector::correlator_for(&set));
        let events = [
            secret_get_from(Some("prod-eu"), "alice", "2026-01-02T03:04:00Z", 1),
            secret_get_from(Some("prod-us"), "alice", "2026-01-02T03:04:10Z", 2),
        ];
        assert_eq!(corr(&run(&mut d, &events)), Vec::<Value>::new());

        // Interleaved, each cluster reaching two: one alert per cluster, each naming its own.
        let mut d = Detector::new(&set, Some("central".into()))
            .with_correlator(Detector::correlator_for(&set));
        let events = [
            secret_get_from(Some("prod-eu"), "alice", "2026-01-02T03:04:00Z", 1),
            secret_get_from(Some("prod-us"), "alice", "2026-01-02T03:04:05Z", 2),
            secret_get_from(Some("prod-eu"), "alice", "2026-01-02T03:04:10Z", 3),
            secret_get_from(Some("prod-us"), "alice", "2026-01-02T03:04:15Z", 4),
        ];
        let fired = corr(&run(&mut d, &events));
        let clusters: Vec<&Value> = fired
            .iter()
            .map(|a| &a["orchestrator"]["cluster"]["name"])
            .collect();
        assert_eq!(clusters, ["prod-eu", "prod-us"], "{fired:?}");
        for a in &fired {
            let group = &a["tripline"]["correlation"]["group"];
            assert_eq!(group["user.username"], "alice");
            assert_eq!(
                group["orchestrator.cluster.name"],
                a["orchestrator"]["cluster"]["name"]
            );
            assert_eq!(a["tripline"]["correlation"]["count"], 2);
        }

        // Events without a cluster keep the group they always had: two of them fire, under
        // the instance's cluster name, with no cluster in the group.
        let mut d = Detector::new(&set, Some("prod".into()))
            .with_correlator(Detector::correlator_for(&set));
        let events = [
            secret_get_from(None, "alice", "2026-01-02T03:04:00Z", 1),
            secret_get_from(None, "alice", "2026-01-02T03:04:10Z", 2),
        ];
        let fired = corr(&run(&mut d, &events));
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0]["orchestrator"]["cluster"]["name"], "prod");
        assert_eq!(
            fired[0]["tripline"]["correlation"]["group"],
            serde_json::json!({"user.username": "alice"})
        );
    }

    #[test]
    fn two_clusters_never_throttle_each_other() {
        let set = rule_set(&format!(
            "{SECRET_GET_RULE}throttle:\n  key: [user.username]\n  window: 1h\n"
        ));
        let mut d = Detector::new(&set, None);
        let events = [
            secret_get_from(Some("prod-eu"), "alice", "2026-01-02T03:04:00Z", 1),
            secret_get_from(Some("prod-us"), "alice", "2026-01-02T03:04:10Z", 2),
            secret_get_from(Some("prod-eu"), "alice", "2026-01-02T03:04:20Z", 3),
            secret_get_from(Some("prod-us"), "alice", "2026-01-02T03:04:30Z", 4),
            secret_get_from(None, "alice", "2026-01-02T03:04:40Z", 5),
            secret_get_from(None, "alice", "2026-01-02T03:04:50Z", 6),
        ];
        let alerts = run(&mut d, &events);
        let clusters: Vec<Option<&str>> = alerts
            .iter()
            .map(|a| a["orchestrator"]["cluster"]["name"].as_str())
            .collect();
        // One alert per cluster within the window, and one for the events without a cluster.
        assert_eq!(
            clusters,
            [Some("prod-eu"), Some("prod-us"), None],
            "{alerts:?}"
        );
    }

    #[test]
    fn two_clusters_never_share_a_first_seen_key() {
        let set = rule_set(&format!(
            "{SECRET_GET_RULE}first_seen:\n  fields: [user.username]\n  history: 30d\n  learning: 1d\n"
        ));
        let mut d = Detector::new(&set, None);
        let events = [
            // Learnt: alice in prod-eu.
            secret_get_from(Some("prod-eu"), "alice", "2026-01-02T03:04:00Z", 1),
            // After the learning period: known in prod-eu, new in prod-us and without a
            // cluster.
            secret_get_from(Some("prod-eu"), "alice", "2026-01-05T03:04:00Z", 2),
            secret_get_from(Some("prod-us"), "alice", "2026-01-05T03:05:00Z", 3),
            secret_get_from(Some("prod-us"), "alice", "2026-01-05T03:06:00Z", 4),
            secret_get_from(None, "alice", "2026-01-05T03:07:00Z", 5),
        ];
        let alerts = run(&mut d, &events);
        let clusters: Vec<Option<&str>> = alerts
            .iter()
            .map(|a| a["orchestrator"]["cluster"]["name"].as_str())
            .collect();
        assert_eq!(clusters, [Some("prod-us"), None], "{alerts:?}");
    }

    /// The alert the detector writes is the document built from the redacted event as a value,
    /// field for field.
    #[test]
    fn alerts_are_the_documents_of_their_redacted_events() {
        let set = RuleSet::new(crate::rules::RulesConfig::default().load(&[], true).rules);
        let events = [
            // A secret read with a token in the URI (`url.original` is the redacted one).
            r#"{"kind":"Event","level":"RequestResponse","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/secrets/db?access_token=abcdefgh123","verb":"get","user":{"username":"mallory","groups":["dev","system:authenticated"]},"sourceIPs":["203.0.113.9","10.0.0.1"],"userAgent":"curl/8.0","objectRef":{"resource":"secrets","namespace":"prod","name":"db","apiVersion":"v1"},"responseStatus":{"code":200},"responseObject":{"kind":"Secret","data":{"password":"aHVudGVyMg=="}},"requestReceivedTimestamp":"2026-01-02T03:04:05.000000Z","stageTimestamp":"2026-01-02T03:04:05.100000Z"}"#,
            // An exec, pretty-printed, with escapes and an unknown member.
            "{\n  \"kind\": \"Event\", \"stage\": \"ResponseStarted\", \"verb\": \"create\",\n  \"requestURI\": \"/api/v1/namespaces/p/pods/x/exec?command=sh\",\n  \"user\": {\"username\": \"al\\u0069ce\"}, \"sourceIPs\": [\"192.0.2.1\"],\n  \"objectRef\": {\"resource\": \"pods\", \"subresource\": \"exec\", \"namespace\": \"p\", \"name\": \"x\"},\n  \"responseStatus\": {\"code\": 101}, \"x-extra\": [1, 2.50, null],\n  \"stageTimestamp\": \"2026-01-02T03:04:05Z\"\n}",
            // Anonymous access with a bearer token in an annotation.
            r#"{"kind":"Event","stage":"ResponseComplete","verb":"list","requestURI":"/api/v1/pods","user":{"username":"system:anonymous","groups":["system:unauthenticated"]},"sourceIPs":["198.51.100.4"],"objectRef":{"resource":"pods"},"responseStatus":{"code":200},"annotations":{"authorization.k8s.io/decision":"allow","note":"Authorization: Bearer abcdefghijklmnop"},"stageTimestamp":"2026-01-02T03:04:05Z"}"#,
        ];
        let mut seen = 0;
        for text in events {
            let mut detector = Detector::new(&set, Some("prod".into()));
            detector.node_name = Some("cp-1".into());
            decode_value_into(text, &mut |d| {
                let ev = d.unwrap();
                detector.detect(ev, &mut |a| {
                    seen += 1;
                    let mut event = crate::event::parse_value(text).unwrap();
                    redact_event(&mut event);
                    let meta = &set.rules()[a.rule].meta;
                    let want = AlertTemplate::new(meta).with_host(Some("cp-1")).render(
                        event.clone(),
                        a.message(),
                        Some("prod"),
                        0,
                    );
                    assert_eq!(a.to_value(), want, "{text}");
                    // And what building the document field by field from the value gave.
                    assert_eq!(
                        want,
                        crate::alert::reference::render(
                            &AlertTemplate::new(meta).with_host(Some("cp-1")),
                            event.clone(),
                            a.message(),
                            Some("prod"),
                            0
                        )
                    );
                    assert_eq!(want, {
                        let mut w = render_alert(&event, meta, a.message(), Some("prod"), 0);
                        w["host"] = serde_json::json!({"name": "cp-1"});
                        w
                    });
                    assert!(crate::event::unique_keys(
                        std::str::from_utf8(a.json()).unwrap()
                    ));
                    let doc = a.to_value();
                    for secret in ["aHVudGVyMg==", "abcdefgh123", "abcdefghijklmnop"] {
                        assert!(!String::from_utf8_lossy(a.json()).contains(secret), "{doc}");
                    }
                    assert_eq!(a.user(), doc["user"]["name"].as_str());
                    assert_eq!(
                        a.time().map(|t| t.to_rfc3339()),
                        doc["@timestamp"]
                            .as_str()
                            .map(|t| DateTime::parse_from_rfc3339(t).unwrap().to_rfc3339())
                    );
                });
            });
        }
        assert!(seen >= 3, "{seen} alerts");
    }
}
