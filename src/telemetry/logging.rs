//! Logging: the global `tracing` subscriber, writing JSON lines or text to stderr.

use std::io::{self, IsTerminal as _};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// The environment variable that holds the log filter, in `EnvFilter` syntax
/// (`info,tripline::source=debug`).
pub const LOG_FILTER_VAR: &str = "TRIPLINE_LOG";
const DEFAULT_LOG_FILTER: &str = "info";

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line: `timestamp`, `level`, `fields` (with `message`), `target`, and
    /// the current span, if any.
    Json,
    /// Human-readable lines, coloured only if stderr is a terminal.
    Text,
}

/// Installs the global `tracing` subscriber, writing to stderr in `format`, filtered by the
/// `TRIPLINE_LOG` environment variable (`EnvFilter` syntax; `info` when unset or empty). An
/// invalid filter falls back to `info` and is reported as a warning once logging works.
///
/// If a global subscriber is already installed (by an earlier call or anyone else), does
/// nothing: calling it twice is safe.
pub fn init_logging(format: LogFormat) {
    let (filter, problem) = log_filter(std::env::var(LOG_FILTER_VAR));
    let ansi = std::io::stderr().is_terminal();
    if tracing::subscriber::set_global_default(subscriber(format, filter, io::stderr, ansi))
        .is_err()
    {
        return;
    }
    if let Some(problem) = problem {
        tracing::warn!(
            variable = LOG_FILTER_VAR,
            problem,
            "ignoring the log filter; logging at `{DEFAULT_LOG_FILTER}`"
        );
    }
}

/// Rate-limits a kind of warning that input can trigger once per line (a line that is not an
/// event, a line that is too long, a failed dead-letter write), per key (a source's name):
/// at most [`WARNINGS_PER_WINDOW`] per [`WARNING_WINDOW`], so a flood of garbage cannot flood
/// the logs. Counters and dead letters are kept for every line; only the log line is limited.
/// Keys come from config names, so the table stays small: looked up with a linear scan under a
/// lock, taken once per warning, never per good event.
pub struct WarnLimiter {
    windows: std::sync::Mutex<Vec<(String, Window)>>,
}

/// Warnings let through per key in each window.
pub const WARNINGS_PER_WINDOW: u32 = 10;
/// The length of a window.
pub const WARNING_WINDOW: std::time::Duration = std::time::Duration::from_secs(5);

struct Window {
    start: std::time::Instant,
    let_through: u32,
    suppressed: u64,
}

/// What to do with a warning, from [`WarnLimiter::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warn {
    /// Log it; first log "suppressed N similar warnings" when `suppressed` is not 0 (those the
    /// previous window held back).
    Log { suppressed: u64 },
    /// Do not log it (it is counted, for the next window's summary).
    Suppress,
}

impl WarnLimiter {
    pub const fn new() -> WarnLimiter {
        WarnLimiter {
            windows: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Whether a warning for `key` may be logged now.
    pub fn check(&self, key: &str) -> Warn {
        self.check_at(key, std::time::Instant::now())
    }

    fn check_at(&self, key: &str, now: std::time::Instant) -> Warn {
        let mut windows = match self.windows.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        let i = match windows.iter().position(|(k, _)| k == key) {
            Some(i) => i,
            None => {
                windows.push((
                    key.to_string(),
                    Window {
                        start: now,
                        let_through: 0,
                        suppressed: 0,
                    },
                ));
                windows.len() - 1
            }
        };
        let w = &mut windows[i].1;
        let mut suppressed = 0;
        if now.saturating_duration_since(w.start) >= WARNING_WINDOW {
            suppressed = std::mem::take(&mut w.suppressed);
            w.start = now;
            w.let_through = 0;
        }
        if w.let_through < WARNINGS_PER_WINDOW {
            w.let_through += 1;
            Warn::Log { suppressed }
        } else {
            w.suppressed += 1;
            Warn::Suppress
        }
    }
}

impl Default for WarnLimiter {
    fn default() -> Self {
        WarnLimiter::new()
    }
}

/// The limiter of warnings about skipped input lines (by source name) and failed dead-letter
/// writes: one for the process, shared by the sources and the detection workers.
pub static SKIPPED_LINE_WARNINGS: WarnLimiter = WarnLimiter::new();

/// Logs one warning about skipped input through [`SKIPPED_LINE_WARNINGS`] under `key`:
/// `$log` runs only when the limiter lets the warning through, after a summary line when
/// earlier ones were suppressed.
#[macro_export]
macro_rules! warn_limited {
    ($key:expr, $log:expr) => {{
        let key: &str = $key;
        if let $crate::telemetry::Warn::Log { suppressed } =
            $crate::telemetry::SKIPPED_LINE_WARNINGS.check(key)
        {
            if suppressed > 0 {
                tracing::warn!(key, suppressed, "suppressed {suppressed} similar warnings");
            }
            $log;
        }
    }};
}

/// The filter from the variable's value, or the default and the reason it was not used.
fn log_filter(value: Result<String, std::env::VarError>) -> (EnvFilter, Option<String>) {
    let default = || EnvFilter::new(DEFAULT_LOG_FILTER);
    match value {
        Ok(spec) if !spec.trim().is_empty() => match EnvFilter::try_new(&spec) {
            Ok(filter) => (filter, None),
            Err(error) => (default(), Some(format!("`{spec}`: {error}"))),
        },
        Ok(_) | Err(std::env::VarError::NotPresent) => (default(), None),
        Err(error @ std::env::VarError::NotUnicode(_)) => (default(), Some(error.to_string())),
    }
}

fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => Box::new(builder.json().with_ansi(false).finish()),
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
    }
}

