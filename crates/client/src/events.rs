//! Typed chat events: what a member's history says happened in a chat, above all who joined
//! and left it (issue 9, "no silent readers"). Each event row of the history carries one,
//! stored as JSON beside its sentence; rows written before there were typed events read back
//! as [`ChatEvent::Notice`] of their text.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vellum_mls::mls_rs::group::proposal::Proposal;
use vellum_mls::mls_rs::group::{CommitEffect, CommitMessageDescription, Sender};
use vellum_mls::{ChatPolicy, DeviceCertificate};

use crate::{Client, Error, Member, MessageRow};

/// One thing that happened in a chat, as `sync`, `watch` and `history` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatEvent {
    /// `user` had no device in the chat and now has some, added by `by`.
    MemberAdded { by: String, user: String },
    /// `user`'s last device left the chat, removed by `by`.
    MemberRemoved { by: String, user: String },
    /// `user` took their own last device out of the chat.
    MemberLeft { user: String },
    /// `user`, already in the chat, gained device `device_id`.
    DeviceAdded {
        by: String,
        user: String,
        device_id: String,
    },
    /// `user` lost device `device_id` and keeps others in the chat.
    DeviceRemoved {
        by: String,
        user: String,
        device_id: String,
        #[serde(default)]
        reason: Option<String>,
    },
    /// `by` changed the chat's default timers.
    TimersChanged {
        by: String,
        expire_secs: Option<u64>,
        burn_secs: Option<u64>,
        /// The timers before (issue 10: the sentence says what changed). Absent in events
        /// stored before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<TimerSettings>,
    },
    /// `by` deleted one of their messages for everyone.
    MessageDeleted { by: String },
    /// The administrator reset `user`'s identity key (the key directory says so).
    IdentityReset { user: String },
    /// The key directory says `user`'s device `device_id` was revoked.
    DeviceRevoked { user: String, device_id: String },
    /// A device the key directory does not vouch for was taken out of the chat.
    UnvouchedDeviceRemoved {
        by: String,
        user: String,
        device_id: String,
        reason: String,
    },
    /// Something is wrong with the key directory (a fork, a rollback, a broken rule).
    DirectoryAlarm { text: String },
    /// `by` renamed the chat to `title` (issue 10).
    TitleChanged { by: String, title: String },
    /// `by` named `user` an admin of the chat.
    AdminAdded { by: String, user: String },
    /// `by` took `user`'s admin role away.
    AdminRemoved { by: String, user: String },
    /// `by` changed the chat's settings: each field is the new value of what changed, absent
    /// when it did not.
    SettingsChanged {
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        everyone_manages: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        read_receipts: Option<bool>,
    },
    /// A commit made a change the chat's roles do not allow (the server should have refused
    /// it).
    RolesAlarm { text: String },
    /// Anything else, as a sentence: the chat's class, a conversion, legal holds, records
    /// warnings, and every event of a version before typed events.
    Notice { text: String },
    /// Issue 10: `by` reacted to message `target` with `emoji` (or, with `remove`, withdrew
    /// it). The row of a [`crate::MessageKind::Reaction`].
    Reacted {
        by: String,
        target: String,
        emoji: String,
        #[serde(default)]
        remove: bool,
    },
    /// Issue 10: `by` edited their message `target` (which now holds the newest text). The
    /// row of a [`crate::MessageKind::Edit`].
    Edited { by: String, target: String },
}

/// A chat's default timers, seconds (`None`: off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerSettings {
    pub expire_secs: Option<u64>,
    pub burn_secs: Option<u64>,
}

/// A device id as events print it: enough to tell devices apart, short enough to read.
pub(crate) fn short_device(device_id: &str) -> String {
    match device_id.char_indices().nth(8) {
        Some((end, _)) => format!("{}…", &device_id[..end]),
        None => device_id.to_owned(),
    }
}

impl ChatEvent {
    /// The message a reaction or an edit is about.
    pub fn target(&self) -> Option<&str> {
        match self {
            ChatEvent::Reacted { target, .. } | ChatEvent::Edited { target, .. } => Some(target),
            _ => None,
        }
    }

