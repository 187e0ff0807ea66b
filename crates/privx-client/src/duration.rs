//! Durations as PrivX writes them (and as users write them for PrivX).
//!
//! PrivX ≤ 34 speaks Go durations (`720h0m0s`, `0h5m0s`); PrivX ≥ 35 speaks ISO 8601
//! (`P30D`, `PT5M`). Users may write either (and Kubernetes-style shorthands such as `5m`);
//! two spellings that mean the same time compare equal, so drift detection compares meaning,
//! not text.

use std::fmt;
use std::time::Duration;

/// A duration that could not be parsed; the message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a duration ({reason}); write e.g. 720h, 5m30s, P30D or PT5M")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

fn err(input: &str, reason: &'static str) -> DurationError {
    DurationError {
        input: input.to_string(),
        reason,
    }
}

/// Parses a Go/Kubernetes duration (`720h0m0s`, `1.5h`, `300ms`) or an ISO 8601 duration
/// (`P30D`, `PT5M`, `P1DT2H`, `P2W`). Years and months are refused: their length is not fixed.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(err(input, "empty"));
    }
    if let Some(rest) = s.strip_prefix('P') {
        parse_iso(input, rest)
    } else {
        parse_go(input, s)
    }
}

fn parse_go(input: &str, s: &str) -> Result<Duration, DurationError> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.starts_with('-') {
        return Err(err(input, "negative durations are not allowed"));
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| err(input, "missing unit"))?;
        if num_len == 0 {
            return Err(err(input, "expected a number"));
        }
        let number: f64 = rest[..num_len]
            .parse()
            .map_err(|_| err(input, "bad number"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err(input, "unknown unit (use ns, us, ms, s, m or h)")),
        };
        total += number * seconds_per_unit;
        rest = &rest[unit_len..];
    }
    to_duration(input, total)
}

fn parse_iso(input: &str, s: &str) -> Result<Duration, DurationError> {
    if s.is_empty() {
        return Err(err(input, "nothing after P"));
    }
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => {
            if t.is_empty() {
                return Err(err(input, "nothing after T"));
            }
            (d, Some(t))
        }
        None => (s, None),
    };
    let mut total = 0f64;
    total += iso_part(input, date, &[('W', 7.0 * 86400.0), ('D', 86400.0)])?;
    if let Some(t) = time {
        total += iso_part(input, t, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    to_duration(input, total)
}

/// Parses `<n><unit>...` where units must appear in the given order, each at most once.
fn iso_part(input: &str, mut s: &str, units: &[(char, f64)]) -> Result<f64, DurationError> {
    let mut total = 0f64;
    let mut next_unit = 0;
    while !s.is_empty() {
        let num_len = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
            .ok_or_else(|| err(input, "missing unit"))?;
        if num_len == 0 {
            return Err(err(input, "expected a number"));
        }
        let number: f64 = s[..num_len]
            .replace(',', ".")
            .parse()
            .map_err(|_| err(input, "bad number"))?;
        let unit = s[num_len..].chars().next().expect("find stopped at a char");
        if matches!(unit, 'Y') || (unit == 'M' && units[0].0 == 'W') {
            return Err(err(input, "years and months have no fixed length"));
        }
        let position = units[next_unit..]
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(|| err(input, "unit out of order or unknown"))?;
        total += number * units[next_unit + position].1;
        next_unit += position + 1;
        s = &s[num_len + unit.len_utf8()..];
    }
    Ok(total)
}

fn to_duration(input: &str, seconds: f64) -> Result<Duration, DurationError> {
    if !seconds.is_finite() || !(0.0..=1e12).contains(&seconds) {
        return Err(err(input, "out of range"));
    }
    // Round to whole nanoseconds so that 1.5h and 90m compare equal.
    Ok(Duration::from_nanos((seconds * 1e9).round() as u64))
}

/// Formats a duration the way Go's `time.Duration.String()` does (`720h0m0s`, `5m0s`, `1.5s`).
pub fn format_go(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    let total_secs = d.as_secs();
    let nanos = d.subsec_nanos();
    if total_secs == 0 {
        return if nanos.is_multiple_of(1_000_000) {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1000) {
            format!("{}µs", nanos / 1000)
        } else {
            format!("{nanos}ns")
        };
    }
    let hours = total_secs / 3600;
    let minutes = (total_secs % 3600) / 60;
    let seconds = total_secs % 60;
    let sec = if nanos == 0 {
        format!("{seconds}s")
    } else {
        let frac = format!("{:09}", nanos);
        format!("{seconds}.{}s", frac.trim_end_matches('0'))
    };
    if hours > 0 {
        format!("{hours}h{minutes}m{sec}")
    } else if minutes > 0 {
        format!("{minutes}m{sec}")
    } else {
        sec
    }
}

/// Formats a duration as ISO 8601 (`P30D`, `PT5M`, `P1DT2H30M`, `PT0S`).
pub fn format_iso(d: Duration) -> String {
    if d.is_zero() {
        return "PT0S".to_string();
    }
    let total = d.as_secs();
    let days = total / 86400;
    let hours = (total % 86400) / 3600;
    let minutes = (total % 3600) / 60;
    let seconds = total % 60;
    let nanos = d.subsec_nanos();
    let mut out = String::from("P");
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    if hours > 0 || minutes > 0 || seconds > 0 || nanos > 0 {
        out.push('T');
        if hours > 0 {
            out.push_str(&format!("{hours}H"));
        }
        if minutes > 0 {
            out.push_str(&format!("{minutes}M"));
        }
        if nanos > 0 {
            let frac = format!("{:09}", nanos);
            out.push_str(&format!("{seconds}.{}S", frac.trim_end_matches('0')));
        } else if seconds > 0 {
            out.push_str(&format!("{seconds}S"));
        }
    }
    out
}

/// A duration with the spelling it was given in; equality compares meaning.
#[derive(Clone)]
pub struct FlexDuration {
    pub text: String,
    pub value: Duration,
}

impl FlexDuration {
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        Ok(Self {
            text: text.to_string(),
            value: parse_duration(text)?,
        })
    }
}

