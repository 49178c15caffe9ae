//! The chat policy: a GroupContext extension every member has agreed to, and that the
//! server can read from the public handshake to enforce the org's bounds.

use mls_rs::extension::{ExtensionType, MlsCodecExtension};
use mls_rs::ExtensionList;
use mls_rs_codec::{MlsDecode, MlsEncode, MlsSize};
use vellum_wire::timer::describe;
use vellum_wire::OrgPolicy;

use crate::Error;

/// Private-use extension type (RFC 9420 §17.3: 0xF000-0xFFFF).
pub const CHAT_POLICY_EXTENSION: ExtensionType = ExtensionType::new(0xF0A1);

/// Default timers of a chat. They apply to messages sent after they are set; a message may
/// carry shorter timers, never longer ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, MlsSize, MlsEncode, MlsDecode)]
pub struct ChatPolicy {
    pub expire_secs: Option<u64>,
    pub burn_secs: Option<u64>,
}

impl MlsCodecExtension for ChatPolicy {
    fn extension_type() -> ExtensionType {
        CHAT_POLICY_EXTENSION
    }
}

/// Private-use extension type marking a record chat.
pub const RECORD_CHAT_EXTENSION: ExtensionType = ExtensionType::new(0xF0A2);

/// Present in the GroupContext of a record chat: every member agreed that the org's
/// archiver device is a member and keeps what is said as records.
#[derive(Debug, Clone, PartialEq, Eq, MlsSize, MlsEncode, MlsDecode)]
pub struct RecordChat {
    pub archiver_device: Vec<u8>,
}

impl MlsCodecExtension for RecordChat {
    fn extension_type() -> ExtensionType {
        RECORD_CHAT_EXTENSION
    }
}

impl RecordChat {
    pub fn new(archiver_device: &str) -> Self {
        Self {
            archiver_device: archiver_device.as_bytes().to_vec(),
        }
    }

    /// The archiver of a record chat; `None` for a transitory chat.
    pub fn archiver(extensions: &ExtensionList) -> Result<Option<String>, Error> {
        let record = extensions
            .get_as::<RecordChat>()
            .map_err(|e| Error::Rejected(format!("undecodable record-chat extension: {e}")))?;
        record
            .map(|r| {
                String::from_utf8(r.archiver_device)
                    .map_err(|_| Error::Rejected("archiver id is not UTF-8".into()))
            })
            .transpose()
    }

    pub fn add_to(self, mut extensions: ExtensionList) -> ExtensionList {
        extensions
            .set_from(self)
            .expect("record-chat extension encodes");
        extensions
    }
}

/// Private-use extension type of a chat's settings (issue 10).
pub const CHAT_SETTINGS_EXTENSION: ExtensionType = ExtensionType::new(0xF0A3);

/// Who manages a chat, and whether its members send read receipts: a GroupContext extension,
/// so every member and the server read the same roles from the public handshake. A chat
/// created before 0.5 has none and reads as [`ChatSettings::legacy`]: everyone manages it.
#[derive(Debug, Clone, PartialEq, Eq, MlsSize, MlsEncode, MlsDecode)]
pub struct ChatSettings {
    /// User names (UTF-8) of the chat's admins: they add and remove members, change the
    /// timers, the title, the settings and the admins.
    pub admins: Vec<Vec<u8>>,
    /// Every member may do what admins do.
    pub everyone_manages: bool,
    /// Members send "read up to here" markers (if the org's policy allows them).
    pub read_receipts: bool,
}

impl MlsCodecExtension for ChatSettings {
    fn extension_type() -> ExtensionType {
        CHAT_SETTINGS_EXTENSION
    }
}

impl ChatSettings {
    /// A new chat's settings: its creator is its only admin.
    pub fn new(creator: &str) -> Self {
        Self {
            admins: vec![creator.as_bytes().to_vec()],
            everyone_manages: false,
            read_receipts: true,
        }
    }

    /// What a chat without the extension has: every member manages it.
    pub fn legacy() -> Self {
        Self {
            admins: Vec::new(),
            everyone_manages: true,
            read_receipts: true,
        }
    }