    /// The event as one sentence ("alice added carol").
    pub fn text(&self) -> String {
        match self {
            ChatEvent::MemberAdded { by, user } => format!("{by} added {user}"),
            ChatEvent::MemberRemoved { by, user } => format!("{user} was removed by {by}"),
            ChatEvent::MemberLeft { user } => format!("{user} left"),
            ChatEvent::DeviceAdded {
                by,
                user,
                device_id,
            } if by == user => format!("{user} added a device ({})", short_device(device_id)),
            ChatEvent::DeviceAdded {
                by,
                user,
                device_id,
            } => format!(
                "{by} added a device of {user} ({})",
                short_device(device_id)
            ),
            ChatEvent::DeviceRemoved {
                by,
                user,
                device_id,
                reason,
            } => {
                let device = short_device(device_id);
                let sentence = if by == user {
                    format!("{user} removed their device {device}")
                } else {
                    format!("{user}'s device {device} was removed by {by}")
                };
                match reason {
                    Some(reason) => format!("{sentence} ({reason})"),
                    None => sentence,
                }
            }
            ChatEvent::TimersChanged {
                by,
                expire_secs,
                burn_secs,
                before,
            } => {
                let policy = ChatPolicy {
                    expire_secs: *expire_secs,
                    burn_secs: *burn_secs,
                };
                let Some(before) = before else {
                    return format!("{by} set {}", policy.describe());
                };
                let describe = vellum_wire::timer::describe;
                let mut changed = Vec::new();
                if before.expire_secs != *expire_secs {
                    changed.push(match expire_secs {
                        Some(e) => format!("messages to disappear after {}", describe(*e)),
                        None => "messages not to disappear after a set time".to_owned(),
                    });
                }
                if before.burn_secs != *burn_secs {
                    changed.push(match burn_secs {
                        Some(b) => format!("messages to burn {} after reading", describe(*b)),
                        None => "burn-on-read off".to_owned(),
                    });
                }
                let mut sentence = format!("{by} set {}", changed.join(" and "));
                match (before.expire_secs == *expire_secs, expire_secs) {
                    (true, Some(e)) => sentence.push_str(&format!(
                        " (messages still disappear after {})",
                        describe(*e)
                    )),
                    _ if before.burn_secs == *burn_secs => {
                        if let Some(b) = burn_secs {
                            sentence.push_str(&format!(
                                " (messages still burn {} after reading)",
                                describe(*b)
                            ));
                        }
                    }
                    _ => {}
                }
                sentence
            }
            ChatEvent::MessageDeleted { by } => format!("{by} deleted a message"),
            ChatEvent::IdentityReset { user } => {
                format!("{user}'s identity was reset by the administrator")
            }
            ChatEvent::DeviceRevoked { user, device_id } => {
                format!("{user}'s device {} was revoked", short_device(device_id))
            }
            ChatEvent::UnvouchedDeviceRemoved {
                by,
                user,
                device_id,
                reason,
            } => format!(
                "{by} removed {user}'s device {}: {reason}",
                short_device(device_id)
            ),
            ChatEvent::TitleChanged { by, title } => format!("{by} renamed the chat to {title:?}"),
            ChatEvent::AdminAdded { by, user } => format!("{by} made {user} an admin"),
            ChatEvent::AdminRemoved { by, user } if by == user => {
                format!("{user} is no longer an admin")
            }
            ChatEvent::AdminRemoved { by, user } => {
                format!("{by} removed {user} from the admins")
            }
            ChatEvent::SettingsChanged {
                by,
                everyone_manages,
                read_receipts,
            } => {
                let mut changed = Vec::new();
                match everyone_manages {
                    Some(true) => changed.push("every member to manage the chat"),
                    Some(false) => changed.push("only admins to manage the chat"),
                    None => {}
                }
                match read_receipts {
                    Some(true) => changed.push("read receipts on"),
                    Some(false) => changed.push("read receipts off"),
                    None => {}
                }
                format!("{by} set {}", changed.join(" and "))
            }
            ChatEvent::DirectoryAlarm { text }
            | ChatEvent::RolesAlarm { text }
            | ChatEvent::Notice { text } => text.clone(),
            ChatEvent::Reacted {
                by,
                emoji,
                remove: false,
                ..
            } => format!("{by} reacted {emoji}"),
            ChatEvent::Reacted { by, emoji, .. } => format!("{by} withdrew their {emoji}"),
            ChatEvent::Edited { by, .. } => format!("{by} edited a message"),
        }
    }
}

