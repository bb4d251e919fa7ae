//! A correlator's state as data: written to `state_dir` with the source positions it reflects
//! (and restored at start), and carried from one rule set to the next on a reload. Each
//! correlation's windows are keyed by [`Correlation::fingerprint`](crate::rules::correlation::Correlation::fingerprint):
//! a correlation whose definition is unchanged gets its windows back, one that changed or is
//! gone loses them.

use serde::{Deserialize, Serialize};

use super::*;

/// Everything a [`Correlator`] holds.
#[derive(Serialize, Deserialize, Default)]
pub struct CorrelatorSnapshot {
    watermark: Option<DateTime<Utc>>,
    latest: Option<DateTime<Utc>>,
    seq: u64,
    tick: u64,
    late_total: u64,
    evicted_total: u64,
    correlations: Vec<CorrelationSnapshot>,
}

#[derive(Serialize, Deserialize)]
struct CorrelationSnapshot {
    fingerprint: String,
    groups: Vec<GroupSnapshot>,
    /// Observations still in the reorder buffer.
    pending: Vec<PendingSnapshot>,
}

#[derive(Serialize, Deserialize)]
struct GroupSnapshot {
    key: Vec<String>,
    touched: u64,
    state: State,
}

#[derive(Serialize, Deserialize)]
struct PendingSnapshot {
    input: usize,
    time: DateTime<Utc>,
    group: Vec<String>,
    value: Option<String>,
    doc_id: String,
    seq: u64,
}

impl CorrelatorSnapshot {
    /// Groups held, all correlations together.
    pub fn groups(&self) -> usize {
        self.correlations.iter().map(|c| c.groups.len()).sum()
    }
}

/// [`CorrelatorSnapshot`] borrowed from a live correlator: the same JSON without copying
/// the state first.
#[derive(Serialize)]
struct CorrelatorRef<'a> {
    watermark: Option<DateTime<Utc>>,
    latest: Option<DateTime<Utc>>,
    seq: u64,
    tick: u64,
    late_total: u64,
    evicted_total: u64,
    correlations: Vec<CorrelationRef<'a>>,
}

#[derive(Serialize)]
struct CorrelationRef<'a> {
    fingerprint: &'a str,
    groups: Vec<GroupRef<'a>>,
    pending: Vec<PendingRef<'a>>,
}

#[derive(Serialize)]
struct GroupRef<'a> {
    key: &'a [String],
    touched: u64,
    state: &'a State,
}

#[derive(Serialize)]
struct PendingRef<'a> {
    input: usize,
    time: DateTime<Utc>,
    group: &'a [String],
    value: &'a Option<String>,
    doc_id: &'a str,
    seq: u64,
}

impl Correlator {
    /// The state as the JSON of a [`CorrelatorSnapshot`], written straight from the live
    /// structures (the daemon's workers wait while it is taken).
    pub fn snapshot_json(&self) -> serde_json::Result<Vec<u8>> {
        let mut correlations: Vec<CorrelationRef<'_>> = self
            .plans
            .iter()
            .zip(&self.groups)
            .map(|(plan, groups)| CorrelationRef {
                fingerprint: &plan.fingerprint,
                groups: groups
                    .recency
                    .iter()
                    .filter_map(|(touched, key)| {
                        Some(GroupRef {
                            key,
                            touched: *touched,
                            state: &groups.map.get(key)?.state,
                        })
                    })
                    .collect(),
                pending: Vec::new(),
            })
            .collect();
        for Reverse(p) in self.pending.iter() {
            if let Some(c) = correlations.get_mut(p.obs.corr) {
                c.pending.push(PendingRef {
                    input: p.obs.input,
                    time: p.obs.time,
                    group: &p.obs.group,
                    value: &p.obs.value,
                    doc_id: &p.obs.doc_id,
                    seq: p.seq,
                });
            }
        }
        serde_json::to_vec(&CorrelatorRef {
            watermark: self.watermark,
            latest: self.latest,
            seq: self.seq,
            tick: self.tick,
            late_total: self.late_total,
            evicted_total: self.evicted_total,
            correlations,
        })
    }

    /// A copy of the state: [`Correlator::snapshot_json`] read back, so that there is one
    /// description of what a snapshot holds.
    pub fn snapshot(&self) -> CorrelatorSnapshot {
        self.snapshot_json()
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .unwrap_or_default()
    }

    /// Takes over `snap`: the watermark, and the windows and buffered observations of each
    /// correlation whose fingerprint this correlator has. Meant for a correlator that has not
    /// observed anything yet. Returns the number of correlations restored.
    pub fn restore(&mut self, snap: CorrelatorSnapshot) -> usize {
        if let Some(w) = snap.watermark {
            self.raise_watermark(w);
        }
        if let Some(l) = snap.latest {
            self.latest = Some(self.latest.map_or(l, |x| x.max(l)));
        }
        self.seq = self.seq.max(snap.seq);
        self.tick = self.tick.max(snap.tick);
        self.late_total += snap.late_total;
        self.evicted_total += snap.evicted_total;
        let mut restored = 0;
        let mut taken = vec![false; self.plans.len()];
        for corr in snap.correlations {
            let Some(c) = self
                .plans
                .iter()
                .zip(&taken)
                .position(|(p, &t)| !t && p.fingerprint == corr.fingerprint)
            else {
                continue;
            };
            taken[c] = true;
            restored += 1;
            let max = self.opts.max_groups.max(1);
            let skip = corr.groups.len().saturating_sub(max);
            // Oldest first: beyond the bound, the least recently seen groups are left out.
            for g in corr.groups.into_iter().skip(skip) {
                if let State::AtClose(st) = &g.state {
                    self.closes.insert((st.close, c, g.key.clone()));
                }
                let groups = &mut self.groups[c];
                if let Some(old) = groups.map.insert(
                    g.key.clone(),
                    Slot {
                        touched: g.touched,
                        state: g.state,
                    },
                ) {
                    groups.recency.remove(&old.touched);
                }
                groups.recency.insert(g.touched, g.key);
            }
            for p in corr.pending {
                self.pending.push(Reverse(Pending {
                    obs: Observation {
                        corr: c,
                        input: p.input,
                        time: p.time,
                        group: p.group,
                        value: p.value,
                        doc_id: p.doc_id,
                    },
                    seq: p.seq,
                }));
            }
        }
        restored
    }
}
