//! The FOIA calendar: a response is due a number of working days after receipt, weekends
//! and holidays skipped. Federal holidays are computed by rule for any year, so no table
//! runs out.

use std::collections::BTreeSet;

use jiff::civil::{Date, Weekday};

/// The `holidays` setting for the holidays of 5 U.S.C. 6103.
pub const US_FEDERAL: &str = "us-federal";

/// The office's working calendar (from `DATA/office.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    response_days: u32,
    working_days: BTreeSet<i8>,
    federal: bool,
    extra: BTreeSet<Date>,
}

const WEEKDAYS: [(&str, Weekday); 7] = [
    ("monday", Weekday::Monday),
    ("tuesday", Weekday::Tuesday),
    ("wednesday", Weekday::Wednesday),
    ("thursday", Weekday::Thursday),
    ("friday", Weekday::Friday),
    ("saturday", Weekday::Saturday),
    ("sunday", Weekday::Sunday),
];

impl Calendar {
    pub fn new(
        response_days: u32,
        working_days: &[String],
        holidays: &str,
        extra: &[String],
    ) -> Result<Self, String> {
        if !(1..=365).contains(&response_days) {
            return Err("response_days is 1 to 365".into());
        }
        let mut days = BTreeSet::new();
        for name in working_days {
            let (_, day) = WEEKDAYS
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .ok_or_else(|| format!("working_days: {name:?} is not a day of the week"))?;
            days.insert(day.to_monday_one_offset());
        }
        if days.is_empty() {
            return Err("working_days names no day".into());
        }
        let federal = match holidays {
            US_FEDERAL => true,
            "none" => false,
            other => {
                return Err(format!(
                    "holidays is \"{US_FEDERAL}\" or \"none\", not {other:?}"
                ))
            }
        };
        let extra = extra
            .iter()
            .map(|d| {
                d.parse::<Date>()
                    .map_err(|e| format!("extra_holidays: {d:?} is not a date: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            response_days,
            working_days: days,
            federal,
            extra,
        })
    }

    /// The federal default: 20 working days, Monday to Friday, federal holidays.
    pub fn federal() -> Self {
        Self {
            response_days: 20,
            working_days: (1..=5).collect(),
            federal: true,
            extra: BTreeSet::new(),
        }
    }

    pub fn is_working_day(&self, day: Date) -> bool {
        self.working_days
            .contains(&day.weekday().to_monday_one_offset())
            && !(self.federal && is_federal_holiday(day))
            && !self.extra.contains(&day)
    }

    /// The due date of a request received on `received`: the day of receipt is not counted.
    pub fn due(&self, received: Date) -> Result<Date, String> {
        let mut day = received;
        let mut counted = 0;
        while counted < self.response_days {
            day = day.tomorrow().map_err(|e| e.to_string())?;
            if self.is_working_day(day) {
                counted += 1;
            }
        }
        Ok(day)
    }
}

/// The days federal offices are closed in `year` for the holidays of 5 U.S.C. 6103 (and of
/// the next year's New Year's Day, observed on 31 December when it falls on a Saturday).
pub fn federal_holidays(year: i16) -> Vec<Date> {
    let fixed = |y: i16, m: i8, d: i8| observed(Date::new(y, m, d).expect("a real date"));
    let nth = |m: i8, n: i8, w: Weekday| {
        Date::new(year, m, 1)
            .and_then(|d| d.nth_weekday_of_month(n, w))
            .expect("every month has a first four and a last of each weekday")
    };
    let mut days = vec![
        fixed(year, 1, 1),
        nth(1, 3, Weekday::Monday),  // Birthday of Martin Luther King, Jr.
        nth(2, 3, Weekday::Monday),  // Washington's Birthday
        nth(5, -1, Weekday::Monday), // Memorial Day
        fixed(year, 6, 19),          // Juneteenth National Independence Day
        fixed(year, 7, 4),
        nth(9, 1, Weekday::Monday),    // Labor Day
        nth(10, 2, Weekday::Monday),   // Columbus Day
        fixed(year, 11, 11),           // Veterans Day
        nth(11, 4, Weekday::Thursday), // Thanksgiving Day
        fixed(year, 12, 25),
    ];
    if year < 9999 {
        let next_new_year = fixed(year + 1, 1, 1);
        if next_new_year.year() == year {
            days.push(next_new_year);
        }
    }
    days.retain(|d| d.year() == year);
    days.sort();
    days
}

/// A holiday on a Saturday is observed the Friday before, on a Sunday the Monday after
/// (5 U.S.C. 6103(b); Executive Order 11582).
fn observed(day: Date) -> Date {
    match day.weekday() {
        Weekday::Saturday => day.yesterday().expect("not the first representable day"),
        Weekday::Sunday => day.tomorrow().expect("not the last representable day"),
        _ => day,
    }
}

pub fn is_federal_holiday(day: Date) -> bool {
    federal_holidays(day.year()).contains(&day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn issue_11_twenty_working_days_skip_thanksgiving() {
        let cal = Calendar::federal();
        // Friday 20 November 2026; Thanksgiving is Thursday 26 November.
        assert_eq!(cal.due(date(2026, 11, 20)).unwrap(), date(2026, 12, 21));
        // Across Christmas, New Year's Day (a Friday) and Martin Luther King Day 2027.
        assert_eq!(cal.due(date(2026, 12, 18)).unwrap(), date(2027, 1, 20));
        // Received on a Saturday: counting starts on Monday.
        assert_eq!(cal.due(date(2026, 3, 7)).unwrap(), date(2026, 4, 3));
    }

    #[test]
    fn issue_11_federal_holidays_are_computed_and_observed_by_rule() {
        let y2026: Vec<String> = federal_holidays(2026)
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(
            y2026,
            [
                "2026-01-01",
                "2026-01-19",
                "2026-02-16",
                "2026-05-25",
                "2026-06-19",
                "2026-07-03", // 4 July is a Saturday
                "2026-09-07",
                "2026-10-12",
                "2026-11-11",
                "2026-11-26",
                "2026-12-25",
            ]
        );
        // New Year's Day 2022 fell on a Saturday: observed Friday 31 December 2021.
        assert!(is_federal_holiday(date(2021, 12, 31)));
        assert!(!is_federal_holiday(date(2022, 1, 1)));
        assert_eq!(federal_holidays(2022).len(), 10);
        // Christmas 2022 on a Sunday: Monday 26 December.
        assert!(is_federal_holiday(date(2022, 12, 26)));
        // A year far ahead works without a table.
        assert!(is_federal_holiday(date(2091, 11, 22)), "Thanksgiving 2091");
    }

    #[test]
    fn issue_11_a_state_calendar_is_configurable() {
        // Ten working days, Monday to Thursday, no federal holidays, one closure.
        let cal = Calendar::new(
            10,
            &["Monday", "tuesday", "wednesday", "thursday"].map(String::from),
            "none",
            &["2026-11-30".to_string()],
        )
        .unwrap();
        assert!(
            cal.is_working_day(date(2026, 11, 26)),
            "no federal holidays"
        );
        assert!(!cal.is_working_day(date(2026, 11, 27)), "Fridays off");
        assert!(!cal.is_working_day(date(2026, 11, 30)), "the extra closure");
        // Nov 23 24 25 26, Dec 1 2 3, 7 8 9.
        assert_eq!(cal.due(date(2026, 11, 20)).unwrap(), date(2026, 12, 9));
        for (days, working, holidays, extra) in [
            (0, vec!["monday"], "none", vec![]),
            (20, vec!["funday"], "none", vec![]),
            (20, vec![], "none", vec![]),
            (20, vec!["monday"], "us-state", vec![]),
            (20, vec!["monday"], "none", vec!["2026-02-30"]),
        ] {
            let working: Vec<String> = working.into_iter().map(String::from).collect();
            let extra: Vec<String> = extra.into_iter().map(String::from).collect();
            assert!(Calendar::new(days, &working, holidays, &extra).is_err());
        }
    }
}
