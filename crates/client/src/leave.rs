//! Leaving a chat (issue 10): the leaver proposes the removal of each of its user's devices
//! (PublicMessage proposals the server's tracker takes), the server stops delivering to them
//! at once, the leaver deletes its group state, and another member's device (or the archiver,
//! in a record chat) commits the proposals at its next sync.

use vellum_mls::mls_rs::group::proposal::Proposal;
use vellum_mls::mls_rs::group::{ProposalMessageDescription, ProposalSender};
use vellum_mls::{roster, ChatSettings};
use vellum_wire::{codes, Accepted, LeaveChat, B64};

use crate::{ChatEvent, Client, Error, Group, MessageRow, MAX_REBASES};

impl Client {
    /// Leaves the chat with every device of this user. Nothing of the chat's keys stays here;
    /// its history stays until its timers run out.
    pub async fn leave_chat(&mut self, chat: &str) -> Result<(), Error> {
        let _held = self.lock.hold()?;
        let group_id = self.resolve_chat(chat)?;
        self.hand_over_admin_role(&group_id).await?;
        let path = format!("/v1/groups/{group_id}/leave");
        for _ in 0..MAX_REBASES {
            self.sync_quiet().await?;
            if self.store.chat(&group_id)?.is_some_and(|c| c.removed) {
                return Err(Error::RemovedFromChat);
            }
            // The proposals are not stored: if they are not taken, this state is proposed
            // from again; if they are, it is deleted.
            let mut group = self.load_group(&group_id)?;
            let mine: Vec<u32> = roster(&group, &self.identity)?
                .into_iter()
                .filter(|(_, c)| c.user == self.user)
                .map(|(index, _)| index)
                .collect();
            let proposals = mine
                .into_iter()
                .map(|index| {
                    Ok(B64::from(
                        group.propose_remove(index, Vec::new())?.to_bytes()?,
                    ))
                })
                .collect::<Result<Vec<B64>, Error>>()?;
            match self
                .post_with_retry::<_, Accepted>(&path, &LeaveChat { proposals })
                .await
            {
                Ok(accepted) => {
                    self.store.begin()?;
                    let user = self.user.clone();
                    let done = self
                        .store
                        .set_removed(&group_id)
                        .and_then(|_| self.store.forget_group_state(&group_id))
                        .and_then(|_| {
                            let event = ChatEvent::MemberLeft { user: user.clone() };
                            self.typed_event_row(&group_id, Some(accepted.seq), &user, event)
                        });
                    return self.finish_tx(done).map(|_| ());
                }
                Err(e) if e.is_code(codes::STALE_EPOCH) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Invalid(
            "the chat is changing too fast; try again".into(),
        ))
    }

    /// A leave proposal this device received (it is cached in `group` for the next commit):
    /// one that removes this device means its user left from another device. Returns the
    /// row to show, if any.
    pub(crate) fn receive_leave(
        &mut self,
        group_id: &str,
        seq: u64,
        group: &Group,
        proposal: &ProposalMessageDescription,
    ) -> Result<Option<MessageRow>, Error> {
        let (ProposalSender::Member(sender), Proposal::Remove(remove)) =
            (&proposal.sender, &proposal.proposal)
        else {
            return Ok(None);
        };
        let members = roster(group, &self.identity)?;
        let cert = |index: u32| members.iter().find(|(i, _)| *i == index).map(|(_, c)| c);
        let (Some(sender), Some(removed)) = (cert(*sender), cert(remove.to_remove())) else {
            return Ok(None);
        };
        if sender.user != removed.user {
            return Ok(None); // the server takes no such proposal; nor does this device
        }
        if removed.device_id == self.device_id {
            self.store.set_removed(group_id)?;
            let event = ChatEvent::MemberLeft {
                user: removed.user.clone(),
            };
            return self
                .typed_event_row(group_id, Some(seq), &removed.user, event)
                .map(Some);
        }
        self.leaves_to_commit
            .entry(group_id.to_owned())
            .or_default()
            .push(removed.device_id.clone());
        Ok(None)
    }

    /// Commits the leave proposals this device received (every member's device tries; the
    /// first wins, the others find nothing left to do). A failure waits for the next sync;
    /// meanwhile the server takes no other commit that leaves the leaver in.
    pub(crate) async fn commit_leaves(&mut self) -> Result<(), Error> {
        if self.committing_leaves || self.leaves_to_commit.is_empty() {
            return Ok(());
        }
        self.committing_leaves = true;
        let pending = std::mem::take(&mut self.leaves_to_commit);
        for (group_id, leaving) in pending {
            if self.store.chat(&group_id)?.is_none_or(|c| c.removed) {
                continue;
            }
            let identity = self.identity.clone();
            let committed = self
                .commit_with_rebase(&group_id, true, move |group| {
                    let still = roster(group, &identity)?
                        .iter()
                        .any(|(_, c)| leaving.contains(&c.device_id));
                    // The cached proposals go into the commit by reference.
                    Ok(if still {
                        Some(group.commit_builder().build()?)
                    } else {
                        None
                    })
                })
                .await;
            if let Err(e) = committed {
                tracing::warn!(chat = %group_id, error = %e, "could not commit a member's leaving yet");
            }
        }
        self.committing_leaves = false;
        Ok(())
    }

    /// An admin who leaves gives up the role first, in a commit every member sees: the other
    /// admins keep the chat, and when no other admin is a member every member may manage it
    /// from then on (issue 10 review: a departed admin kept the role, and had it back
    /// unannounced when re-added).
    async fn hand_over_admin_role(&mut self, group_id: &str) -> Result<(), Error> {
        self.sync_quiet().await?;
        if self.store.chat(group_id)?.is_some_and(|c| c.removed) {
            return Err(Error::RemovedFromChat);
        }
        let group = self.load_group(group_id)?;
        let mut settings = ChatSettings::from_extensions(&group.context().extensions)?;
        if !settings.admins.iter().any(|a| a == self.user.as_bytes()) {
            return Ok(());
        }
        let members: Vec<String> = roster(&group, &self.identity)?
            .into_iter()
            .map(|(_, c)| c.user)
            .filter(|u| *u != self.user)
            .collect();
        settings.admins.retain(|a| a != self.user.as_bytes());
        if !settings
            .admins
            .iter()
            .any(|a| members.iter().any(|m| m.as_bytes() == a.as_slice()))
        {
            settings.admins.clear();
            settings.everyone_manages = true;
        }
        self.commit_settings(group_id, settings).await.map(|_| ())
    }
}