    /// The settings in a GroupContext's extensions ([`ChatSettings::legacy`] when absent).
    pub fn from_extensions(extensions: &ExtensionList) -> Result<Self, Error> {
        let settings = extensions
            .get_as::<ChatSettings>()
            .map_err(|e| Error::Rejected(format!("undecodable chat settings: {e}")))?
            .unwrap_or_else(Self::legacy);
        if settings
            .admins
            .iter()
            .any(|a| std::str::from_utf8(a).is_err())
        {
            return Err(Error::Rejected("chat admin name is not UTF-8".into()));
        }
        Ok(settings)
    }

    pub fn to_extensions(&self, mut extensions: ExtensionList) -> ExtensionList {
        extensions
            .set_from(self.clone())
            .expect("chat settings encode");
        extensions
    }

    /// Whether `user` may manage the chat whose members are `members` (user names): an admin
    /// may, and when no admin is a member any longer (the last one left) every member may, so
    /// that a chat is never left without anyone to manage it.
    pub fn may_manage<'a>(&self, user: &str, members: impl IntoIterator<Item = &'a str>) -> bool {
        if self.everyone_manages || self.admins.iter().any(|a| a == user.as_bytes()) {
            return true;
        }
        !members
            .into_iter()
            .any(|m| self.admins.iter().any(|a| a == m.as_bytes()))
    }

    /// The admins' user names.
    pub fn admin_names(&self) -> Vec<String> {
        self.admins
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }
}

/// Timers outside the org's bounds, or a message timer longer than its chat's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyViolation(pub String);

impl ChatPolicy {
    /// The policy in a GroupContext's extensions; a chat without one has no timers.
    pub fn from_extensions(extensions: &ExtensionList) -> Result<Self, Error> {
        let policy = extensions
            .get_as::<ChatPolicy>()
            .map(Option::unwrap_or_default)
            .map_err(|e| Error::Rejected(format!("undecodable chat policy: {e}")))?;
        let max = vellum_wire::timer::MAX_TIMER_SECS;
        if [policy.expire_secs, policy.burn_secs]
            .into_iter()
            .flatten()
            .any(|s| s > max)
        {
            return Err(Error::Rejected(
                "chat timers beyond the 10-year maximum".into(),
            ));
        }
        Ok(policy)
    }

    pub fn to_extensions(self, mut extensions: ExtensionList) -> ExtensionList {
        extensions.set_from(self).expect("chat policy encodes");
        extensions
    }

    /// Checks the chat's timers against the org's bounds.
    pub fn check(&self, org: &OrgPolicy) -> Result<(), PolicyViolation> {
        match (self.expire_secs, org.max_expire_secs) {
            (None, _) if !org.allow_no_expiry => {
                return Err(PolicyViolation(
                    "this organisation requires an expiration timer on every chat".into(),
                ))
            }
            (Some(e), Some(max)) if e > max => {
                return Err(PolicyViolation(format!(
                    "expiration after {} is longer than this organisation allows ({})",
                    describe(e),
                    describe(max)
                )))
            }
            _ => {}
        }
        if let (Some(b), Some(max)) = (self.burn_secs, org.max_burn_secs) {
            if b > max {
                return Err(PolicyViolation(format!(
                    "burn-on-read after {} is longer than this organisation allows ({})",
                    describe(b),
                    describe(max)
                )));
            }
        }
        Ok(())
    }

    /// The timers of one message: the chat's defaults, or shorter overrides.
    pub fn message_timers(
        &self,
        expire: Option<u64>,
        burn: Option<u64>,
    ) -> Result<ChatPolicy, PolicyViolation> {
        let pick = |what: &str, chat: Option<u64>, wanted: Option<u64>| match (chat, wanted) {
            (Some(c), Some(w)) if w > c => Err(PolicyViolation(format!(
                "a message's {what} timer ({}) cannot be longer than the chat's ({})",
                describe(w),
                describe(c)
            ))),
            (c, None) => Ok(c),
            (_, w) => Ok(w),
        };
        Ok(ChatPolicy {
            expire_secs: pick("expiration", self.expire_secs, expire)?,
            burn_secs: pick("burn-on-read", self.burn_secs, burn)?,
        })
    }