/// The membership events of one commit by `by` (a user), from the chat's devices before and
/// after it: per user, in user order, one event for a user who came or went as a whole, else
/// one per device added or removed.
pub(crate) fn membership_events(by: &str, before: &[Member], after: &[Member]) -> Vec<ChatEvent> {
    let mut users: BTreeMap<&str, (Vec<&str>, Vec<&str>)> = BTreeMap::new();
    for m in before {
        users.entry(&m.user).or_default().0.push(&m.device_id);
    }
    for m in after {
        users.entry(&m.user).or_default().1.push(&m.device_id);
    }
    let mut events = Vec::new();
    for (user, (had, has)) in users {
        let (by, user) = (by.to_owned(), user.to_owned());
        match (had.is_empty(), has.is_empty()) {
            (true, false) => events.push(ChatEvent::MemberAdded { by, user }),
            (false, true) if by == user => events.push(ChatEvent::MemberLeft { user }),
            (false, true) => events.push(ChatEvent::MemberRemoved { by, user }),
            _ => {
                for device in has.iter().filter(|d| !had.contains(d)) {
                    events.push(ChatEvent::DeviceAdded {
                        by: by.clone(),
                        user: user.clone(),
                        device_id: (*device).to_owned(),
                    });
                }
                for device in had.iter().filter(|d| !has.contains(d)) {
                    events.push(ChatEvent::DeviceRemoved {
                        by: by.clone(),
                        user: user.clone(),
                        device_id: (*device).to_owned(),
                        reason: None,
                    });
                }
            }
        }
    }
    events
}

/// The membership events of a commit this device processed, from the verified rosters (leaf
/// index, certificate) before and after it. The committer is named from `before`, where its
/// leaf is. When the commit removes this device, its group stays at the old epoch and `after`
/// is not looked at: the devices after are those before but the leaves the commit removed.
pub(crate) fn commit_events(
    before: &[(u32, DeviceCertificate)],
    after: &[(u32, DeviceCertificate)],
    commit: &CommitMessageDescription,
) -> Vec<ChatEvent> {
    let devices = |roster: &mut dyn Iterator<Item = &(u32, DeviceCertificate)>| -> Vec<Member> {
        roster
            .map(|(_, c)| Member {
                user: c.user.clone(),
                device_id: c.device_id.clone(),
            })
            .collect()
    };
    let by = before
        .iter()
        .find(|(index, _)| *index == commit.committer)
        .map_or("someone", |(_, c)| c.user.as_str());
    // Devices removed on a proposal of their own user: they left (issue 10).
    let cert = |index: u32| before.iter().find(|(i, _)| *i == index).map(|(_, c)| c);
    let left: Vec<&str> = match &commit.effect {
        CommitEffect::NewEpoch(e) | CommitEffect::Removed { new_epoch: e, .. } => e
            .applied_proposals
            .iter()
            .filter_map(|p| match (&p.proposal, &p.sender) {
                (Proposal::Remove(r), Sender::Member(s)) => match (cert(*s), cert(r.to_remove())) {
                    (Some(by), Some(gone)) if by.user == gone.user => Some(gone.device_id.as_str()),
                    _ => None,
                },
                _ => None,
            })
            .collect(),
        CommitEffect::ReInit(_) => Vec::new(),
    };
    let after = match &commit.effect {
        CommitEffect::Removed { new_epoch, .. } => {
            let removed: Vec<u32> = new_epoch
                .applied_proposals
                .iter()
                .filter_map(|p| match &p.proposal {
                    Proposal::Remove(remove) => Some(remove.to_remove()),
                    _ => None,
                })
                .collect();
            devices(&mut before.iter().filter(|(i, _)| !removed.contains(i)))
        }
        _ => devices(&mut after.iter()),
    };
    membership_events(by, &devices(&mut before.iter()), &after)
        .into_iter()
        .map(|event| match event {
            ChatEvent::MemberRemoved { user, .. }
                if before
                    .iter()
                    .filter(|(_, c)| c.user == user)
                    .all(|(_, c)| left.contains(&c.device_id.as_str())) =>
            {
                ChatEvent::MemberLeft { user }
            }
            other => other,
        })
        .collect()
}

