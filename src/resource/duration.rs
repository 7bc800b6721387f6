//! Kubernetes/Go style durations (`90m`, `1h30m`, `12h`) as used in the SlackToken spec.
//!
//! Go's `time.ParseDuration` is the format users know from every other Kubernetes resource
//! (cert-manager's `renewBefore`, for one), so we accept exactly that grammar and print the
//! same canonical form back.

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::{borrow::Cow, fmt, str::FromStr, time::Duration};

/// The pattern the CRD schema enforces; it mirrors [`GoDuration::from_str`].
pub const PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$";

/// A non-negative duration written the Go way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration(pub Duration);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: {reason} (use Go duration syntax such as 90m, 1h30m or 12h)")]
pub struct ParseDurationError {
    input: String,
    reason: &'static str,
}

impl GoDuration {
    pub fn as_std(self) -> Duration {
        self.0
    }
}

impl FromStr for GoDuration {
    type Err = ParseDurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseDurationError { input: input.to_owned(), reason };
        if input.is_empty() {
            return Err(err("empty"));
        }
        let mut rest = input;
        let mut total_nanos: u128 = 0;
        while !rest.is_empty() {
            let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
            let (number, after) = rest.split_at(number_len);
            if number.is_empty() {
                return Err(err("expected a number"));
            }
            let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            let unit_nanos: u128 = match unit {
                "ns" => 1,
                "us" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                "" => return Err(err("missing unit")),
                _ => return Err(err("unknown unit")),
            };
            let (whole, frac) = match number.split_once('.') {
                Some((w, f)) if !w.is_empty() && !f.is_empty() => (w, f),
                Some(_) => return Err(err("malformed number")),
                None => (number, ""),
            };
            let whole: u128 = whole.parse().map_err(|_| err("number too large"))?;
            let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(|| err("number too large"))?;
            // Fractions are exact to the nanosecond, like Go: scale digit by digit.
            let mut scale = unit_nanos;
            for digit in frac.bytes() {
                scale /= 10;
                nanos += u128::from(digit - b'0') * scale;
            }
            total_nanos = total_nanos.checked_add(nanos).ok_or_else(|| err("number too large"))?;
            rest = after;
        }
        let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| err("number too large"))?;
        Ok(GoDuration(Duration::new(secs, (total_nanos % 1_000_000_000) as u32)))
    }
}

impl fmt::Display for GoDuration {
    /// Canonical short form: `1h30m`, `90s`, `0s`; sub-second parts as `ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let millis = self.0.subsec_millis();
        if secs == 0 && millis == 0 {
            return f.write_str("0s");
        }
        let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 {
            write!(f, "{s}s")?;
        }
        if millis > 0 {
            write!(f, "{millis}ms")?;
        }
        Ok(())
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for GoDuration {
    fn schema_name() -> Cow<'static, str> {
        "GoDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "pattern": PATTERN })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Duration {
        s.parse::<GoDuration>().unwrap().0
    }

    #[test]
    fn parses_go_style_durations() {
        assert_eq!(parse("90m"), Duration::from_secs(5400));
        assert_eq!(parse("1h30m"), Duration::from_secs(5400));
        assert_eq!(parse("12h"), Duration::from_secs(43200));
        assert_eq!(parse("1.5h"), Duration::from_secs(5400));
        assert_eq!(parse("250ms"), Duration::from_millis(250));
        assert_eq!(parse("0s"), Duration::ZERO);
    }

    #[test]
    fn rejects_malformed_durations_with_a_clear_error() {
        for bad in ["", "1", "h", "1d", "1h30", "-1h", "1.h", ".5h", "1 h"] {
            let err = bad.parse::<GoDuration>().unwrap_err();
            assert!(err.to_string().contains("Go duration syntax"), "{bad}: {err}");
        }
    }

    #[test]
    fn pattern_and_parser_agree() {
        let re_ok = ["90m", "1h30m", "1.5h", "10s", "100ms"];
        for s in re_ok {
            assert!(s.parse::<GoDuration>().is_ok());
        }
    }

    #[test]
    fn displays_canonical_form() {
        assert_eq!(GoDuration(Duration::from_secs(5400)).to_string(), "1h30m");
        assert_eq!(GoDuration(Duration::from_secs(45)).to_string(), "45s");
        assert_eq!(GoDuration(Duration::ZERO).to_string(), "0s");
    }
}
