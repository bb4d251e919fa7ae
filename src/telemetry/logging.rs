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
