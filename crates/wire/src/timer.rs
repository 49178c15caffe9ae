//! Durations as users type them (`30s`, `10m`, `12h`, `7d`, `2w`) and as clients say them.

/// The longest timer anyone may set: ten years. Keeps every sum of times far from overflow.
pub const MAX_TIMER_SECS: u64 = 10 * 365 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {0:?}: use a whole number and a unit, like 30s, 10m, 12h, 7d or 2w")]
    Malformed(String),
    #[error("duration {0:?} is zero; use \"off\" to switch a timer off")]
    Zero(String),
    #[error("duration {0:?} is longer than the 10-year maximum")]
    TooLong(String),
}

/// Parses `N` followed by one unit of s, m, h, d or w. Nothing else: no signs, no fractions,
/// no spaces, so a typo is an error rather than a surprise.
pub fn parse_duration(input: &str) -> Result<u64, DurationError> {
    let malformed = || DurationError::Malformed(input.to_owned());
    if !input.is_ascii() {
        return Err(malformed());
    }
    let (digits, unit) = input.split_at(input.len().saturating_sub(1));
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 12 {
        return Err(malformed());
    }
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(malformed()),
    };
    let n: u64 = digits.parse().map_err(|_| malformed())?;
    let secs = n
        .checked_mul(scale)
        .ok_or_else(|| DurationError::TooLong(input.to_owned()))?;
    if secs == 0 {
        return Err(DurationError::Zero(input.to_owned()));
    }
    if secs > MAX_TIMER_SECS {
        return Err(DurationError::TooLong(input.to_owned()));
    }
    Ok(secs)
}

/// A timer setting: a duration, or `off`.
pub fn parse_timer(input: &str) -> Result<Option<u64>, DurationError> {
    if input == "off" {
        Ok(None)
    } else {
        parse_duration(input).map(Some)
    }
}

/// "1 day", "90 seconds", "2 weeks": the largest unit that divides evenly.
pub fn describe(secs: u64) -> String {
    let units = [
        (604_800, "week"),
        (86_400, "day"),
        (3600, "hour"),
        (60, "minute"),
        (1, "second"),
    ];
    let (size, name) = units
        .iter()
        .find(|(size, _)| secs.is_multiple_of(*size) && secs >= *size)
        .copied()
        .unwrap_or((1, "second"));
    let n = secs / size;
    format!("{n} {name}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_users_type() {
        assert_eq!(parse_duration("30s"), Ok(30));
        assert_eq!(parse_duration("10m"), Ok(600));
        assert_eq!(parse_duration("12h"), Ok(43_200));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert_eq!(parse_duration("2w"), Ok(1_209_600));
        assert_eq!(parse_timer("off"), Ok(None));
        assert_eq!(parse_timer("1d"), Ok(Some(86_400)));
    }

    #[test]
    fn rejects_malformed_negative_zero_and_overflowing() {
        for bad in [
            "", "s", "10", "-5s", "+5s", "1.5h", "10 m", "10M", "1d2h", "10x", "off ", "٣s", "٣",
            "é",
        ] {
            assert!(
                matches!(parse_duration(bad), Err(DurationError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(parse_duration("0s"), Err(DurationError::Zero(_))));
        assert!(matches!(
            parse_duration("999999999999w"),
            Err(DurationError::TooLong(_))
        ));
        assert!(matches!(
            parse_duration("3651d"),
            Err(DurationError::TooLong(_))
        ));
        assert!(matches!(
            parse_duration("99999999999999999999s"),
            Err(DurationError::Malformed(_))
        ));
    }

    #[test]
    fn describes_in_the_largest_even_unit() {
        assert_eq!(describe(86_400), "1 day");
        assert_eq!(describe(90), "90 seconds");
        assert_eq!(describe(1_209_600), "2 weeks");
        assert_eq!(describe(7200), "2 hours");
        assert_eq!(describe(1), "1 second");
    }
}