#[cfg(test)]
mod tests {
    use super::{Warn, WarnLimiter, WARNINGS_PER_WINDOW, WARNING_WINDOW};

    #[test]
    fn warnings_are_limited_per_key_and_window_and_the_next_window_says_how_many_were_held_back() {
        let l = WarnLimiter::new();
        let t0 = std::time::Instant::now();
        for _ in 0..WARNINGS_PER_WINDOW {
            assert_eq!(l.check_at("a", t0), Warn::Log { suppressed: 0 });
        }
        for _ in 0..25 {
            assert_eq!(l.check_at("a", t0), Warn::Suppress);
        }
        // Another key has its own budget.
        assert_eq!(l.check_at("b", t0), Warn::Log { suppressed: 0 });
        let t1 = t0 + WARNING_WINDOW;
        assert_eq!(l.check_at("a", t1), Warn::Log { suppressed: 25 });
        assert_eq!(l.check_at("a", t1), Warn::Log { suppressed: 0 });
    }

    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("buffer lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("buffer lock").clone()).expect("utf-8 logs")
        }
    }

    #[test]
    fn json_logs_are_one_object_per_line_with_the_expected_keys() {
        let buffer = Captured::default();
        let writer = buffer.clone();
        let subscriber = subscriber(
            LogFormat::Json,
            EnvFilter::new("info"),
            move || writer.clone(),
            true,
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(component = "source", lines = 3, "tailing \"audit.log\"");
            tracing::debug!("filtered out at info");
        });
        let text = buffer.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON line");
        assert!(line["timestamp"].is_string(), "{line}");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["target"], "tripline::telemetry::logging::tests");
        assert_eq!(line["fields"]["message"], "tailing \"audit.log\"");
        assert_eq!(line["fields"]["component"], "source");
        assert_eq!(line["fields"]["lines"], 3);
        assert!(!text.contains('\x1b'), "no colour codes in JSON");
    }

    #[test]
    fn text_logs_have_no_colour_unless_asked() {
        for ansi in [false, true] {
            let buffer = Captured::default();
            let writer = buffer.clone();
            let subscriber = subscriber(
                LogFormat::Text,
                EnvFilter::new("info"),
                move || writer.clone(),
                ansi,
            );
            tracing::subscriber::with_default(subscriber, || tracing::warn!(n = 1, "hello"));
            let text = buffer.text();
            assert!(text.contains("hello"), "{text}");
            assert_eq!(text.contains('\x1b'), ansi, "{text:?}");
        }
    }

    #[test]
    fn the_log_filter_falls_back_to_info_when_unset_empty_or_invalid() {
        use std::env::VarError;
        let cases: &[(Result<String, VarError>, &str, bool)] = &[
            (Err(VarError::NotPresent), "info", false),
            (Ok(String::new()), "info", false),
            (Ok("  ".to_owned()), "info", false),
            (
                Ok("debug,tripline::source=trace".to_owned()),
                "tripline::source=trace,debug",
                false,
            ),
            (Ok("info,[".to_owned()), "info", true),
            (Err(VarError::NotUnicode("\u{fffd}".into())), "info", true),
        ];
        for (value, expected, reported) in cases {
            let (filter, problem) = log_filter(value.clone());
            assert_eq!(filter.to_string(), *expected, "{value:?}");
            assert_eq!(problem.is_some(), *reported, "{value:?}: {problem:?}");
        }
    }

    #[test]
    fn log_format_deserializes_from_lowercase_names() {
        let formats: Vec<LogFormat> =
            serde_json::from_str(r#"["json", "text"]"#).expect("valid formats");
        assert_eq!(formats, [LogFormat::Json, LogFormat::Text]);
        assert!(serde_json::from_str::<LogFormat>(r#""JSON""#).is_err());
    }
}
