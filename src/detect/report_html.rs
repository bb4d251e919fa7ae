//! `tripline scan --html`: the scan's report as one self-contained HTML page that a responder
//! can open from a USB stick in a room without network: no script, no remote font or image, a
//! Content-Security-Policy that forbids both, the timeline as inline SVG and collapsible
//! sections as `<details>`.
//!
//! Every string in the page that came from the input (user names, user agents, object names,
//! messages, example events) goes through [`esc`]; the page holds no script, so the policy can
//! forbid scripts altogether. The numbers come from the same alerts and counters as
//! `--format json` and the text report. Long lists are capped ([`MAX_IDENTITIES`],
//! [`MAX_ROWS_PER_IDENTITY`], [`super::forensic::EXAMPLES_PER_RULE`]) and the page says what it
//! left out, so that a scan with 100,000 alerts stays a page of a few hundred KB.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::forensic::{AlertRow, Attack, Forensic, EXAMPLES_PER_RULE};
use super::Report;
use crate::event::SkipReason;
use crate::rules::{Level, RuleSet};

/// The policy: nothing may load (no script, no connection, no frame, no font), styles only
/// from the page itself, images only as `data:` URLs. Without `script-src` nothing runs,
/// inline event handlers included.
pub const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

/// How many identities the page lists, most alerts first.
pub const MAX_IDENTITIES: usize = 100;
/// How many alerts each listed identity shows, in time order.
pub const MAX_ROWS_PER_IDENTITY: usize = 50;
/// How many identities and source addresses each rule names.
const TOP_PER_RULE: usize = 5;
/// How many of the busiest minutes the timeline marks.
const BUSIEST_MINUTES: usize = 5;
/// At most this many bars in the timeline.
const MAX_BUCKETS: i64 = 180;
/// How many input names the summary lists.
const MAX_INPUT_NAMES: usize = 20;

/// Levels from the most severe down, as the page lists them.
const LEVELS: [Level; 5] = [
    Level::Critical,
    Level::High,
    Level::Medium,
    Level::Low,
    Level::Informational,
];

/// Escapes text for HTML text and double- or single-quoted attribute values: `&`, `<`, `>`,
/// `"` and `'`. Every value from the input passes through here.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What the page is made of.
pub struct HtmlReport<'a> {
    pub report: &'a Report,
    pub forensic: &'a Forensic,
    pub rules: &'a RuleSet,
    /// The names of the inputs, in the order scanned.
    pub input_names: &'a [String],
    /// Matches throttled, over all rules.
    pub suppressed_total: u64,
}

fn level_index(l: Level) -> usize {
    LEVELS
        .iter()
        .position(|x| *x == l)
        .unwrap_or(LEVELS.len() - 1)
}

fn time_text(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string(),
    )
}

fn opt(v: &Option<String>) -> String {
    esc(v.as_deref().unwrap_or("-"))
}