impl PartialEq for FlexDuration {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl fmt::Debug for FlexDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> u64 {
        parse_duration(s).unwrap().as_secs()
    }

    #[test]
    fn go_and_iso_spellings_mean_the_same_time() {
        for same in [
            ["720h", "720h0m0s", "P30D"],
            ["5m", "0h5m0s", "PT5M"],
            ["90m", "1.5h", "PT1H30M"],
            ["168h", "P1W", "P7D"],
            ["26h", "P1DT2H", "1h1500m"],
        ] {
            let values: Vec<_> = same.iter().map(|s| parse_duration(s).unwrap()).collect();
            assert!(values.windows(2).all(|w| w[0] == w[1]), "{same:?}");
        }
        assert_eq!(secs("30s"), 30);
        assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(secs("PT0.5S"), 0);
        assert_eq!(
            parse_duration("PT1.5S").unwrap(),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn nonsense_is_refused_with_the_input_named() {
        for bad in [
            "", "P", "PT", "30", "h", "5x", "-5m", "P1Y", "P1M", "1d", "PT5D", "P5H", "abc",
            "P1DT", "5m-3s",
        ] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for s in [
            "720h", "5m", "P30D", "PT5M", "1.5s", "26h", "0s", "300ms", "45s",
        ] {
            let d = parse_duration(s).unwrap();
            assert_eq!(parse_duration(&format_go(d)).unwrap(), d, "go {s}");
            assert_eq!(parse_duration(&format_iso(d)).unwrap(), d, "iso {s}");
        }
        assert_eq!(format_go(parse_duration("P30D").unwrap()), "720h0m0s");
        assert_eq!(format_go(parse_duration("PT5M").unwrap()), "5m0s");
        assert_eq!(format_iso(parse_duration("720h0m0s").unwrap()), "P30D");
        assert_eq!(format_iso(parse_duration("0h5m0s").unwrap()), "PT5M");
    }

    #[test]
    fn flex_duration_compares_meaning() {
        assert_eq!(
            FlexDuration::parse("720h").unwrap(),
            FlexDuration::parse("P30D").unwrap()
        );
        assert_ne!(
            FlexDuration::parse("720h").unwrap(),
            FlexDuration::parse("P31D").unwrap()
        );
    }
}
