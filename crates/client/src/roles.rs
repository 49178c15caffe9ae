//! Chat roles (issue 10): admins, renames and settings, and the check every commit this
//! device processes passes (the same rule the server runs: `vellum_mls::authorize_commit`).

use vellum_mls::mls_rs::group::CommitMessageDescription;
use vellum_mls::{authorize_commit, ChatSettings, CommitChange, DeviceCertificate};
use vellum_wire::AppPayload;

use crate::{ChatEvent, Client, Error, Group, MessageRow};

/// What a member may change in a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manage {
    /// Add or remove members.
    Members,
    /// Change the default timers.
    Timers,
    /// Rename the chat.
    Title,
    /// Name or remove admins, change settings.
    Settings,
}

impl Manage {
    fn verb(self) -> &'static str {
        match self {
            Manage::Members => "add or remove members",
            Manage::Timers => "change the timers",
            Manage::Title => "rename the chat",
            Manage::Settings => "change admins or settings",
        }
    }
}

/// The settings events of a commit by `by`: admins named or removed, settings changed.
pub(crate) fn settings_events(
    by: &str,
    before: &ChatSettings,
    after: &ChatSettings,
) -> Vec<ChatEvent> {
    let mut events = Vec::new();
    let (was, is) = (before.admin_names(), after.admin_names());
    for user in is.iter().filter(|u| !was.contains(u)) {
        events.push(ChatEvent::AdminAdded {
            by: by.to_owned(),
            user: user.clone(),
        });
    }
    for user in was.iter().filter(|u| !is.contains(u)) {
        events.push(ChatEvent::AdminRemoved {
            by: by.to_owned(),
            user: user.clone(),
        });
    }
    if (before.everyone_manages, before.read_receipts)
        != (after.everyone_manages, after.read_receipts)
    {
        let changed = |was: bool, is: bool| (was != is).then_some(is);
        events.push(ChatEvent::SettingsChanged {
            by: by.to_owned(),
            everyone_manages: changed(before.everyone_manages, after.everyone_manages),
            read_receipts: changed(before.read_receipts, after.read_receipts),
        });
    }
    events
}

impl Client {
    /// The chat's settings (admins, who manages, read receipts), from its GroupContext.
    pub fn chat_settings(&self, chat: &str) -> Result<ChatSettings, Error> {
        let group = self.load_group(&self.resolve_chat(chat)?)?;
        Ok(ChatSettings::from_extensions(&group.context().extensions)?)
    }

    /// Refuses, before anything is built, a change this user may not make in the chat.
    pub(crate) fn require_manager(&self, group_id: &str, what: Manage) -> Result<(), Error> {
        let group = self.load_group(group_id)?;
        let settings = ChatSettings::from_extensions(&group.context().extensions)?;
        let members = crate::chats::members(&group, &self.identity)?;
        if settings.may_manage(&self.user, members.iter().map(|m| m.user.as_str())) {
            return Ok(());
        }
        Err(Error::Invalid(format!(
            "only the chat's admins ({}) may {}",
            settings.admin_names().join(", "),
            what.verb()
        )))
    }

    /// Names `user` an admin of the chat (`add`), or no longer (`!add`). Admins only.
    pub async fn set_admin(
        &mut self,
        chat: &str,
        user: &str,
        add: bool,
    ) -> Result<ChatSettings, Error> {
        let _held = self.lock.hold()?;
        let group_id = self.resolve_chat(chat)?;
        self.require_manager(&group_id, Manage::Settings)?;
        let mut wanted = self.chat_settings(&group_id)?;
        let named = wanted.admins.iter().any(|a| a == user.as_bytes());
        if add {
            let members = crate::chats::members(&self.load_group(&group_id)?, &self.identity)?;
            if !members.iter().any(|m| m.user == user) {
                return Err(Error::Invalid(format!(
                    "{user} is not a member of this chat"
                )));
            }
            if named {
                return Err(Error::Invalid(format!("{user} is already an admin")));
            }
            wanted.admins.push(user.as_bytes().to_vec());
        } else {
            if !named {
                return Err(Error::Invalid(format!("{user} is not an admin")));
            }
            wanted.admins.retain(|a| a != user.as_bytes());
            if wanted.admins.is_empty() && !wanted.everyone_manages {
                return Err(Error::Invalid(
                    "a chat keeps at least one admin: name another admin first".into(),
                ));
            }
        }
        self.commit_settings(&group_id, wanted).await
    }

    /// Turns the chat's read receipts on or off. Admins only.
    pub async fn set_read_receipts(&mut self, chat: &str, on: bool) -> Result<ChatSettings, Error> {
        let _held = self.lock.hold()?;
        let group_id = self.resolve_chat(chat)?;
        self.require_manager(&group_id, Manage::Settings)?;
        let mut wanted = self.chat_settings(&group_id)?;
        wanted.read_receipts = on;
        self.commit_settings(&group_id, wanted).await
    }

