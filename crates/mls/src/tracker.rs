//! The server's public view of each group: an mls-rs external client that follows the
//! handshake (PublicMessage commits) without holding any group secret.

use std::collections::BTreeSet;

use mls_rs::external_client::builder::{
    ExternalBaseConfig, WithCryptoProvider, WithIdentityProvider,
};
use mls_rs::external_client::{
    ExternalClient, ExternalGroup, ExternalReceivedMessage, ExternalSnapshot,
};
use mls_rs::time::MlsTime;
use mls_rs::{MlsMessage, WireFormat};
use mls_rs_crypto_rustcrypto::RustCryptoProvider;

use crate::{DeviceCertificate, Error, OrgIdentityProvider};

type ServerMlsConfig = WithIdentityProvider<
    OrgIdentityProvider,
    WithCryptoProvider<RustCryptoProvider, ExternalBaseConfig>,
>;

/// Loads and creates [`TrackedGroup`]s.
pub struct GroupTracker {
    client: ExternalClient<ServerMlsConfig>,
    identity: OrgIdentityProvider,
}

/// Who joined and who left in one accepted commit (device ids), and what it changed for
/// [`crate::authorize_commit`] (which the caller runs: it knows which devices may go).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOutcome {
    pub new_epoch: u64,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub change: crate::CommitChange,
}

/// A member's proposal to remove one of its own user's devices (leaving), as the tracker
/// accepted it: a later commit by another member may include it by reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveProposal {
    pub user: String,
    /// The device the proposal removes.
    pub device_id: String,
}

pub struct TrackedGroup {
    group: ExternalGroup<ServerMlsConfig>,
    identity: OrgIdentityProvider,
}

impl GroupTracker {
    pub fn new(identity: OrgIdentityProvider) -> Self {
        let client = ExternalClient::builder()
            .identity_provider(identity.clone())
            .crypto_provider(RustCryptoProvider::default())
            .extension_type(crate::CHAT_POLICY_EXTENSION)
            .extension_type(crate::RECORD_CHAT_EXTENSION)
            .extension_type(crate::CHAT_SETTINGS_EXTENSION)
            .build();
        Self { client, identity }
    }

    /// Starts following a group from a GroupInfo (with its ratchet tree) that
    /// `creator_device` sent; the creator must be its only member.
    pub fn observe(&self, group_info: &[u8], creator_device: &str) -> Result<TrackedGroup, Error> {
        let message = crate::parse_message(group_info)?;
        if message.as_group_info().is_none() {
            return Err(Error::UnexpectedMessage("a GroupInfo"));
        }
        let group = self.client.observe_group(message, None, None)?;
        let tracked = TrackedGroup {
            group,
            identity: self.identity.clone(),
        };
        let members = tracked.member_devices()?;
        if members.len() != 1 || !members.contains(creator_device) {
            return Err(Error::Rejected(
                "a new group must contain exactly its creator's device".into(),
            ));
        }
        Ok(tracked)
    }

    /// Fully validates a KeyPackage (signature, lifetime, credential) and names its device.
    pub fn key_package_owner(&self, key_package: &[u8]) -> Result<DeviceCertificate, Error> {
        let message = crate::parse_message(key_package)?;
        if message.as_key_package().is_none() {
            return Err(Error::UnexpectedMessage("a key package"));
        }
        let key_package = self
            .client
            .validate_key_package(message, Some(MlsTime::now()))?;
        self.identity.certificate(key_package.signing_identity())
    }

    pub fn load(&self, state: &[u8]) -> Result<TrackedGroup, Error> {
        let snapshot = ExternalSnapshot::from_bytes(state)?;
        let group = self.client.load_group(snapshot)?;
        Ok(TrackedGroup {
            group,
            identity: self.identity.clone(),
        })
    }
}

impl TrackedGroup {
    pub fn group_id(&self) -> &[u8] {
        &self.group.group_context().group_id
    }

    pub fn epoch(&self) -> u64 {
        self.group.group_context().epoch
    }

    /// The chat policy every member agreed to in the current GroupContext.
    pub fn policy(&self) -> Result<crate::ChatPolicy, Error> {
        crate::ChatPolicy::from_extensions(&self.group.group_context().extensions)
    }

    /// The archiver device of a record chat, `None` for a transitory one.
    pub fn archiver(&self) -> Result<Option<String>, Error> {
        crate::RecordChat::archiver(&self.group.group_context().extensions)
    }

    /// Serialised public state (context and ratchet tree, no secrets) for the store.
    pub fn state(&self) -> Result<Vec<u8>, Error> {
        Ok(self.group.snapshot().to_bytes()?)
    }

