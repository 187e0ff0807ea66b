//! Durations in CRD fields: the CEL rule that checks their spelling in the schema. Parsing and
//! formatting are the PrivX client's (`privx_client::duration`): PrivX's wire format decides
//! which spellings exist, and the CRDs accept the same.

pub use privx_client::duration::{
    DurationError, FlexDuration, format_go, format_iso, parse_duration,
};

/// The CEL rule (RE2 syntax) a duration field carries in the CRD schema: Go or ISO 8601.
pub const DURATION_CEL_RULE: &str = "self.matches('^(([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+|P([0-9]+W|([0-9]+D)?(T([0-9]+H)?([0-9]+M)?([0-9]+(\\\\.[0-9]+)?S)?)?))$') && self != 'P' && !self.endsWith('T')";

/// The message that goes with [`DURATION_CEL_RULE`].
pub const DURATION_CEL_MESSAGE: &str =
    "must be a duration such as 720h, 720h0m0s, 5m, P30D or PT5M";

/// Longest duration text a CRD field accepts (`maxLength`: bounds the cost of the CEL rule
/// above; `P30DT12H30M15.5S` and `720h0m0s` are far shorter).
pub const MAX_DURATION_LENGTH: usize = 32;
