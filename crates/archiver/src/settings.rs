//! The records office's settings, `DATA/office.json` (written with the defaults on first
//! start, edited by the office): its time zone, in which plain dates are read and dates are
//! shown. The FOIA work adds its calendar (working days, holidays, response time) here.

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficeSettings {
    /// IANA name (`America/New_York`): plain dates in searches, holds and cases are this
    /// zone's days.
    pub time_zone: String,
}

impl Default for OfficeSettings {
    fn default() -> Self {
        Self {
            time_zone: jiff::tz::TimeZone::system()
                .iana_name()
                .unwrap_or("UTC")
                .to_owned(),
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
        Ok(settings)
    }

    /// The office's time zone.
    pub fn tz(&self) -> Result<jiff::tz::TimeZone, String> {
        jiff::tz::TimeZone::get(&self.time_zone)
            .map_err(|e| format!("time_zone {:?}: {e}", self.time_zone))
    }
}