    pub fn members(&self) -> Result<Vec<DeviceCertificate>, Error> {
        self.group
            .roster()
            .members_iter()
            .map(|m| self.identity.certificate(&m.signing_identity))
            .collect()
    }

    pub fn member_devices(&self) -> Result<BTreeSet<String>, Error> {
        Ok(self.members()?.into_iter().map(|c| c.device_id).collect())
    }

    /// Checks that a message is addressed to this group at its current epoch.
    pub fn check_epoch(&self, message: &MlsMessage) -> Result<(), Error> {
        if message.group_id() != Some(self.group_id()) {
            return Err(Error::WrongGroup);
        }
        let got = message
            .epoch()
            .ok_or(Error::UnexpectedMessage("a group message"))?;
        if got != self.epoch() {
            return Err(Error::WrongEpoch {
                current: self.epoch(),
                got,
            });
        }
        Ok(())
    }

    /// Validates and applies a PublicMessage commit signed by `requester`'s leaf.
    /// On error the tracked state is unchanged (the caller discards `self`).
    pub fn apply_commit(
        &mut self,
        commit: MlsMessage,
        requester: &str,
    ) -> Result<CommitOutcome, Error> {
        if commit.wire_format() != WireFormat::PublicMessage {
            return Err(Error::UnexpectedMessage("a PublicMessage commit"));
        }
        self.check_epoch(&commit)?;
        let before = self.member_devices()?;
        let roster_before: Vec<_> = self.group.roster().members_iter().collect();
        let extensions_before = self.group.group_context().extensions.clone();
        let described = match self.group.process_incoming_message(commit)? {
            ExternalReceivedMessage::Commit(description) => description,
            _ => return Err(Error::UnexpectedMessage("a commit")),
        };
        let committer = roster_before
            .iter()
            .find(|m| m.index == described.committer)
            .ok_or_else(|| Error::Rejected("commit from an unknown leaf".into()))?;
        let signer = self
            .identity
            .certificate(&committer.signing_identity)?
            .device_id;
        if signer != requester {
            return Err(Error::SenderMismatch {
                signer,
                requester: requester.into(),
            });
        }
        let certified = roster_before
            .iter()
            .map(|m| Ok((m.index, self.identity.certificate(&m.signing_identity)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        let change = crate::CommitChange::describe(
            &self.identity,
            &certified,
            extensions_before,
            &described,
        )?;
        let after = self.member_devices()?;
        Ok(CommitOutcome {
            new_epoch: self.epoch(),
            added: after.difference(&before).cloned().collect(),
            removed: before.difference(&after).cloned().collect(),
            change,
        })
    }

    /// Validates and caches a PublicMessage proposal signed by `requester`'s leaf that removes
    /// a device of `requester`'s own user (leaving, issue 10). Nothing else is taken by
    /// reference. On error the tracked state is unchanged (the caller discards `self`).
    pub fn observe_leave(
        &mut self,
        proposal: MlsMessage,
        requester: &str,
    ) -> Result<LeaveProposal, Error> {
        use mls_rs::group::proposal::Proposal;
        use mls_rs::group::ProposalSender;
        if proposal.wire_format() != WireFormat::PublicMessage {
            return Err(Error::UnexpectedMessage("a PublicMessage proposal"));
        }
        self.check_epoch(&proposal)?;
        let roster: Vec<_> = self.group.roster().members_iter().collect();
        let certificate = |index: u32| {
            roster
                .iter()
                .find(|m| m.index == index)
                .ok_or_else(|| Error::Rejected(format!("no member at leaf {index}")))
                .and_then(|m| self.identity.certificate(&m.signing_identity))
        };
        let described = match self.group.process_incoming_message(proposal)? {
            ExternalReceivedMessage::Proposal(description) => description,
            _ => return Err(Error::UnexpectedMessage("a proposal")),
        };
        let ProposalSender::Member(sender) = described.sender else {
            return Err(Error::Rejected("a proposal from outside the group".into()));
        };
        let signer = certificate(sender)?;
        if signer.device_id != requester {
            return Err(Error::SenderMismatch {
                signer: signer.device_id,
                requester: requester.into(),
            });
        }
        let Proposal::Remove(remove) = &described.proposal else {
            return Err(Error::Rejected(
                "only proposals to remove one's own devices are taken".into(),
            ));
        };
        let removed = certificate(remove.to_remove())?;
        if removed.user != signer.user {
            return Err(Error::Unauthorized(format!(
                "{} may propose removing only their own devices, not {}'s",
                signer.user, removed.user
            )));
        }
        Ok(LeaveProposal {
            user: removed.user,
            device_id: removed.device_id,
        })
    }
}
