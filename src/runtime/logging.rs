//! The process's log output: human-readable text or one JSON object per line, filtered by
//! `--log-level` (or its environment variable), on standard output. Text is coloured only when
//! standard output is a terminal and `NO_COLOR` is unset: logs written to a file or a pipe (a
//! container runtime, `kubectl logs`) carry no ANSI escape codes. JSON is never coloured.
//!
//! Owns the global `tracing` subscriber. Must not decide what is logged; keeping secret values
//! out of log lines is every caller's duty (only names, keys and reasons are logged).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

use super::args::LogFormat;

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error(
        "--log-level {filter:?} is not a valid log filter (e.g. info, debug, privx_operator=debug,kube=warn): {source}"
    )]
    InvalidFilter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("a global log subscriber is already installed")]
    AlreadyInitialized,
}

/// Parses a `--log-level` value strictly: an unknown directive is an error, not ignored.
pub fn parse_filter(filter: &str) -> Result<EnvFilter, LoggingError> {
    EnvFilter::builder()
        .parse(filter)
        .map_err(|source| LoggingError::InvalidFilter {
            filter: filter.to_owned(),
            source,
        })
}

/// Installs the global subscriber, writing to standard output. Call once, early in `main`.
pub fn init(format: LogFormat, filter: &str) -> Result<(), LoggingError> {
    let colour = colour_wanted(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
    );
    subscriber(format, parse_filter(filter)?, std::io::stdout, colour)
        .try_init()
        .map_err(|_| LoggingError::AlreadyInitialized)
}

/// Whether text logs get ANSI colours: only on a terminal, and not when `NO_COLOR` is set
/// (<https://no-color.org>).
fn colour_wanted(is_terminal: bool, no_colour: bool) -> bool {
    is_terminal && !no_colour
}

/// The subscriber [`init`] installs, writing to `writer`; `colour` applies to text only.
fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    colour: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(colour).finish()),
        LogFormat::Json => Box::new(
            builder
                .with_ansi(false)
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usual_filters_parse() {
        for filter in [
            "info",
            "debug",
            "privx_operator=debug,kube=warn",
            "warn,hyper=off",
        ] {
            parse_filter(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
        }
    }

    #[derive(Clone, Default)]
    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What the subscriber writes for one event with a field, a span and a warning level.
    fn logged(format: LogFormat, colour: bool) -> String {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = subscriber(
            format,
            parse_filter("info").unwrap(),
            move || writer.clone(),
            colour,
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("reconcile", object = "demo/app");
            let _entered = span.enter();
            tracing::warn!(reason = "PrivxUnavailable", "will retry");
        });
        let bytes = capture.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_wanted(true, false));
        assert!(!colour_wanted(false, false), "a file or a pipe");
        assert!(!colour_wanted(true, true), "NO_COLOR");
        assert!(!colour_wanted(false, true));
    }

    #[test]
    fn text_without_colour_has_no_escape_codes() {
        let text = logged(LogFormat::Text, false);
        assert!(text.contains("will retry"), "{text:?}");
        assert!(text.contains("reason=\"PrivxUnavailable\""), "{text:?}");
        assert!(!text.contains('\u{1b}'), "{text:?}");
        // The switch is live: the same event on a terminal is coloured.
        assert!(logged(LogFormat::Text, true).contains("\u{1b}["));
    }

    #[test]
    fn json_is_never_coloured() {
        let json = logged(LogFormat::Json, true);
        assert!(!json.contains('\u{1b}'), "{json:?}");
        let line: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(line["fields"]["reason"], "PrivxUnavailable");
        assert_eq!(line["span"]["object"], "demo/app");
    }

    #[test]
    fn a_bad_filter_names_the_flag_and_the_value() {
        let error = parse_filter("privx_operator=loud").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("--log-level"), "{message}");
        assert!(message.contains("privx_operator=loud"), "{message}");
    }
}
