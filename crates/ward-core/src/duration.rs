//! Human durations in configuration and on the command line (`15m`, `30s`, `250ms`).

use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{input}`: expected a whole number followed by ms, s, m, h or d (e.g. `15m`)")]
pub struct DurationParseError {
    input: String,
}

/// Parse a duration such as `250ms`, `30s`, `15m`, `1h`, `7d`.
///
/// Only one whole number and one unit are accepted, so there is exactly one
/// way to write each value and no floating point surprises.
///
/// # Errors
/// [`DurationParseError`] when the text is not a number followed by a known unit,
/// or when the value overflows.
pub fn parse_duration(input: &str) -> Result<Duration, DurationParseError> {
    let err = || DurationParseError { input: input.to_owned() };
    let text = input.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(err());
    }
    let n: u64 = digits.parse().map_err(|_| err())?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(err()),
    };
    n.checked_mul(millis_per_unit).map(Duration::from_millis).ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "m", "15", "1.5s", "-1s", "15 minutes", "99999999999999999999s", "1sm"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
