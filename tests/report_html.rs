//! `tripline scan --html` and `--timeline`: the page and the timeline hold the numbers of
//! `--format json` on the same input, no secret value, no markup from the input; a real browser
//! (headless Chromium, Debian's `chromium`) renders the page with nothing run and no console
//! error, and a scan with 100,000 alerts still gives a small page that says what it left out.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tripline(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_tripline"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "tripline {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn alerts(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| tripline::event::parse_value(l).expect("an alert per line"))
        .collect()
}

/// The number in the element `id` of the page: `id="ID">N<`.
fn number(page: &str, id: &str) -> u64 {
    let key = format!("id=\"{id}\">");
    let at = page
        .find(&key)
        .unwrap_or_else(|| panic!("no element {id} in the page"))
        + key.len();
    page[at..]
        .split('<')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("element {id} holds no number"))
}

/// The values of `name="..."` attributes, in page order, of the elements that also carry
/// `class="CLASS"` (the page writes class first).
fn attrs<'p>(page: &'p str, class: &str, name: &str) -> Vec<&'p str> {
    page.split(&format!("class=\"{class}\""))
        .skip(1)
        .map(|el| {
            let tag = el.split('>').next().unwrap_or_default();
            let key = format!("{name}=\"");
            let at = tag
                .find(&key)
                .unwrap_or_else(|| panic!("no {name} in {tag}"))
                + key.len();
            tag[at..].split('"').next().unwrap_or_default()
        })
        .collect()
}

/// RFC 4180 CSV into rows of cells.
fn csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let (mut row, mut cell) = (Vec::new(), String::new());
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    assert!(
        row.is_empty() && cell.is_empty(),
        "the CSV ends with a line break"
    );
    rows
}

fn time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

