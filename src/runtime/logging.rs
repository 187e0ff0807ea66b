//! The process's log output: human-readable text or one JSON object per line, filtered by
//! `--log-level` (or its environment variable).
//!
//! Owns the global `tracing` subscriber. Must not decide what is logged; keeping secret values
//! out of log lines is every caller's duty (only names, keys and reasons are logged).

use tracing_subscriber::EnvFilter;

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

/// Installs the global subscriber. Call once, early in `main`.
pub fn init(format: LogFormat, filter: &str) -> Result<(), LoggingError> {
    let filter = parse_filter(filter)?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    installed.map_err(|_| LoggingError::AlreadyInitialized)
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

    #[test]
    fn a_bad_filter_names_the_flag_and_the_value() {
        let error = parse_filter("privx_operator=loud").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("--log-level"), "{message}");
        assert!(message.contains("privx_operator=loud"), "{message}");
    }
}