/// Counts by key, most first, ties by key.
fn top(counts: HashMap<&str, u64>, n: usize) -> (Vec<(String, u64)>, usize) {
    let mut v: Vec<(&str, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let total = v.len();
    (
        v.into_iter()
            .take(n)
            .map(|(k, c)| (k.to_string(), c))
            .collect(),
        total,
    )
}

const STYLE: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;color:#1d1d1f;background:#fff}
h1{font-size:1.6em;margin:.2em 0}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.4em 0}th,td{text-align:left;padding:.2em .6em;border-bottom:1px solid #eee;vertical-align:top}
th{background:#f6f6f6}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
details{border:1px solid #ddd;border-radius:4px;margin:.3em 0;padding:.2em .6em}
details>summary{cursor:pointer;font-weight:600}details[open]>summary{margin-bottom:.4em}
pre{background:#f6f8fa;padding:.6em;overflow:auto;max-height:30em;font-size:12px;white-space:pre-wrap;word-break:break-all}
.lvl{display:inline-block;border-radius:3px;padding:0 .4em;color:#fff;font-size:.85em;font-weight:600}
.critical{background:#7b1fa2}.high{background:#c62828}.medium{background:#ef6c00}.low{background:#1565c0}.informational{background:#607d8b}
.note{color:#555;font-style:italic}.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em}
.chart{border:1px solid #ddd;background:#fcfcfc}
.wrap{word-break:break-all}
"#;

const LEVEL_COLOURS: [&str; 5] = ["#7b1fa2", "#c62828", "#ef6c00", "#1565c0", "#607d8b"];

impl HtmlReport<'_> {
    /// The whole page.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(64 * 1024);
        let mut capped: Vec<String> = Vec::new();
        out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
        let _ = writeln!(
            out,
            "<meta http-equiv=\"Content-Security-Policy\" content=\"{}\">",
            esc(CSP)
        );
        out.push_str("<meta name=\"referrer\" content=\"no-referrer\">\n");
        out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
        out.push_str("<title>tripline scan report</title>\n");
        let _ = writeln!(out, "<style>{STYLE}</style></head><body>");
        out.push_str("<h1>tripline scan report</h1>\n");
        let _ = writeln!(
            out,
            "<p class=\"note\">Written by tripline {} from the same alerts as <code>tripline scan --format json</code>; secret values are redacted.</p>",
            env!("CARGO_PKG_VERSION")
        );
        self.summary(&mut out);
        self.timeline(&mut out);
        self.per_rule(&mut out, &mut capped);
        self.per_identity(&mut out, &mut capped);
        self.attack(&mut out);
        out.push_str("<section id=\"capped\"><h2>What this page leaves out</h2>\n");
        if capped.is_empty() {
            out.push_str("<p id=\"nothing-capped\">Nothing: every alert is shown.</p>\n");
        } else {
            out.push_str("<ul>\n");
            for c in &capped {
                let _ = writeln!(out, "<li class=\"capped\">{c}</li>");
            }
            out.push_str("</ul>\n<p>The JSON output (<code>--format json</code>) and the timeline (<code>--timeline</code>) hold every alert.</p>\n");
        }
        out.push_str("</section>\n</body></html>\n");
        out
    }

    fn alerts_by_level(&self) -> [u64; 5] {
        let mut by = [0u64; 5];
        for (idx, s) in &self.report.per_rule {
            by[level_index(self.rules.meta(*idx).level)] += s.alerts;
        }
        by
    }

    fn summary(&self, out: &mut String) {
        let r = self.report;
        let st = &r.stats;
        out.push_str("<section id=\"summary\"><h2>Summary</h2>\n<table>\n");
        let names: Vec<String> = self
            .input_names
            .iter()
            .take(MAX_INPUT_NAMES)
            .map(|n| format!("<span class=\"mono wrap\">{}</span>", esc(n)))
            .collect();
        let more = self.input_names.len().saturating_sub(MAX_INPUT_NAMES);
        let _ = writeln!(
            out,
            "<tr><th>Inputs</th><td><b id=\"inputs\">{}</b>: {}{}</td></tr>",
            r.inputs,
            names.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            out,
            "<tr><th>Time covered</th><td><span id=\"first-event\">{}</span> to <span id=\"last-event\">{}</span> (event times read)</td></tr>",
            time_text(self.forensic.first_event),
            time_text(self.forensic.last_event)
        );
        let _ = writeln!(
            out,
            "<tr><th>Events</th><td><b id=\"events\">{}</b> events read from {} lines, {} bytes</td></tr>",
            st.events, st.lines, st.bytes
        );
        let _ = writeln!(
            out,
            "<tr><th>Alerts</th><td><b id=\"alerts-total\">{}</b> from {} rules ({} more matches throttled)</td></tr>",
            r.alerts_total(),
            r.per_rule.len(),
            self.suppressed_total
        );
        let by = self.alerts_by_level();
        let levels: Vec<String> = LEVELS
            .iter()
            .zip(by)
            .map(|(l, n)| {
                format!(
                    "<span class=\"lvl {l}\">{l}</span> <b id=\"level-{l}\">{n}</b>",
                    l = l.as_str()
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "<tr><th>Alerts by level</th><td>{}</td></tr>",
            levels.join(" &nbsp; ")
        );
        let reasons: Vec<String> = SkipReason::ALL
            .iter()
            .filter(|x| st.skipped(**x) > 0)
            .map(|x| {
                format!(
                    "{} <b id=\"skipped-{}\">{}</b>",
                    x.as_str(),
                    x.as_str(),
                    st.skipped(*x)
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "<tr><th>Skipped input</th><td><b id=\"skipped-total\">{}</b>{}</td></tr>",
            st.skipped_total(),
            if reasons.is_empty() {
                String::new()
            } else {
                format!(": {}", reasons.join(", "))
            }
        );
        if !r.errors_shown.is_empty() {
            out.push_str("<tr><th>First skipped lines</th><td><details><summary>");
            let _ = write!(out, "{} shown", r.errors_shown.len());
            out.push_str("</summary><pre>");
            for e in &r.errors_shown {
                let _ = writeln!(out, "{}", esc(&e.to_string()));
            }
            out.push_str("</pre></details></td></tr>\n");
        }
        if st.bodies_omitted > 0 {
            let _ = writeln!(
                out,
                "<tr><th>Bodies omitted</th><td>{} events had a body replaced by <code>skipped-too-big-size-object</code> (AKS): rules on fields inside them could not match.</td></tr>",
                st.bodies_omitted
            );
        }
        out.push_str("</table></section>\n");
    }

    fn timeline(&self, out: &mut String) {
        out.push_str("<section id=\"timeline\"><h2>Timeline of alerts</h2>\n");
        let timed: Vec<(DateTime<Utc>, usize)> = self
            .forensic
            .rows
            .iter()
            .filter_map(|r| {
                r.time
                    .map(|t| (t, level_index(self.rules.meta(r.rule).level)))
            })
            .collect();
        let untimed = self.forensic.rows.len() - timed.len();
        let (Some(min), Some(max)) = (
            timed.iter().map(|t| t.0).min(),
            timed.iter().map(|t| t.0).max(),
        ) else {
            out.push_str("<p>No alert has a time.</p></section>\n");
            return;
        };
        // The covered time, where the events' range is known and reasonable; the alerts'
        // otherwise.
        let start = self.forensic.first_event.map_or(min, |f| f.min(min));
        let end = self.forensic.last_event.map_or(max, |l| l.max(max));
        let span = (end - start).num_seconds().max(1);
        let bucket = [
            60i64, 300, 900, 1800, 3600, 10800, 21600, 43200, 86400, 604800, 2592000,
        ]
        .into_iter()
        .find(|b| span / b < MAX_BUCKETS)
        .unwrap_or_else(|| span / MAX_BUCKETS + 1);
        let origin = start.timestamp().div_euclid(bucket) * bucket;
        let n = ((end.timestamp() - origin) / bucket + 1).max(1) as usize;
        let mut bars = vec![[0u64; 5]; n];
        let mut minutes: HashMap<i64, [u64; 5]> = HashMap::new();
        for (t, l) in &timed {
            let i = ((t.timestamp() - origin) / bucket).clamp(0, n as i64 - 1) as usize;
            bars[i][*l] += 1;
            minutes.entry(t.timestamp().div_euclid(60)).or_default()[*l] += 1;
        }
        let mut busiest: Vec<(i64, [u64; 5])> = minutes.into_iter().collect();
        busiest.sort_by(|a, b| {
            let (sa, sb): (u64, u64) = (a.1.iter().sum(), b.1.iter().sum());
            sb.cmp(&sa).then(a.0.cmp(&b.0))
        });
        busiest.truncate(BUSIEST_MINUTES);

        let (w, h, left, top_pad, bottom) = (1000.0f64, 220.0f64, 48.0, 18.0, 36.0);
        let plot_w = w - left - 8.0;
        let plot_h = h - top_pad - bottom;
        let peak = bars
            .iter()
            .map(|b| b.iter().sum::<u64>())
            .max()
            .unwrap_or(1)
            .max(1);
        let bw = plot_w / n as f64;
        let bucket_name = match bucket {
            60 => "minute".to_string(),
            3600 => "hour".to_string(),
            86400 => "day".to_string(),
            b if b % 86400 == 0 => format!("{} days", b / 86400),
            b if b % 3600 == 0 => format!("{} hours", b / 3600),
            b if b % 60 == 0 => format!("{} minutes", b / 60),
            b => format!("{b} seconds"),
        };
        let _ = writeln!(
            out,
            "<p>Alerts per {bucket_name}, stacked by level, from {} to {}. Numbered marks: the busiest minutes (listed below). Hover a bar for its counts.</p>",
            time_text(Some(start)),
            time_text(Some(end))
        );
        let _ = writeln!(
            out,
            "<svg class=\"chart\" id=\"timeline-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"100%\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"alerts over time\">"
        );
        // Axes and the peak's label.
        let _ = writeln!(
            out,
            "<line x1=\"{left}\" y1=\"{top_pad}\" x2=\"{left}\" y2=\"{y0}\" stroke=\"#999\"/><line x1=\"{left}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"#999\"/>",
            y0 = top_pad + plot_h,
            x1 = left + plot_w
        );
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{peak}</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">0</text>",
            left - 4.0,
            top_pad + 10.0,
            left - 4.0,
            top_pad + plot_h
        );
        for (i, b) in bars.iter().enumerate() {
            let total: u64 = b.iter().sum();
            if total == 0 {
                continue;
            }
            let x = left + i as f64 * bw;
            let t0 = DateTime::<Utc>::from_timestamp(origin + i as i64 * bucket, 0);
            let mut y = top_pad + plot_h;
            let _ = write!(out, "<g class=\"bar\" data-alerts=\"{total}\"><title>");
            let parts: Vec<String> = LEVELS
                .iter()
                .zip(b)
                .filter(|(_, c)| **c > 0)
                .map(|(l, c)| format!("{c} {}", l.as_str()))
                .collect();
            let _ = write!(
                out,
                "{}: {total} alerts ({})</title>",
                time_text(t0),
                parts.join(", ")
            );
            // Bottom up: informational first, critical on top.
            for l in (0..LEVELS.len()).rev() {
                if b[l] == 0 {
                    continue;
                }
                let bh = (b[l] as f64 / peak as f64 * plot_h).max(1.0);
                y -= bh;
                let _ = write!(
                    out,
                    "<rect x=\"{x:.2}\" y=\"{y:.2}\" width=\"{:.2}\" height=\"{bh:.2}\" fill=\"{}\"/>",
                    (bw - 1.0).max(1.0),
                    LEVEL_COLOURS[l]
                );
            }
            out.push_str("</g>\n");
        }
        for (rank, (minute, counts)) in busiest.iter().enumerate() {
            let i = ((minute * 60 - origin) / bucket).clamp(0, n as i64 - 1);
            let total: u64 = counts.iter().sum();
            let bar_total: u64 = bars[i as usize].iter().sum();
            let x = left + (i as f64 + 0.5) * bw;
            let y = top_pad + plot_h - bar_total as f64 / peak as f64 * plot_h - 3.0;
            let _ = writeln!(
                out,
                "<text x=\"{x:.2}\" y=\"{:.2}\" font-size=\"11\" font-weight=\"bold\" text-anchor=\"middle\" fill=\"#000\">{}<title>{}: {total} alerts</title></text>",
                y.max(10.0),
                rank + 1,
                time_text(DateTime::<Utc>::from_timestamp(minute * 60, 0))
            );
        }
        let _ = writeln!(
            out,
            "<text x=\"{left}\" y=\"{}\" font-size=\"11\">{}</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            h - 18.0,
            time_text(Some(start)),
            left + plot_w,
            h - 18.0,
            time_text(Some(end))
        );
        // The legend.
        for (k, l) in LEVELS.iter().enumerate() {
            let x = left + k as f64 * 110.0;
            let _ = write!(
                out,
                "<rect x=\"{x}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>",
                h - 10.0,
                LEVEL_COLOURS[k],
                x + 14.0,
                h - 1.0,
                l.as_str()
            );
        }
        out.push_str("\n</svg>\n");
        if untimed > 0 {
            let _ = writeln!(
                out,
                "<p class=\"note\">{untimed} alerts have no time and are not in the chart.</p>"
            );
        }
        out.push_str("<h3>Busiest minutes</h3>\n<table id=\"busiest\"><tr><th>#</th><th>minute</th><th class=\"n\">alerts</th><th>by level</th></tr>\n");
        for (rank, (minute, counts)) in busiest.iter().enumerate() {
            let parts: Vec<String> = LEVELS
                .iter()
                .zip(counts)
                .filter(|(_, c)| **c > 0)
                .map(|(l, c)| format!("<span class=\"lvl {l}\">{l}</span> {c}", l = l.as_str()))
                .collect();
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                rank + 1,
                time_text(DateTime::<Utc>::from_timestamp(minute * 60, 0)),
                counts.iter().sum::<u64>(),
                parts.join(" ")
            );
        }
        out.push_str("</table></section>\n");
    }

    fn per_rule(&self, out: &mut String, capped: &mut Vec<String>) {
        out.push_str("<section id=\"rules\"><h2>Alerts by rule</h2>\n");
        // Per rule: alerts by identity, alerts by source address.
        type Counts<'r> = (HashMap<&'r str, u64>, HashMap<&'r str, u64>);
        let mut by_rule: HashMap<usize, Counts<'_>> = HashMap::new();
        for r in &self.forensic.rows {
            let e = by_rule.entry(r.rule).or_default();
            *e.0.entry(r.identity.as_deref().unwrap_or("<none>"))
                .or_default() += 1;
            *e.1.entry(r.source_ip.as_deref().unwrap_or("<none>"))
                .or_default() += 1;
        }
        let mut rows: Vec<_> = self.report.per_rule.iter().collect();
        rows.sort_by(|a, b| {
            let (la, lb) = (self.rules.meta(*a.0).level, self.rules.meta(*b.0).level);
            lb.cmp(&la)
                .then(b.1.alerts.cmp(&a.1.alerts))
                .then(a.0.cmp(b.0))
        });
        if rows.is_empty() {
            out.push_str("<p>No alerts.</p>\n");
        }
        let mut examples_capped = 0usize;
        for (idx, s) in rows {
            let meta = self.rules.meta(*idx);
            let level = meta.level.as_str();
            let _ = writeln!(
                out,
                "<details class=\"rule\" data-rule-id=\"{}\" data-level=\"{level}\" data-alerts=\"{}\"><summary><span class=\"lvl {level}\">{level}</span> <span class=\"count\">{}</span> &times; <span class=\"rule-title\">{}</span></summary>",
                esc(&meta.id),
                s.alerts,
                s.alerts,
                esc(&meta.title)
            );
            out.push_str("<table>\n");
            let _ = writeln!(
                out,
                "<tr><th>rule id</th><td class=\"mono\">{}</td></tr>",
                esc(&meta.id)
            );
            if let Some(d) = &meta.description {
                let _ = writeln!(out, "<tr><th>description</th><td>{}</td></tr>", esc(d));
            }
            let throttled = self.rules.suppressed(*idx);
            let _ = writeln!(
                out,
                "<tr><th>alerts</th><td>{}{}</td></tr>",
                s.alerts,
                if throttled > 0 {
                    format!(" (+{throttled} throttled)")
                } else {
                    String::new()
                }
            );
            let attack = Attack::of_tags(&meta.tags);
            let pairs = |v: &[(String, String)]| {
                if v.is_empty() {
                    "-".to_string()
                } else {
                    v.iter()
                        .map(|(id, name)| format!("{} {}", esc(id), esc(name)))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            };
            let _ = writeln!(
                out,
                "<tr><th>ATT&amp;CK tactic</th><td>{}</td></tr><tr><th>ATT&amp;CK technique</th><td>{}</td></tr>",
                pairs(&attack.tactics),
                pairs(&attack.techniques)
            );
            let _ = writeln!(
                out,
                "<tr><th>first</th><td>{}</td></tr><tr><th>last</th><td>{}</td></tr>",
                time_text(s.first),
                time_text(s.last)
            );
            let (users, sources) = by_rule.remove(idx).unwrap_or_default();
            for (label, counts) in [("top identities", users), ("top source addresses", sources)] {
                let (list, total) = top(counts, TOP_PER_RULE);
                let items: Vec<String> = list
                    .iter()
                    .map(|(k, c)| format!("<span class=\"mono wrap\">{}</span> ({c})", esc(k)))
                    .collect();
                let more = if total > TOP_PER_RULE {
                    format!(" and {} more", total - TOP_PER_RULE)
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "<tr><th>{label}</th><td>{}{more}</td></tr>",
                    items.join(", ")
                );
            }
            out.push_str("</table>\n");
            let examples = self
                .forensic
                .examples
                .get(idx)
                .map_or(&[][..], Vec::as_slice);
            for (i, e) in examples.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "<details class=\"example\"><summary>Example event {} (redacted)</summary><pre>{}</pre></details>",
                    i + 1,
                    esc(e)
                );
            }
            if s.alerts > examples.len() as u64 {
                examples_capped += 1;
                let _ = writeln!(
                    out,
                    "<p class=\"note\">{} of {} alerts' events shown.</p>",
                    examples.len(),
                    s.alerts
                );
            }
            out.push_str("</details>\n");
        }
        if examples_capped > 0 {
            capped.push(format!(
                "Example events: at most {EXAMPLES_PER_RULE} per rule ({examples_capped} rules have more alerts)."
            ));
        }
        out.push_str("</section>\n");
    }

    fn per_identity(&self, out: &mut String, capped: &mut Vec<String>) {
        out.push_str("<section id=\"identities\"><h2>Alerts by identity</h2>\n<p>What each identity did that alerted, in time order; identities with the most alerts first.</p>\n");
        let mut by_id: HashMap<&str, Vec<&AlertRow>> = HashMap::new();
        for r in self.forensic.rows_by_time() {
            by_id
                .entry(r.identity.as_deref().unwrap_or("<none>"))
                .or_default()
                .push(r);
        }
        let mut ids: Vec<(&str, Vec<&AlertRow>)> = by_id.into_iter().collect();
        ids.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
        let total_ids = ids.len();
        let mut rows_capped = 0usize;
        for (name, rows) in ids.iter().take(MAX_IDENTITIES) {
            let rules: BTreeSet<usize> = rows.iter().map(|r| r.rule).collect();
            let _ = writeln!(
                out,
                "<details class=\"identity\" data-alerts=\"{}\"><summary><span class=\"mono wrap identity-name\">{}</span>: {} alerts from {} rules, {} to {}</summary>",
                rows.len(),
                esc(name),
                rows.len(),
                rules.len(),
                time_text(rows.first().and_then(|r| r.time)),
                time_text(rows.last().and_then(|r| r.time)),
            );
            out.push_str("<table><tr><th>time</th><th>level</th><th>rule</th><th>verb</th><th>resource</th><th>namespace/name</th><th>source</th><th>message</th></tr>\n");
            for r in rows.iter().take(MAX_ROWS_PER_IDENTITY) {
                let meta = self.rules.meta(r.rule);
                let level = meta.level.as_str();
                let object = match (&r.namespace, &r.name) {
                    (Some(ns), Some(n)) => format!("{ns}/{n}"),
                    (None, Some(n)) => n.clone(),
                    (Some(ns), None) => format!("{ns}/"),
                    (None, None) => "-".to_string(),
                };
                let _ = writeln!(
                    out,
                    "<tr><td>{}</td><td><span class=\"lvl {level}\">{level}</span></td><td>{}</td><td>{}</td><td>{}</td><td class=\"wrap\">{}</td><td class=\"mono\">{}</td><td class=\"wrap\">{}</td></tr>",
                    time_text(r.time),
                    esc(&meta.title),
                    opt(&r.verb),
                    opt(&r.resource),
                    esc(&object),
                    opt(&r.source_ip),
                    esc(&r.message)
                );
            }
            out.push_str("</table>\n");
            if rows.len() > MAX_ROWS_PER_IDENTITY {
                rows_capped += 1;
                let mut rest: BTreeMap<&str, u64> = BTreeMap::new();
                for r in &rows[MAX_ROWS_PER_IDENTITY..] {
                    *rest
                        .entry(self.rules.meta(r.rule).title.as_str())
                        .or_default() += 1;
                }
                let rest: Vec<String> = rest
                    .iter()
                    .map(|(t, c)| format!("{} ({c})", esc(t)))
                    .collect();
                let _ = writeln!(
                    out,
                    "<p class=\"note\">The first {MAX_ROWS_PER_IDENTITY} of {} alerts shown; the other {}, by rule: {}.</p>",
                    rows.len(),
                    rows.len() - MAX_ROWS_PER_IDENTITY,
                    rest.join(", ")
                );
            }
            out.push_str("</details>\n");
        }
        if rows_capped > 0 {
            capped.push(format!(
                "Alerts by identity: the first {MAX_ROWS_PER_IDENTITY} alerts of each identity ({rows_capped} identities have more)."
            ));
        }
        if total_ids > MAX_IDENTITIES {
            let hidden: usize = ids[MAX_IDENTITIES..].iter().map(|(_, r)| r.len()).sum();
            let line = format!(
                "Identities: the {MAX_IDENTITIES} with the most alerts of {total_ids} (the other {} have {hidden} alerts).",
                total_ids - MAX_IDENTITIES
            );
            let _ = writeln!(out, "<p class=\"note\">{line}</p>");
            capped.push(line);
        }
        out.push_str("</section>\n");
    }

    fn attack(&self, out: &mut String) {
        out.push_str("<section id=\"attack\"><h2>MITRE ATT&amp;CK coverage</h2>\n<p>The tactics and techniques of the rules that alerted.</p>\n");
        // tactic (id, name) -> (alerts, technique -> alerts, rule titles)
        type Tally = (u64, BTreeMap<(String, String), u64>, BTreeSet<String>);
        let mut tactics: BTreeMap<(String, String), Tally> = BTreeMap::new();
        let mut unmapped = (0u64, 0usize);
        for (idx, s) in &self.report.per_rule {
            let meta = self.rules.meta(*idx);
            let a = Attack::of_tags(&meta.tags);
            if a.tactics.is_empty() && a.techniques.is_empty() {
                unmapped.0 += s.alerts;
                unmapped.1 += 1;
                continue;
            }
            let keys = if a.tactics.is_empty() {
                vec![("-".to_string(), "(no tactic)".to_string())]
            } else {
                a.tactics.clone()
            };
            for k in keys {
                let t = tactics.entry(k).or_default();
                t.0 += s.alerts;
                for tech in &a.techniques {
                    *t.1.entry(tech.clone()).or_default() += s.alerts;
                }
                t.2.insert(meta.title.clone());
            }
        }
        if tactics.is_empty() {
            out.push_str("<p>No alert maps to ATT&amp;CK.</p>\n");
        } else {
            out.push_str("<table id=\"attack-table\"><tr><th>tactic</th><th class=\"n\">alerts</th><th>techniques (alerts)</th><th>rules</th></tr>\n");
            for ((id, name), (alerts, techs, titles)) in &tactics {
                let techs: Vec<String> = techs
                    .iter()
                    .map(|((tid, tname), c)| format!("{} {} ({c})", esc(tid), esc(tname)))
                    .collect();
                let titles: Vec<String> = titles.iter().map(|t| esc(t)).collect();
                let _ = writeln!(
                    out,
                    "<tr class=\"tactic\" data-tactic=\"{}\"><td>{} {}</td><td class=\"n\">{alerts}</td><td>{}</td><td>{}</td></tr>",
                    esc(id),
                    esc(id),
                    esc(name),
                    techs.join("<br>"),
                    titles.join("<br>")
                );
            }
            out.push_str("</table>\n");
        }
        if unmapped.1 > 0 {
            let _ = writeln!(
                out,
                "<p class=\"note\">Not mapped to ATT&amp;CK: {} alerts from {} rules.</p>",
                unmapped.0, unmapped.1
            );
        }
        out.push_str("</section>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_markup_character_is_escaped() {
        assert_eq!(
            esc(r#"<script>alert('x')</script>"><img src=x onerror=a()>&"#),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=a()&gt;&amp;"
        );
        assert_eq!(esc("plain text"), "plain text");
    }
}