    /// Commits `wanted` as the chat's settings; the change shows as events once it is synced.
    pub(crate) async fn commit_settings(
        &mut self,
        group_id: &str,
        wanted: ChatSettings,
    ) -> Result<ChatSettings, Error> {
        self.switch_archiver_if_needed(group_id).await?;
        let settings = wanted.clone();
        self.commit_with_rebase(group_id, true, move |group| {
            if ChatSettings::from_extensions(&group.context().extensions)? == settings {
                return Ok(None);
            }
            let extensions = settings.to_extensions(group.context().extensions.clone());
            Ok(Some(
                group
                    .commit_builder()
                    .set_group_context_ext(extensions)?
                    .build()?,
            ))
        })
        .await?;
        Ok(wanted)
    }

    /// Renames the chat for every member (the title travels encrypted). Admins only; the
    /// new title must be unique in this user's list.
    pub async fn rename_chat(&mut self, chat: &str, title: &str) -> Result<(), Error> {
        let _held = self.lock.hold()?;
        let group_id = self.resolve_chat(chat)?;
        crate::names::check_title(&self.store.chats()?, title, Some(&group_id))?;
        self.require_manager(&group_id, Manage::Title)?;
        let seq = self
            .send_payload(
                &group_id,
                AppPayload::ChatInfo {
                    title: title.to_owned(),
                },
                None,
                None,
            )
            .await?;
        self.store.begin()?;
        let user = self.user.clone();
        let saved = self.store.set_title(&group_id, title).and_then(|_| {
            let event = ChatEvent::TitleChanged {
                by: user.clone(),
                title: title.to_owned(),
            };
            self.typed_event_row(&group_id, Some(seq), &user, event)
        });
        self.finish_tx(saved).map(|_| ())
    }

    /// A title a member sent: taken from an admin, or as a newcomer's first title (it has
    /// none to keep); from anyone else it is ignored, with a notice. Returns the event row.
    pub(crate) fn receive_title(
        &self,
        group_id: &str,
        seq: u64,
        sender: &str,
        title: &str,
        group: &Group,
    ) -> Result<Option<MessageRow>, Error> {
        let current = self.store.chat(group_id)?.and_then(|c| c.title);
        if current.as_deref() == Some(title) {
            return Ok(None);
        }
        let settings = ChatSettings::from_extensions(&group.context().extensions)?;
        let Some(_) = current else {
            self.store.set_title(group_id, title)?;
            return Ok(None);
        };
        let members = crate::chats::members(group, &self.identity)?;
        if !settings.may_manage(sender, members.iter().map(|m| m.user.as_str())) {
            let text = format!(
                "{sender} tried to rename this chat, but only its admins may; the title stays"
            );
            return self.event_row(group_id, Some(seq), "", &text).map(Some);
        }
        self.store.set_title(group_id, title)?;
        let event = ChatEvent::TitleChanged {
            by: sender.to_owned(),
            title: title.to_owned(),
        };
        self.typed_event_row(group_id, Some(seq), sender, event)
            .map(Some)
    }

    /// Checks a commit this device processed against the roles of the chat before it; an
    /// unauthorized one (the server should have refused it) is an alarm in the history.
    pub(crate) fn check_commit_roles(
        &self,
        group_id: &str,
        seq: u64,
        roster_before: &[(u32, DeviceCertificate)],
        extensions_before: vellum_mls::mls_rs::ExtensionList,
        commit: &CommitMessageDescription,
    ) -> Result<Option<MessageRow>, Error> {
        let change =
            CommitChange::describe(&self.identity, roster_before, extensions_before, commit)?;
        // Without a directory copy read, nothing can be judged: no false alarm.
        let mirror = self.directory().ok().filter(|m| m.state.upgrade_done);
        let may_go = |c: &DeviceCertificate| {
            mirror.as_ref().is_none_or(|m| {
                !m.state
                    .vouch(&c.user, &c.device_id, &c.signature_key)
                    .is_vouched()
            })
        };
        match authorize_commit(&change, &may_go) {
            Ok(()) => Ok(None),
            Err(e) => {
                tracing::error!(group = group_id, seq, error = %e, "a commit the chat's roles do not allow");
                let text =
                    format!("WARNING: a change this chat's roles do not allow was made: {e}");
                let event = ChatEvent::RolesAlarm { text };
                self.typed_event_row(group_id, Some(seq), "", event)
                    .map(Some)
            }
        }
    }

    /// The roles events of a commit this device applied: an alarm if the roles before it did
    /// not allow it, then the admins and settings it changed.
    pub(crate) fn roles_events(
        &self,
        group_id: &str,
        seq: u64,
        roster_before: &[(u32, DeviceCertificate)],
        extensions_before: vellum_mls::mls_rs::ExtensionList,
        commit: &CommitMessageDescription,
        group: &Group,
    ) -> Result<Vec<MessageRow>, Error> {
        let before = ChatSettings::from_extensions(&extensions_before)?;
        let after = ChatSettings::from_extensions(&group.context().extensions)?;
        let mut rows: Vec<MessageRow> = self
            .check_commit_roles(group_id, seq, roster_before, extensions_before, commit)?
            .into_iter()
            .collect();
        let by = roster_before
            .iter()
            .find(|(index, _)| *index == commit.committer)
            .map_or("someone", |(_, c)| c.user.as_str());
        for event in settings_events(by, &before, &after) {
            rows.push(self.typed_event_row(group_id, Some(seq), by, event)?);
        }
        Ok(rows)
    }
}