impl Client {
    /// Records each of a commit's membership `events` in the chat's history at the commit's
    /// log position, by the committer; returns the rows for `sync` to show.
    pub(crate) fn record_membership_events(
        &self,
        group_id: &str,
        seq: u64,
        events: Vec<ChatEvent>,
    ) -> Result<Vec<MessageRow>, Error> {
        events
            .into_iter()
            .map(|event| {
                let who = match &event {
                    ChatEvent::MemberAdded { by, .. }
                    | ChatEvent::MemberRemoved { by, .. }
                    | ChatEvent::DeviceAdded { by, .. }
                    | ChatEvent::DeviceRemoved { by, .. } => by.clone(),
                    ChatEvent::MemberLeft { user } => user.clone(),
                    _ => String::new(),
                };
                self.typed_event_row(group_id, Some(seq), &who, event)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(user: &str, device: &str) -> Member {
        Member {
            user: user.into(),
            device_id: device.into(),
        }
    }

    #[test]
    fn issue_9_every_membership_change_is_one_event() {
        let before = [
            member("alice", "a1"),
            member("bob", "b1"),
            member("dave", "d1"),
            member("dave", "d2"),
            member("erin", "e1"),
            member("erin", "e2"),
        ];
        let after = [
            member("alice", "a1"),
            member("bob", "b1"),
            member("bob", "b2"),
            member("carol", "c1"),
            member("carol", "c2"),
            member("erin", "e1"),
        ];
        assert_eq!(
            membership_events("alice", &before, &after),
            vec![
                ChatEvent::DeviceAdded {
                    by: "alice".into(),
                    user: "bob".into(),
                    device_id: "b2".into()
                },
                // Two devices, one person: one event.
                ChatEvent::MemberAdded {
                    by: "alice".into(),
                    user: "carol".into()
                },
                ChatEvent::MemberRemoved {
                    by: "alice".into(),
                    user: "dave".into()
                },
                ChatEvent::DeviceRemoved {
                    by: "alice".into(),
                    user: "erin".into(),
                    device_id: "e2".into(),
                    reason: None
                },
            ]
        );
        assert_eq!(
            membership_events("dave", &before[..4], &before[..2]),
            vec![ChatEvent::MemberLeft {
                user: "dave".into()
            }]
        );
        assert!(
            membership_events("alice", &before, &before).is_empty(),
            "a commit that changes no membership (timers, keys) is no membership event"
        );
    }

    #[test]
    fn issue_9_events_read_as_sentences_and_typed_json() {
        let cases = [
            (
                ChatEvent::MemberAdded {
                    by: "alice".into(),
                    user: "carol".into(),
                },
                "alice added carol",
                r#"{"type":"member_added","by":"alice","user":"carol"}"#,
            ),
            (
                ChatEvent::MemberRemoved {
                    by: "alice".into(),
                    user: "dave".into(),
                },
                "dave was removed by alice",
                r#"{"type":"member_removed","by":"alice","user":"dave"}"#,
            ),
            (
                ChatEvent::MemberLeft {
                    user: "carol".into(),
                },
                "carol left",
                r#"{"type":"member_left","user":"carol"}"#,
            ),
            (
                ChatEvent::DeviceAdded {
                    by: "bob".into(),
                    user: "bob".into(),
                    device_id: "1a2b3c4d5e6f".into(),
                },
                "bob added a device (1a2b3c4d…)",
                r#"{"type":"device_added","by":"bob","user":"bob","device_id":"1a2b3c4d5e6f"}"#,
            ),
            (
                ChatEvent::DeviceRemoved {
                    by: "alice".into(),
                    user: "bob".into(),
                    device_id: "1a2b3c4d5e6f".into(),
                    reason: None,
                },
                "bob's device 1a2b3c4d… was removed by alice",
                r#"{"type":"device_removed","by":"alice","user":"bob","device_id":"1a2b3c4d5e6f","reason":null}"#,
            ),
            (
                ChatEvent::DeviceRemoved {
                    by: "alice".into(),
                    user: "bob".into(),
                    device_id: "b1".into(),
                    reason: Some("revoked".into()),
                },
                "bob's device b1 was removed by alice (revoked)",
                r#"{"type":"device_removed","by":"alice","user":"bob","device_id":"b1","reason":"revoked"}"#,
            ),
            (
                ChatEvent::TimersChanged {
                    by: "alice".into(),
                    expire_secs: Some(86_400),
                    burn_secs: None,
                    before: None,
                },
                "alice set messages to disappear after 1 day",
                r#"{"type":"timers_changed","by":"alice","expire_secs":86400,"burn_secs":null}"#,
            ),
            // Issue 10: turning burn-on-read off says so, not the timer that stays.
            (
                ChatEvent::TimersChanged {
                    by: "alice".into(),
                    expire_secs: Some(86_400),
                    burn_secs: None,
                    before: Some(TimerSettings {
                        expire_secs: Some(86_400),
                        burn_secs: Some(600),
                    }),
                },
                "alice set burn-on-read off (messages still disappear after 1 day)",
                r#"{"type":"timers_changed","by":"alice","expire_secs":86400,"burn_secs":null,"before":{"expire_secs":86400,"burn_secs":600}}"#,
            ),
            (
                ChatEvent::MessageDeleted { by: "bob".into() },
                "bob deleted a message",
                r#"{"type":"message_deleted","by":"bob"}"#,
            ),
            (
                ChatEvent::IdentityReset { user: "bob".into() },
                "bob's identity was reset by the administrator",
                r#"{"type":"identity_reset","user":"bob"}"#,
            ),
            (
                ChatEvent::DeviceRevoked {
                    user: "bob".into(),
                    device_id: "1a2b3c4d5e6f".into(),
                },
                "bob's device 1a2b3c4d… was revoked",
                r#"{"type":"device_revoked","user":"bob","device_id":"1a2b3c4d5e6f"}"#,
            ),
            (
                ChatEvent::UnvouchedDeviceRemoved {
                    by: "alice".into(),
                    user: "bob".into(),
                    device_id: "b9".into(),
                    reason: "not in the key directory".into(),
                },
                "alice removed bob's device b9: not in the key directory",
                r#"{"type":"unvouched_device_removed","by":"alice","user":"bob","device_id":"b9","reason":"not in the key directory"}"#,
            ),
            (
                ChatEvent::DirectoryAlarm {
                    text: "the key directory forked".into(),
                },
                "the key directory forked",
                r#"{"type":"directory_alarm","text":"the key directory forked"}"#,
            ),
            (
                ChatEvent::TitleChanged {
                    by: "alice".into(),
                    title: "ops".into(),
                },
                "alice renamed the chat to \"ops\"",
                r#"{"type":"title_changed","by":"alice","title":"ops"}"#,
            ),
            (
                ChatEvent::AdminAdded {
                    by: "alice".into(),
                    user: "bob".into(),
                },
                "alice made bob an admin",
                r#"{"type":"admin_added","by":"alice","user":"bob"}"#,
            ),
            (
                ChatEvent::AdminRemoved {
                    by: "alice".into(),
                    user: "bob".into(),
                },
                "alice removed bob from the admins",
                r#"{"type":"admin_removed","by":"alice","user":"bob"}"#,
            ),
            (
                ChatEvent::SettingsChanged {
                    by: "alice".into(),
                    everyone_manages: None,
                    read_receipts: Some(false),
                },
                "alice set read receipts off",
                r#"{"type":"settings_changed","by":"alice","read_receipts":false}"#,
            ),
            (
                ChatEvent::SettingsChanged {
                    by: "alice".into(),
                    everyone_manages: Some(true),
                    read_receipts: None,
                },
                "alice set every member to manage the chat",
                r#"{"type":"settings_changed","by":"alice","everyone_manages":true}"#,
            ),
            (
                ChatEvent::Notice {
                    text: "The legal hold was released".into(),
                },
                "The legal hold was released",
                r#"{"type":"notice","text":"The legal hold was released"}"#,
            ),
        ];
        for (event, text, json) in cases {
            assert_eq!(event.text(), text);
            assert_eq!(serde_json::to_string(&event).unwrap(), json);
            assert_eq!(serde_json::from_str::<ChatEvent>(json).unwrap(), event);
        }
    }
}
