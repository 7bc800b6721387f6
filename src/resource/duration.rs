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

/// Of the durations [`PATTERN`] accepts, those that are zero (`0s`, `0h0.00m`): the CRD's rules
/// refuse them where a duration must be positive. Without a backslash, as it sits in a CEL string.
pub const ZERO_PATTERN: &str = "^([0.]+(ns|us|ms|s|m|h))+$";

/// The longest duration the schema accepts. It bounds what the API server estimates a CEL rule
/// over a duration may cost; no real duration comes near it.
pub const MAX_LENGTH: u64 = 64;

const TOO_LARGE: &str = "number too large";

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
                // A second dot ("1.2.3h") lands in the fraction: digits only there.
                Some((w, f)) if !w.is_empty() && !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
                    (w, f)
                }
                Some(_) => return Err(err("malformed number")),
                None => (number, ""),
            };
            let whole: u128 = whole.parse().map_err(|_| err(TOO_LARGE))?;
            let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(|| err(TOO_LARGE))?;
            // Fractions are exact to the nanosecond, like Go: scale digit by digit.
            let mut scale = unit_nanos;
            for digit in frac.bytes() {
                scale /= 10;
                nanos = nanos.checked_add(u128::from(digit - b'0') * scale).ok_or_else(|| err(TOO_LARGE))?;
            }
            total_nanos = total_nanos.checked_add(nanos).ok_or_else(|| err(TOO_LARGE))?;
            rest = after;
        }
        let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| err(TOO_LARGE))?;
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
        match text.parse() {
            Ok(duration) => Ok(duration),
            // The schema's pattern cannot bound the size, so the API server stores such a value;
            // refusing it here would fail the whole list or watch it comes in, and stop the
            // controller for every SlackToken. Past ~584 billion years means "never" anyway.
            Err(e) if e.reason == TOO_LARGE => Ok(GoDuration(Duration::MAX)),
            Err(e) => Err(serde::de::Error::custom(e)),
        }
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
        json_schema!({ "type": "string", "pattern": PATTERN, "maxLength": MAX_LENGTH })
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
    fn rejects_a_second_dot_and_overflowing_fractions_without_panicking() {
        for bad in ["1.2.3h", "1..2h", "1.2.h"] {
            assert!(bad.parse::<GoDuration>().is_err(), "{bad}");
        }
        // The largest whole number of hours that fits, plus a fraction that does not.
        let hours = u128::MAX / 3_600_000_000_000;
        let err = format!("{hours}.9999999999999h").parse::<GoDuration>().unwrap_err();
        assert!(err.to_string().contains(TOO_LARGE), "{err}");
    }

    #[test]
    fn a_value_too_large_deserializes_as_never_instead_of_failing_the_object() {
        let d: GoDuration = serde_json::from_value(serde_json::json!("99999999999999999999h")).unwrap();
        assert_eq!(d.as_std(), Duration::MAX);
        assert!(serde_json::from_value::<GoDuration>(serde_json::json!("1d")).is_err());
    }

    fn pattern() -> regex::Regex {
        regex::Regex::new(PATTERN).unwrap()
    }

    /// Whether the parser accepts `s`, counting values too large to represent as accepted (the
    /// deserializer reads them as "never"; only their size is wrong, not their syntax).
    fn parser_accepts(s: &str) -> bool {
        match s.parse::<GoDuration>() {
            Ok(_) => true,
            Err(e) => e.reason == TOO_LARGE,
        }
    }

    #[test]
    fn pattern_and_parser_agree() {
        let table = [
            "90m",
            "1h30m",
            "1.5h",
            "10s",
            "100ms",
            "1us",
            "3ns",
            "0s",
            "0.5s",
            "1h1h",
            "",
            "1",
            "h",
            "1d",
            "1h30",
            "-1h",
            "+1h",
            "1.h",
            ".5h",
            "1 h",
            " 1h",
            "1h ",
            "1µs",
            "1.2.3h",
            "1..2h",
            "1e3s",
            "1H",
            "99999999999999999999999999999999999999999h",
            "1h\n",
        ];
        let re = pattern();
        for s in table {
            assert_eq!(re.is_match(s), parser_accepts(s), "{s:?}");
        }
    }

    #[test]
    fn the_zero_pattern_matches_exactly_the_zero_durations() {
        let zero = regex::Regex::new(ZERO_PATTERN).unwrap();
        for s in ["0s", "0h0m", "00.000ms", "0h0.0s", "1s", "0.5s", "10m", "0h1ns", "100h"] {
            let parsed = s.parse::<GoDuration>().unwrap();
            assert_eq!(zero.is_match(s), parsed.as_std().is_zero(), "{s:?}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Strings over the characters the grammar is about, and a few it is not.
        fn near_durations() -> impl Strategy<Value = String> {
            proptest::string::string_regex("[0-9.nsumh µ+-]{0,12}").unwrap()
        }

        /// Strings the pattern accepts (without its anchors, which the generator does not take).
        fn valid_durations() -> impl Strategy<Value = String> {
            let body = PATTERN.trim_start_matches('^').trim_end_matches('$');
            proptest::string::string_regex(body).unwrap()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2048))]

            #[test]
            fn pattern_and_parser_agree_on_near_misses(s in near_durations()) {
                prop_assert_eq!(pattern().is_match(&s), parser_accepts(&s), "{:?}", s);
            }

            #[test]
            fn the_parser_accepts_everything_the_pattern_does(s in valid_durations()) {
                prop_assert!(pattern().is_match(&s));
                prop_assert!(parser_accepts(&s), "{:?}", s);
            }

            #[test]
            fn the_zero_pattern_and_the_parser_agree(s in valid_durations()) {
                let zero = regex::Regex::new(ZERO_PATTERN).unwrap();
                if let Ok(d) = s.parse::<GoDuration>() {
                    prop_assert_eq!(zero.is_match(&s), d.as_std().is_zero(), "{:?}", s);
                }
            }

            #[test]
            fn the_parser_never_panics(s in any::<String>()) {
                let _ = s.parse::<GoDuration>();
            }

            #[test]
            fn display_then_parse_round_trips(secs in 0u64..(1 << 40), millis in 0u32..1000) {
                let d = GoDuration(Duration::new(secs, millis * 1_000_000));
                let text = d.to_string();
                prop_assert!(pattern().is_match(&text), "{}", text);
                prop_assert_eq!(text.parse::<GoDuration>(), Ok(d));
            }
        }
    }

    #[test]
    fn displays_canonical_form() {
        assert_eq!(GoDuration(Duration::from_secs(5400)).to_string(), "1h30m");
        assert_eq!(GoDuration(Duration::from_secs(45)).to_string(), "45s");
        assert_eq!(GoDuration(Duration::ZERO).to_string(), "0s");
    }
}
