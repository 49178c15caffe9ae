//! Who may change a chat (issue 10): the one authorization rule that the server's tracker and
//! every member's client run on each commit, from the chat's [`ChatSettings`] before it.
//!
//! An admin (every member, where the chat says `everyone_manages`, or in a chat without
//! settings) may change anything. Any member may also: add devices of its own user (device
//! approval), remove its own user's devices, remove devices that the caller's directory says
//! may go (revoked, not vouched for), make the chat a record chat or switch its archiver
//! (adding the archiver, removing the replaced one), and commit the removals members proposed
//! of themselves (leaving).

use mls_rs::group::proposal::Proposal;
use mls_rs::group::{CommitEffect, CommitMessageDescription, Sender};
use mls_rs::ExtensionList;
use vellum_wire::RECORDS_USER;

use crate::{ChatPolicy, ChatSettings, DeviceCertificate, Error, OrgIdentityProvider, RecordChat};

/// A device a commit removes, and whether a device of its own user proposed its removal (the
/// user is leaving).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedDevice {
    pub device: DeviceCertificate,
    pub left: bool,
}

/// What one commit changes, as the authorization rule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitChange {
    pub committer: DeviceCertificate,
    /// The users with a device in the chat before the commit.
    pub members_before: Vec<String>,
    pub added: Vec<DeviceCertificate>,
    pub removed: Vec<RemovedDevice>,
    /// The GroupContext extensions before the commit.
    pub extensions_before: ExtensionList,
    /// The new extensions, if the commit sets them.
    pub extensions_after: Option<ExtensionList>,
}

impl CommitChange {
    /// Describes a processed commit from the verified roster before it (leaf index,
    /// certificate) and the extensions before it.
    pub fn describe(
        identity: &OrgIdentityProvider,
        roster_before: &[(u32, DeviceCertificate)],
        extensions_before: ExtensionList,
        commit: &CommitMessageDescription,
    ) -> Result<Self, Error> {
        let at = |index: u32| {
            roster_before
                .iter()
                .find(|(i, _)| *i == index)
                .map(|(_, c)| c.clone())
                .ok_or_else(|| Error::Rejected(format!("no member at leaf {index}")))
        };
        let proposals = match &commit.effect {
            CommitEffect::NewEpoch(new_epoch) | CommitEffect::Removed { new_epoch, .. } => {
                &new_epoch.applied_proposals
            }
            CommitEffect::ReInit(_) => {
                return Err(Error::Rejected("a chat is never re-initialised".into()))
            }
        };
        let mut change = CommitChange {
            committer: at(commit.committer)?,
            members_before: roster_before.iter().map(|(_, c)| c.user.clone()).collect(),
            added: Vec::new(),
            removed: Vec::new(),
            extensions_before,
            extensions_after: None,
        };
        for info in proposals {
            match &info.proposal {
                Proposal::Add(add) => change
                    .added
                    .push(identity.certificate(add.signing_identity())?),
                Proposal::Remove(remove) => {
                    let device = at(remove.to_remove())?;
                    // Proposed by a device of the same user: the user is leaving.
                    let left = match info.sender {
                        Sender::Member(sender) => at(sender)?.user == device.user,
                        _ => false,
                    };
                    change.removed.push(RemovedDevice { device, left });
                }
                Proposal::GroupContextExtensions(list) => {
                    change.extensions_after = Some(list.clone())
                }
                _ => {}
            }
        }
        Ok(change)
    }
}

/// Why a commit is refused: the committer may not make that change.
fn refuse(committer: &str, what: &str, settings: &ChatSettings) -> Error {
    Error::Unauthorized(format!(
        "{committer} may not {what}: only the chat's admins may ({})",
        settings.admin_names().join(", ")
    ))
}

/// The one authorization rule (see the module). `may_go` says whether a device of another user
/// may be removed by any member: the server asks its device records, a client its copy of the
/// key directory (revoked, not vouched for).
pub fn authorize_commit(
    change: &CommitChange,
    may_go: &dyn Fn(&DeviceCertificate) -> bool,
) -> Result<(), Error> {
    let before = &change.extensions_before;
    let after = change.extensions_after.as_ref().unwrap_or(before);
    let settings = ChatSettings::from_extensions(before)?;
    let settings_after = ChatSettings::from_extensions(after)?;
    if settings_after.admins.is_empty() && !settings_after.everyone_manages {
        return Err(Error::Unauthorized(
            "a chat keeps at least one admin (or lets every member manage it)".into(),
        ));
    }
    let user = change.committer.user.as_str();
    if settings.may_manage(user, change.members_before.iter().map(String::as_str)) {
        return Ok(());
    }
    let archiver_before = RecordChat::archiver(before)?;
    let archiver_after = RecordChat::archiver(after)?;
    for added in &change.added {
        let own = added.user == user;
        let archiver = added.user == RECORDS_USER
            && archiver_after.as_deref() == Some(added.device_id.as_str());
        if !own && !archiver {
            return Err(refuse(user, &format!("add {}", added.user), &settings));
        }
    }
    for removed in &change.removed {
        let device = &removed.device;
        let replaced_archiver = device.user == RECORDS_USER
            && archiver_before.as_deref() == Some(device.device_id.as_str())
            && archiver_after != archiver_before;
        if !(removed.left || device.user == user || replaced_archiver || may_go(device)) {
            return Err(refuse(user, &format!("remove {}", device.user), &settings));
        }
    }
    if ChatPolicy::from_extensions(after)? != ChatPolicy::from_extensions(before)? {
        return Err(refuse(user, "change the chat's timers", &settings));
    }
    if settings_after != settings {
        return Err(refuse(
            user,
            "change the chat's admins or settings",
            &settings,
        ));
    }
    // The class may only go from transitory to record (or switch archivers): the server
    // checks which archiver; here, only that nothing else in the context changes.
    if archiver_before.is_some() && archiver_after.is_none() {
        return Err(refuse(user, "make the chat transitory", &settings));
    }
    let without_class = |list: &ExtensionList| {
        let mut list = list.clone();
        list.remove(crate::RECORD_CHAT_EXTENSION);
        list
    };
    if without_class(after) != without_class(before) {
        return Err(refuse(user, "change the chat's context", &settings));
    }
    Ok(())
}