/// The sample with lines that are skipped, so that every counter of the summary is non-zero.
fn sample_with_bad_lines(dir: &Path) -> PathBuf {
    let mut text = std::fs::read_to_string(root().join("samples/audit.log")).unwrap();
    text.push_str("{not json\n{\"foo\": 1}\n");
    let p = dir.join("audit.log");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn the_page_and_the_timeline_count_what_the_json_output_holds() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_with_bad_lines(dir.path());
    let input = input.to_str().unwrap();
    let json = tripline(&["scan", "--format", "json", input]);
    let want = alerts(&json);
    assert!(want.len() >= 8, "{} alerts", want.len());
    // `tripline: N alerts (T throttled), E events, S skipped`
    let summary = String::from_utf8_lossy(&json.stderr).into_owned();
    let summary = summary.lines().last().unwrap_or_default();
    let field = |after: &str| -> u64 {
        let words: Vec<&str> = summary.split([' ', ',', '(', ')']).collect();
        let at = words.iter().position(|w| *w == after).unwrap();
        words[at - 1].parse().unwrap()
    };

    let page_path = dir.path().join("report.html");
    let csv_path = dir.path().join("timeline.csv");
    tripline(&[
        "scan",
        "--html",
        page_path.to_str().unwrap(),
        "--timeline",
        csv_path.to_str().unwrap(),
        input,
    ]);
    let page = std::fs::read_to_string(&page_path).unwrap();

    assert_eq!(number(&page, "alerts-total"), want.len() as u64);
    assert_eq!(number(&page, "alerts-total"), field("alerts"));
    assert_eq!(number(&page, "events"), field("events"));
    assert_eq!(number(&page, "skipped-total"), field("skipped"));
    assert_eq!(number(&page, "skipped-total"), 2);
    assert_eq!(number(&page, "skipped-malformed_json"), 1);
    assert_eq!(number(&page, "skipped-not_an_event"), 1);
    assert_eq!(number(&page, "inputs"), 1);

    // Per rule and per level.
    let mut per_rule: BTreeMap<String, u64> = BTreeMap::new();
    let mut per_level: BTreeMap<String, u64> = BTreeMap::new();
    for a in &want {
        *per_rule
            .entry(a["rule"]["id"].as_str().unwrap().to_string())
            .or_default() += 1;
        *per_level
            .entry(a["tripline"]["rule"]["level"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let ids = attrs(&page, "rule", "data-rule-id");
    let counts = attrs(&page, "rule", "data-alerts");
    let shown: BTreeMap<String, u64> = ids
        .iter()
        .zip(&counts)
        .map(|(id, n)| (id.to_string(), n.parse().unwrap()))
        .collect();
    assert_eq!(shown.len(), ids.len(), "each rule once");
    assert_eq!(shown, per_rule);
    for level in ["critical", "high", "medium", "low", "informational"] {
        assert_eq!(
            number(&page, &format!("level-{level}")),
            per_level.get(level).copied().unwrap_or(0),
            "{level}"
        );
    }
    // Per identity: every alert once, nothing capped on this input.
    let by_identity: u64 = attrs(&page, "identity", "data-alerts")
        .iter()
        .map(|n| n.parse::<u64>().unwrap())
        .sum();
    assert_eq!(by_identity, want.len() as u64);
    // Only the example events are capped on this input (a rule with more alerts than examples).
    let capped: Vec<&str> = page.split("<li class=\"capped\">").skip(1).collect();
    assert_eq!(capped.len(), 1, "{capped:?}");
    assert!(capped[0].starts_with("Example events: at most 3 per rule"));
    // ATT&CK: each tactic counts the alerts whose documents name it.
    let mut per_tactic: BTreeMap<String, u64> = BTreeMap::new();
    for a in &want {
        for t in a["threat"]["tactic"]["id"].as_array().into_iter().flatten() {
            *per_tactic
                .entry(t.as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert!(!per_tactic.is_empty());
    for (tactic, n) in &per_tactic {
        let row = page
            .split(&format!("data-tactic=\"{tactic}\""))
            .nth(1)
            .unwrap_or_else(|| panic!("no row for {tactic}"));
        let cell = row.split("<td class=\"n\">").nth(1).unwrap();
        assert_eq!(
            cell.split('<').next(),
            Some(n.to_string().as_str()),
            "{tactic}"
        );
    }

    // The timeline: one row per alert, the same alerts, in time order.
    let rows = csv(&std::fs::read_to_string(&csv_path).unwrap());
    let header = &rows[0];
    assert_eq!(&header[..3], ["message", "datetime", "timestamp_desc"]);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows = &rows[1..];
    assert_eq!(rows.len(), want.len());
    assert!(rows.iter().all(|r| r.len() == header.len()));
    let times: Vec<DateTime<Utc>> = rows.iter().map(|r| time(&r[col("datetime")])).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "sorted by time");
    let mut got: Vec<(String, DateTime<Utc>, String)> = rows
        .iter()
        .map(|r| {
            (
                r[col("rule_id")].clone(),
                time(&r[col("datetime")]),
                r[col("identity")].clone(),
            )
        })
        .collect();
    let mut expected: Vec<(String, DateTime<Utc>, String)> = want
        .iter()
        .map(|a| {
            (
                a["rule"]["id"].as_str().unwrap().to_string(),
                time(a["@timestamp"].as_str().unwrap()),
                a["user"]["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    for r in rows {
        assert_eq!(r[col("timestamp_desc")], "Event Time");
        assert_eq!(
            r[col("timestamp")].parse::<i64>().unwrap(),
            time(&r[col("datetime")]).timestamp_micros()
        );
    }

    // JSON lines: the same rows as objects.
    let jsonl_path = dir.path().join("timeline.jsonl");
    tripline(&["scan", "--timeline", jsonl_path.to_str().unwrap(), input]);
    let lines: Vec<Value> = std::fs::read_to_string(&jsonl_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), rows.len());
    for (l, r) in lines.iter().zip(rows) {
        assert_eq!(l["message"], r[col("message")]);
        assert_eq!(l["datetime"], r[col("datetime")]);
        assert_eq!(l["rule_id"], r[col("rule_id")]);
        assert!(l["timestamp"].is_i64());
    }
}

#[test]
fn a_timeline_of_another_kind_of_file_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_tripline"))
        .args(["scan", "--timeline", "timeline.txt", "samples/audit.log"])
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(".csv or .jsonl"));
}

/// A rule over Secret creation whose message shows attacker-chosen fields.
const SECRET_RULE: &str = "title: Secret Created\nid: 5b0c7a52-8f1e-4d0b-a3f5-0c8d9e7f6a51\nlogsource:\n  product: kubernetes\n  service: audit\ndetection:\n  selection:\n    verb: create\n    objectRef.resource: secrets\n  condition: selection\nlevel: high\ntags:\n  - attack.credential-access\n  - attack.t1552.007\noutput: '{user.username} created secret {objectRef.namespace}/{objectRef.name} with {userAgent}'\n";

const SCRIPT: &str = "<script>document.title='pwned'</script>";
const IMG: &str = "\"><img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">";
const SVG: &str = "'><svg onload=\"document.body.setAttribute('data-pwned','2')\">";
const FORMULA: &str = "=HYPERLINK(\"http://203.0.113.9/x\",\"click\")";
const SECRET_B64: &str = "c3VwZXItc2VjcmV0LXBhc3N3b3Jk";
const STRING_DATA: &str = "plain-text-token-value";
const BEARER: &str = "eyJhbGciOiJSUzI1NiJ9.planted-bearer";
const URI_TOKEN: &str = "uri-query-token-value";

/// Events of Secret creation carrying markup, a formula and secret values in every field an
/// attacker chooses.
fn hostile_events(dir: &Path) -> PathBuf {
    let event = |i: usize, user: &str, name: &str, ns: &str, agent: &str| {
        let secret = json!({"password": SECRET_B64});
        json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
            "auditID": format!("h{i}"), "stage": "ResponseComplete", "verb": "create",
            "requestURI": format!("/api/v1/namespaces/app/secrets?access_token={URI_TOKEN}&x={name}"),
            "user": {"username": user, "groups": ["system:authenticated"]},
            "sourceIPs": ["203.0.113.7"], "userAgent": agent,
            "objectRef": {"resource": "secrets", "namespace": ns, "name": name, "apiVersion": "v1"},
            "requestObject": {"kind": "Secret", "apiVersion": "v1",
                "metadata": {"name": name, "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration":
                        json!({"apiVersion": "v1", "kind": "Secret", "data": secret.clone()}).to_string()}},
                "data": secret.clone(), "stringData": {"token": STRING_DATA}},
            "responseObject": {"kind": "Secret", "apiVersion": "v1", "data": secret},
            "responseStatus": {"code": 201},
            "annotations": {"example.com/debug": format!("Authorization: Bearer {BEARER}")},
            "requestReceivedTimestamp": format!("2026-03-01T10:0{i}:00.000000Z"),
            "stageTimestamp": format!("2026-03-01T10:0{i}:00.100000Z"),
        })
        .to_string()
    };
    let lines = [
        event(1, SCRIPT, IMG, SVG, IMG),
        event(2, IMG, SCRIPT, "app", SVG),
        event(3, FORMULA, "db", "app", "-1+cmd|' /C calc'!A0"),
        event(4, "@SUM(1+1)", "db", "app", "kubectl"),
    ];
    let p = dir.join("hostile.log");
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

/// `tripline scan --html --timeline` of the hostile events with only [`SECRET_RULE`]: the
/// page, the CSV and the JSON lines timelines, and the JSON alerts.
fn scan_hostile(dir: &Path) -> (PathBuf, String, String, String, String) {
    let rule = dir.join("secret.yml");
    std::fs::write(&rule, SECRET_RULE).unwrap();
    let input = hostile_events(dir);
    let page = dir.join("hostile.html");
    let csv = dir.join("hostile.csv");
    let jsonl = dir.join("hostile.jsonl");
    let base = [
        "scan",
        "--no-default-rules",
        "--rules",
        rule.to_str().unwrap(),
    ];
    let mut args = base.to_vec();
    args.extend(["--html", page.to_str().unwrap()]);
    args.extend(["--timeline", csv.to_str().unwrap(), input.to_str().unwrap()]);
    tripline(&args);
    let mut args = base.to_vec();
    args.extend(["--format", "json"]);
    args.extend([
        "--timeline",
        jsonl.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    let json = tripline(&args);
    assert_eq!(alerts(&json).len(), 4, "every hostile event alerts");
    (
        page.clone(),
        std::fs::read_to_string(&page).unwrap(),
        std::fs::read_to_string(&csv).unwrap(),
        std::fs::read_to_string(&jsonl).unwrap(),
        String::from_utf8_lossy(&json.stdout).into_owned(),
    )
}

#[test]
fn no_secret_value_reaches_the_page_or_the_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let (_, page, csv, jsonl, json) = scan_hostile(dir.path());
    for (what, text) in [
        ("page", &page),
        ("csv", &csv),
        ("jsonl", &jsonl),
        ("json", &json),
    ] {
        for secret in [SECRET_B64, STRING_DATA, BEARER, URI_TOKEN] {
            assert!(!text.contains(secret), "{secret} in the {what}");
        }
    }
    // The examples are there, redacted.
    assert!(page.contains("Example event 1 (redacted)"), "{page}");
    assert!(page.contains("[REDACTED]"));
}

#[test]
fn markup_from_the_input_is_escaped_and_formulas_are_neutralised() {
    let dir = tempfile::tempdir().unwrap();
    let (_, page, csv_text, _, _) = scan_hostile(dir.path());
    // No markup but the page's own.
    for tag in ["<script", "<img", "<svg onload", "onerror=\"", "onload=\""] {
        assert!(!page.contains(tag), "{tag} in the page");
    }
    assert!(page.contains("&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;"));
    assert!(page.contains("&quot;&gt;&lt;img src=x onerror=&quot;"));
    assert!(page.contains("content=\"default-src &#39;none&#39;;"));

    let rows = csv(&csv_text);
    assert_eq!(rows.len(), 5);
    let mut formulas = 0;
    for cell in rows.iter().flatten() {
        assert!(
            !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
            "a spreadsheet would run {cell:?}"
        );
        formulas += usize::from(cell.starts_with("'=") || cell.starts_with("'@"));
    }
    // The user names, and the messages that start with them.
    assert_eq!(formulas, 4, "{csv_text}");
    assert!(csv_text.contains(&format!("'{}", FORMULA.replace('"', "\"\""))));
}

// ---------------------------------------------------------------------------------------
// In a real browser

const CHROMIUM: &str = "/usr/bin/chromium";

/// True when Chromium is installed. Otherwise prints a loud skip message and returns false,
/// or fails when `TRIPLINE_REQUIRE_SERVERS` or `CI` is set (scripts/test.sh installs it).
fn chromium_available() -> bool {
    if Path::new(CHROMIUM).exists() {
        return true;
    }
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    let msg = format!(
        "SKIPPED: {CHROMIUM} is missing; install it with `apt-get install --no-install-recommends chromium` (scripts/test.sh does)"
    );
    assert!(
        !(set("TRIPLINE_REQUIRE_SERVERS") || set("CI")),
        "{msg} (TRIPLINE_REQUIRE_SERVERS or CI is set, so this is a failure)"
    );
    eprintln!("{msg}");
    false
}

/// What headless Chromium made of a page: the DOM after loading, and the console messages.
struct Rendered {
    dom: String,
    console: Vec<String>,
}

/// Opens `page` in headless Chromium, offline, with a fresh profile, and dumps its DOM (or,
/// with `screenshot`, writes a 1280x2000 screenshot there).
fn chromium(page: &Path, screenshot: Option<&Path>) -> Rendered {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()));
    match screenshot {
        Some(png) => cmd
            .arg(format!("--screenshot={}", png.display()))
            .arg("--window-size=1280,2000"),
        None => cmd.arg("--dump-dom"),
    };
    let mut child = cmd
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    // Read both pipes on threads so that neither fills up; give up after two minutes.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish {} in 120 s", page.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dom = out.join().unwrap();
    let stderr = err.join().unwrap();
    assert!(status.success(), "chromium failed: {stderr}");
    Rendered {
        dom,
        console: stderr
            .lines()
            .filter(|l| l.contains(":CONSOLE"))
            .map(str::to_string)
            .collect(),
    }
}

/// The target directory, where the screenshot goes for review.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is target/tmp")
        .to_path_buf()
}

#[test]
fn chromium_renders_the_sample_report_without_a_console_message() {
    if !chromium_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let want = alerts(&tripline(&[
        "scan",
        "--format",
        "json",
        "samples/audit.log",
    ]));
    let page = dir.path().join("report.html");
    tripline(&[
        "scan",
        "--html",
        page.to_str().unwrap(),
        "samples/audit.log",
    ]);
    let r = chromium(&page, None);
    assert!(r.console.is_empty(), "console: {:#?}", r.console);
    assert_eq!(number(&r.dom, "alerts-total"), want.len() as u64);
    assert!(r.dom.contains("<title>tripline scan report</title>"));
    for a in &want {
        let title = a["rule"]["name"].as_str().unwrap();
        let shown = title.replace('&', "&amp;");
        assert!(
            r.dom
                .contains(&format!("<span class=\"rule-title\">{shown}</span>")),
            "{title} not rendered"
        );
    }
    assert!(r.dom.contains("id=\"timeline-chart\""));
    assert!(r.dom.contains("<details class=\"rule\""));
    let png = target_dir().join("report.png");
    let _ = std::fs::remove_file(&png);
    let shot = chromium(&page, Some(&png));
    assert!(shot.console.is_empty(), "console: {:#?}", shot.console);
    let bytes = std::fs::read(&png).expect("the screenshot is written");
    assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
    eprintln!("screenshot: {}", png.display());
}

#[test]
fn nothing_planted_runs_in_chromium() {
    if !chromium_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The check can fail: the payloads, written into a page as they are and without the
    // policy, do run in this browser.
    let control = dir.path().join("control.html");
    std::fs::write(
        &control,
        format!("<!DOCTYPE html><html><head><title>control</title></head><body><p>{SCRIPT}</p><p>{IMG}</p></body></html>"),
    )
    .unwrap();
    let ran = chromium(&control, None);
    assert!(ran.dom.contains("<title>pwned</title>"), "{}", ran.dom);
    assert!(ran.dom.contains("data-pwned=\"1\""), "{}", ran.dom);
    // And the policy alone reports what it blocks on the console.
    let blocked = dir.path().join("blocked.html");
    std::fs::write(
        &blocked,
        format!(
            "<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" content=\"{}\"><title>blocked</title></head><body>{SCRIPT}</body></html>",
            tripline::detect::report_html::CSP
        ),
    )
    .unwrap();
    let blocked = chromium(&blocked, None);
    assert!(blocked.dom.contains("<title>blocked</title>"));
    assert!(
        blocked
            .console
            .iter()
            .any(|l| l.contains("Content Security Policy")),
        "{:#?}",
        blocked.console
    );

    let (page, _, _, _, _) = scan_hostile(dir.path());
    let r = chromium(&page, None);
    assert!(r.dom.contains("<title>tripline scan report</title>"));
    // The payloads' text is in the page; the attribute they would set is not.
    assert!(!r.dom.contains("data-pwned=\""), "a planted handler ran");
    assert!(!r.dom.contains("<img"), "planted markup was parsed");
    assert!(r.console.is_empty(), "console: {:#?}", r.console);
    // The values are shown, as text.
    assert!(r
        .dom
        .contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;"));
    assert_eq!(number(&r.dom, "alerts-total"), 4);
}

// ---------------------------------------------------------------------------------------
// Large inputs

#[test]
fn a_scan_with_100000_alerts_gives_a_small_page_that_says_what_it_left_out() {
    const ALERTS: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let rule = dir.path().join("secret.yml");
    std::fs::write(&rule, SECRET_RULE.replace("{userAgent}", "{user.username}")).unwrap();
    let input = dir.path().join("big.log");
    let base = DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z").unwrap();
    let mut text = String::with_capacity(ALERTS * 400);
    for i in 0..ALERTS {
        // Ten events a second for almost three hours, 300 identities.
        let t = (base + chrono::Duration::milliseconds(i as i64 * 100))
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        text.push_str(&format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"id-{i}","stage":"ResponseComplete","verb":"create","user":{{"username":"user-{}@example.com"}},"sourceIPs":["10.0.{}.{}"],"objectRef":{{"resource":"secrets","namespace":"app","name":"s-{i}","apiVersion":"v1"}},"responseStatus":{{"code":201}},"stageTimestamp":"{t}"}}"#,
            i % 300,
            i % 7,
            i % 250
        ));
        text.push('\n');
    }
    std::fs::write(&input, text).unwrap();
    let page_path = dir.path().join("big.html");
    let started = Instant::now();
    tripline(&[
        "scan",
        "--no-default-rules",
        "--rules",
        rule.to_str().unwrap(),
        "--html",
        page_path.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    eprintln!(
        "scan of {ALERTS} alerts with --html: {:?} (debug build)",
        started.elapsed()
    );
    let page = std::fs::read_to_string(&page_path).unwrap();
    assert!(
        page.len() < 5 << 20,
        "the page is {} bytes for {ALERTS} alerts",
        page.len()
    );
    assert_eq!(number(&page, "alerts-total"), ALERTS as u64);
    let capped = page.matches("<li class=\"capped\">").count();
    assert_eq!(capped, 3, "examples, rows per identity, identities");
    assert!(page.contains("Identities: the 100 with the most alerts of 300"));
    assert!(page.contains("The first 50 of 334 alerts shown"));
    assert_eq!(attrs(&page, "identity", "data-alerts").len(), 100);
    // The timeline chart stays bounded: at most one bar per bucket.
    assert!(attrs(&page, "bar", "data-alerts").len() <= 180);
}

#[test]
fn a_parallel_scan_writes_the_page_and_timeline_a_sequential_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_with_bad_lines(dir.path());
    let outputs = |threads: &str| {
        let page = dir.path().join(format!("page-{threads}.html"));
        let csv = dir.path().join(format!("timeline-{threads}.csv"));
        let out = Command::new(env!("CARGO_BIN_EXE_tripline"))
            .args(["scan", "--threads", threads, "--html"])
            .arg(&page)
            .arg("--timeline")
            .arg(&csv)
            .arg(&input)
            // Many small chunks, so that the time range and the alerts come from many.
            .env("TRIPLINE_SCAN_CHUNK_BYTES", "1500")
            .output()
            .unwrap();
        assert!(out.status.success());
        (
            std::fs::read_to_string(page).unwrap(),
            std::fs::read_to_string(csv).unwrap(),
        )
    };
    let one = outputs("1");
    assert!(one.0.contains("id=\"first-event\">2026-11-22 09:00:02Z<"));
    for threads in ["2", "3"] {
        let many = outputs(threads);
        assert!(many.0 == one.0, "{threads} threads: the page differs");
        assert_eq!(many.1, one.1, "{threads} threads");
    }
}
