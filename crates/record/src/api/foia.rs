//! FOIA cases, review, redaction and productions (issue 11).
//!
//! Owned by the cases work. `Exemption` is shared with the production format.

use serde::{Deserialize, Serialize};

/// A FOIA exemption, 5 U.S.C. 552(b)(1)-(b)(9), with (b)(7)(A)-(F).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum Exemption {
    #[serde(rename = "b1")]
    B1,
    #[serde(rename = "b2")]
    B2,
    #[serde(rename = "b3")]
    B3,
    #[serde(rename = "b4")]
    B4,
    #[serde(rename = "b5")]
    B5,
    #[serde(rename = "b6")]
    B6,
    #[serde(rename = "b7a")]
    B7A,
    #[serde(rename = "b7b")]
    B7B,
    #[serde(rename = "b7c")]
    B7C,
    #[serde(rename = "b7d")]
    B7D,
    #[serde(rename = "b7e")]
    B7E,
    #[serde(rename = "b7f")]
    B7F,
    #[serde(rename = "b8")]
    B8,
    #[serde(rename = "b9")]
    B9,
}

impl Exemption {
    pub const ALL: [Exemption; 14] = [
        Exemption::B1,
        Exemption::B2,
        Exemption::B3,
        Exemption::B4,
        Exemption::B5,
        Exemption::B6,
        Exemption::B7A,
        Exemption::B7B,
        Exemption::B7C,
        Exemption::B7D,
        Exemption::B7E,
        Exemption::B7F,
        Exemption::B8,
        Exemption::B9,
    ];

    /// The short form used on the command line and in JSON: `b6`, `b7c`.
    pub fn as_str(self) -> &'static str {
        match self {
            Exemption::B1 => "b1",
            Exemption::B2 => "b2",
            Exemption::B3 => "b3",
            Exemption::B4 => "b4",
            Exemption::B5 => "b5",
            Exemption::B6 => "b6",
            Exemption::B7A => "b7a",
            Exemption::B7B => "b7b",
            Exemption::B7C => "b7c",
            Exemption::B7D => "b7d",
            Exemption::B7E => "b7e",
            Exemption::B7F => "b7f",
            Exemption::B8 => "b8",
            Exemption::B9 => "b9",
        }
    }

    /// The label burned into a redaction box and written in the withholding log: `(b)(6)`,
    /// `(b)(7)(C)`.
    pub fn label(self) -> &'static str {
        match self {
            Exemption::B1 => "(b)(1)",
            Exemption::B2 => "(b)(2)",
            Exemption::B3 => "(b)(3)",
            Exemption::B4 => "(b)(4)",
            Exemption::B5 => "(b)(5)",
            Exemption::B6 => "(b)(6)",
            Exemption::B7A => "(b)(7)(A)",
            Exemption::B7B => "(b)(7)(B)",
            Exemption::B7C => "(b)(7)(C)",
            Exemption::B7D => "(b)(7)(D)",
            Exemption::B7E => "(b)(7)(E)",
            Exemption::B7F => "(b)(7)(F)",
            Exemption::B8 => "(b)(8)",
            Exemption::B9 => "(b)(9)",
        }
    }

    /// Accepts `b6`, `B6`, `(b)(6)`, `b7c`, `(b)(7)(C)`.
    pub fn parse(s: &str) -> Option<Exemption> {
        let compact: String = s
            .chars()
            .filter(|c| !matches!(c, '(' | ')' | ' '))
            .flat_map(char::to_lowercase)
            .collect();
        Exemption::ALL.into_iter().find(|e| e.as_str() == compact)
    }
}

impl std::fmt::Display for Exemption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exemptions_parse_in_every_written_form() {
        for e in Exemption::ALL {
            assert_eq!(Exemption::parse(e.as_str()), Some(e));
            assert_eq!(Exemption::parse(e.label()), Some(e));
        }
        assert_eq!(Exemption::parse("(b)(7)(C)"), Some(Exemption::B7C));
        assert_eq!(Exemption::parse("B6"), Some(Exemption::B6));
        for bad in ["b10", "b7", "b7g", "", "6", "exemption 6"] {
            assert_eq!(Exemption::parse(bad), None, "{bad}");
        }
    }
}
