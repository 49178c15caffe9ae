//! The records office's settings, `DATA/office.json` (written with the defaults on first
//! start, edited by the office): its time zone, in which plain dates are read and dates are
//! shown; and its FOIA calendar (response time, working days, holidays), since state
//! open-records laws differ from the federal one.

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficeSettings {
    /// IANA name (`America/New_York`): plain dates in searches, holds and cases are this
    /// zone's days.
    pub time_zone: String,
    /// Working days a request must be answered in (5 U.S.C. 552(a)(6)(A)(i): 20).
    #[serde(default = "default_response_days")]
    pub response_days: u32,
    /// The days of the week that are working days (`monday` … `sunday`).
    #[serde(default = "default_working_days")]
    pub working_days: Vec<String>,
    /// `us-federal` (the holidays of 5 U.S.C. 6103, observed on the Friday before or the
    /// Monday after when they fall on a weekend) or `none`.
    #[serde(default = "default_holidays")]
    pub holidays: String,
    /// More days off (`2026-12-24`): a state's holidays, a closure.
    #[serde(default)]
    pub extra_holidays: Vec<String>,
}

fn default_response_days() -> u32 {
    20
}

fn default_working_days() -> Vec<String> {
    ["monday", "tuesday", "wednesday", "thursday", "friday"]
        .map(String::from)
        .to_vec()
}

fn default_holidays() -> String {
    crate::foia::calendar::US_FEDERAL.into()
}

impl Default for OfficeSettings {
    fn default() -> Self {
        Self {
            time_zone: jiff::tz::TimeZone::system()
                .iana_name()
                .unwrap_or("UTC")
                .to_owned(),
            response_days: default_response_days(),
            working_days: default_working_days(),
            holidays: default_holidays(),
            extra_holidays: Vec::new(),
        }
    }
}

impl OfficeSettings {
    /// Reads `path`, writing the defaults there first if it does not exist.
    pub fn load(path: &Path) -> Result<Self, String> {
        if !path.exists() {
            let defaults = Self::default();
            let text = serde_json::to_string_pretty(&defaults).expect("settings serialise");
            vellum_archive::write_atomic(path, (text + "\n").as_bytes(), 0o644)
                .map_err(|e| e.to_string())?;
            return Ok(defaults);
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let settings: Self =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        settings
            .tz()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        settings
            .calendar()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(settings)
    }

    /// The office's FOIA calendar.
    pub fn calendar(&self) -> Result<crate::foia::calendar::Calendar, String> {
        crate::foia::calendar::Calendar::new(
            self.response_days,
            &self.working_days,
            &self.holidays,
            &self.extra_holidays,
        )
    }

    /// The office's time zone.
    pub fn tz(&self) -> Result<jiff::tz::TimeZone, String> {
        jiff::tz::TimeZone::get(&self.time_zone)
            .map_err(|e| format!("time_zone {:?}: {e}", self.time_zone))
    }
}

/// Which end of a range a date bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// A plain date means its first instant.
    Start,
    /// A plain date means its last millisecond.
    End,
}

impl OfficeSettings {
    /// Unix ms of `text` in the office's time zone: see [`parse_instant`].
    pub fn parse_time(&self, text: &str, bound: Bound) -> Result<i64, String> {
        parse_instant(text, &self.tz()?, bound).map_err(|why| {
            format!(
                "invalid date {:?}: {why}; use a date (2026-11-03, the office's day in {}) or an \
                 RFC 3339 time with its offset (2026-11-03T09:00:00-05:00)",
                text.trim(),
                self.time_zone
            )
        })
    }

    /// Both ends of a range, checked to be in order.
    pub fn parse_range(
        &self,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<(Option<i64>, Option<i64>), String> {
        let from = from.map(|f| self.parse_time(f, Bound::Start)).transpose()?;
        let to = to.map(|t| self.parse_time(t, Bound::End)).transpose()?;
        if let (Some(f), Some(t)) = (from, to) {
            if f > t {
                return Err("the range ends before it begins".into());
            }
        }
        Ok((from, to))
    }
}

/// Unix ms of `text`: an RFC 3339 time with any offset (`2026-11-03T09:00:00-05:00`, `…Z`),
/// a wall-clock time without one (`2026-11-03T09:00`, in `tz`), or a plain date
/// (`2026-11-03`, a day of `tz`: its first instant, or with [`Bound::End`] its last
/// millisecond). The one reading of dates for searches, holds, the audit trail and cases.
pub fn parse_instant(text: &str, tz: &jiff::tz::TimeZone, bound: Bound) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(at) = text.parse::<jiff::Timestamp>() {
        return Ok(at.as_millisecond());
    }
    let is_date = text.len() == 10 && text.as_bytes().get(4) == Some(&b'-');
    if is_date {
        let date: jiff::civil::Date = text.parse().map_err(|e| format!("{e}"))?;
        let day = match bound {
            Bound::Start => Ok(date),
            Bound::End => date.tomorrow(),
        };
        let start = day
            .and_then(|d| d.to_zoned_datetime(tz.clone()))
            .map_err(|e| e.to_string())?;
        return Ok(start.timestamp().as_millisecond() - i64::from(bound == Bound::End));
    }
    match text.parse::<jiff::civil::DateTime>() {
        Ok(local) => local
            .to_zoned_datetime(tz.clone())
            .map(|z| z.timestamp().as_millisecond())
            .map_err(|e| e.to_string()),
        Err(_) => Err("not a time or a date".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_york() -> OfficeSettings {
        OfficeSettings {
            time_zone: "America/New_York".into(),
            ..OfficeSettings::default()
        }
    }

    #[test]
    fn issue_11_dates_take_any_offset_or_a_plain_day_of_the_office() {
        let office = new_york();
        let z = office
            .parse_time("2026-11-03T14:00:00Z", Bound::Start)
            .unwrap();
        let offset = office
            .parse_time("2026-11-03T09:00:00-05:00", Bound::Start)
            .unwrap();
        assert_eq!(z, offset);
        // 3 November 2026 in New York is UTC-5 (after the DST change on 1 November).
        let start = office.parse_time("2026-11-03", Bound::Start).unwrap();
        let end = office.parse_time("2026-11-03", Bound::End).unwrap();
        assert_eq!(
            start,
            office
                .parse_time("2026-11-03T05:00:00Z", Bound::Start)
                .unwrap()
        );
        assert_eq!(end - start, 24 * 3600 * 1000 - 1);
        // The day of the change is 25 hours long.
        let long_day = office.parse_time("2026-11-01", Bound::End).unwrap()
            - office.parse_time("2026-11-01", Bound::Start).unwrap();
        assert_eq!(long_day, 25 * 3600 * 1000 - 1);
        // Without an offset, the office's wall clock.
        assert_eq!(
            office.parse_time("2026-11-03T09:00", Bound::Start).unwrap(),
            offset
        );
        for bad in [
            "yesterday",
            "2026-13-01",
            "03/11/2026",
            "",
            "2026-11-03Tnine",
        ] {
            assert!(office.parse_time(bad, Bound::Start).is_err(), "{bad}");
        }
        assert!(office
            .parse_range(Some("2026-11-04"), Some("2026-11-03"))
            .is_err());
    }
}