    /// "messages to disappear after 1 day", for system events ("alice set ...").
    pub fn describe(&self) -> String {
        match (self.expire_secs, self.burn_secs) {
            (None, None) => "messages not to disappear".into(),
            (Some(e), None) => format!("messages to disappear after {}", describe(e)),
            (None, Some(b)) => format!("messages to burn {} after reading", describe(b)),
            (Some(e), Some(b)) => format!(
                "messages to disappear after {} and to burn {} after reading",
                describe(e),
                describe(b)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    /// Issue 10: admins manage; when no admin is a member any more, every member does.
    #[test]
    fn issue_10_a_chat_without_an_admin_among_its_members_is_managed_by_all() {
        let settings = ChatSettings::new("alice");
        assert!(settings.may_manage("alice", ["alice", "bob"]));
        assert!(!settings.may_manage("bob", ["alice", "bob"]));
        assert!(settings.may_manage("bob", ["bob", "carol"]));
        assert!(ChatSettings::legacy().may_manage("bob", ["alice", "bob"]));
    }

    #[test]
    fn round_trips_through_group_context_extensions() {
        let policy = ChatPolicy {
            expire_secs: Some(DAY),
            burn_secs: Some(60),
        };
        let list = policy.to_extensions(ExtensionList::new());
        assert_eq!(ChatPolicy::from_extensions(&list).unwrap(), policy);
        assert_eq!(
            ChatPolicy::from_extensions(&ExtensionList::new()).unwrap(),
            ChatPolicy::default()
        );
    }

    #[test]
    fn org_bounds_are_enforced() {
        let org = OrgPolicy {
            max_expire_secs: Some(7 * DAY),
            max_burn_secs: Some(3600),
            allow_no_expiry: false,
            ..OrgPolicy::default()
        };
        assert!(ChatPolicy {
            expire_secs: Some(DAY),
            burn_secs: Some(60)
        }
        .check(&org)
        .is_ok());
        assert!(ChatPolicy {
            expire_secs: Some(7 * DAY),
            burn_secs: None
        }
        .check(&org)
        .is_ok());
        assert!(ChatPolicy {
            expire_secs: Some(8 * DAY),
            burn_secs: None
        }
        .check(&org)
        .is_err());
        assert!(ChatPolicy {
            expire_secs: Some(DAY),
            burn_secs: Some(3601)
        }
        .check(&org)
        .is_err());
        assert!(ChatPolicy {
            expire_secs: None,
            burn_secs: None
        }
        .check(&org)
        .is_err());
        assert!(ChatPolicy::default().check(&OrgPolicy::default()).is_ok());
    }

    #[test]
    fn messages_may_only_shorten_timers() {
        let chat = ChatPolicy {
            expire_secs: Some(DAY),
            burn_secs: None,
        };
        assert_eq!(chat.message_timers(None, None).unwrap(), chat);
        assert_eq!(
            chat.message_timers(Some(60), Some(30)).unwrap(),
            ChatPolicy {
                expire_secs: Some(60),
                burn_secs: Some(30)
            }
        );
        assert!(chat.message_timers(Some(2 * DAY), None).is_err());
        let open = ChatPolicy::default();
        assert_eq!(
            open.message_timers(Some(60), None).unwrap().expire_secs,
            Some(60)
        );
    }

    #[test]
    fn describes_itself_for_system_events() {
        let day = ChatPolicy {
            expire_secs: Some(DAY),
            burn_secs: None,
        };
        assert_eq!(day.describe(), "messages to disappear after 1 day");
        let both = ChatPolicy {
            expire_secs: Some(3600),
            burn_secs: Some(300),
        };
        assert_eq!(
            both.describe(),
            "messages to disappear after 1 hour and to burn 5 minutes after reading"
        );
        let burn = ChatPolicy {
            expire_secs: None,
            burn_secs: Some(60),
        };
        assert_eq!(burn.describe(), "messages to burn 1 minute after reading");
        assert_eq!(
            ChatPolicy::default().describe(),
            "messages not to disappear"
        );
    }
}
