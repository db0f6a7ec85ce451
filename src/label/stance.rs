//! A paragraph's stance toward a target: `favor`, `against` or `none`, the one spelling used in
//! gold files, predictions, reports and on the command line.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A paragraph's stance toward one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stance {
    Favor,
    Against,
    None,
}

impl Stance {
    /// All stances in their reporting order: favor, against, none.
    pub const ALL: [Stance; 3] = [Stance::Favor, Stance::Against, Stance::None];

    /// The lowercase name, as written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Stance::Favor => "favor",
            Stance::Against => "against",
            Stance::None => "none",
        }
    }

    /// Position in [`Stance::ALL`].
    pub fn index(self) -> usize {
        match self {
            Stance::Favor => 0,
            Stance::Against => 1,
            Stance::None => 2,
        }
    }
}

impl fmt::Display for Stance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no stance.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown stance '{0}'; expected favor, against or none")]
pub struct ParseStanceError(pub String);

impl FromStr for Stance {
    type Err = ParseStanceError;

    /// Parses `favor`, `against` or `none`, ignoring case and surrounding spaces, so upper-case
    /// labels from other datasets (SemEval writes `FAVOR`) read as well.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        Stance::ALL
            .into_iter()
            .find(|stance| trimmed.eq_ignore_ascii_case(stance.as_str()))
            .ok_or_else(|| ParseStanceError(text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_every_stance() {
        for stance in Stance::ALL {
            assert_eq!(stance.to_string().parse::<Stance>(), Ok(stance));
            assert_eq!(Stance::ALL[stance.index()], stance);
        }
        assert_eq!(" AGAINST ".parse::<Stance>(), Ok(Stance::Against));
    }

    #[test]
    fn rejects_an_unknown_stance_with_the_choices() {
        let error = "neutral".parse::<Stance>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown stance 'neutral'; expected favor, against or none"
        );
    }

    #[test]
    fn serialises_lowercase() {
        assert_eq!(serde_json::to_string(&Stance::Favor).unwrap(), "\"favor\"");
        let parsed: Stance = serde_json::from_str("\"none\"").unwrap();
        assert_eq!(parsed, Stance::None);
        assert!(serde_json::from_str::<Stance>("\"Favor\"").is_err());
    }
}
