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
