//! The directory's meaning: replaying its entries in order gives each user's identity and
//! devices. The server applies an entry here before appending it; every device replays the
//! whole log ([`Mirror`]) and refuses any entry that breaks a rule.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vellum_tlog::{Checkpoint, Hash, RootBuilder};

use crate::entry::{Change, DeviceRef, DirectoryEntry, Key32, Statement};
use crate::Error;

/// What the directory says of one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Chained to the user's identity (its first device, or approved by one of its devices).
    Approved,
    /// Existed before the directory; listed at upgrade, not yet confirmed by the identity.
    Legacy,
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceState {
    #[serde(with = "crate::entry::hex32")]
    pub signature_key: Key32,
    pub status: DeviceStatus,
    /// The log index of the entry that last changed it.
    pub changed_at: u64,
    /// Which identity generation (resets so far) the device belongs to.
    pub generation: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReset {
    pub request_id: String,
    pub effective_at: i64,
}

/// One user's entry chain and what it adds up to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    #[serde(with = "crate::entry::hex32_opt")]
    pub identity: Option<Key32>,
    /// How many resets took effect: a new identity after a reset has a new generation.
    pub generation: u32,
    pub devices: BTreeMap<String, DeviceState>,
    pub pending_reset: Option<PendingReset>,
    /// Reset request ids ever used (a request id is never reused).
    pub reset_ids: Vec<String>,
    /// Next `user_seq`.
    pub next_seq: u64,
    /// Leaf hash of the user's newest entry.
    #[serde(with = "crate::entry::hex32_opt")]
    pub head: Option<Key32>,
}

/// How the directory answers "is this key this user's device?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vouch {
    Approved,
    /// Approved at upgrade: accepted, and shown as such.
    Legacy,
    Revoked,
    /// The directory has no such device for this user.
    Unknown,
    /// The directory has the device under another key.
    WrongKey,
}

impl Vouch {
    pub fn is_vouched(self) -> bool {
        matches!(self, Vouch::Approved | Vouch::Legacy)
    }

    /// Why a device is not vouched for, for the user to read.
    pub fn reason(self) -> &'static str {
        match self {
            Vouch::Approved => "approved",
            Vouch::Legacy => "approved at upgrade",
            Vouch::Revoked => "revoked",
            Vouch::Unknown => "not in the key directory",
            Vouch::WrongKey => "its key differs from the key directory's",
        }
    }
}

/// Every user's state after some prefix of the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryState {
    pub users: BTreeMap<String, UserState>,
    /// Which user each device id ever belonged to: ids are never reused.
    pub device_owner: BTreeMap<String, String>,
    pub upgrade_done: bool,
    /// Entries applied.
    pub size: u64,
    /// The shortest wait a reset may have (seconds): pinned by each device at enrollment
    /// from the directory's configuration, so an operator cannot shorten it later.
    #[serde(default)]
    pub min_reset_wait_secs: i64,
}

fn broken(index: u64, why: impl Into<String>) -> Error {
    Error::BrokenRule {
        index,
        why: why.into(),
    }
}

impl DirectoryState {
    pub fn user(&self, user: &str) -> Option<&UserState> {
        self.users.get(user)
    }

    pub fn vouch(&self, user: &str, device_id: &str, signature_key: &[u8]) -> Vouch {
        let Some(device) = self.users.get(user).and_then(|u| u.devices.get(device_id)) else {
            return Vouch::Unknown;
        };
        if device.signature_key.as_slice() != signature_key {
            return Vouch::WrongKey;
        }
        match device.status {
            DeviceStatus::Approved => Vouch::Approved,
            DeviceStatus::Legacy => Vouch::Legacy,
            DeviceStatus::Revoked => Vouch::Revoked,
        }
    }

    /// The entry the server would append next for `user`: the chain fields filled in.
    pub fn next_entry(&self, user: &str, time: i64, change: Change) -> DirectoryEntry {
        let state = self.users.get(user);
        DirectoryEntry {
            version: crate::ENTRY_VERSION,
            user: user.to_owned(),
            user_seq: state.map_or(0, |u| u.next_seq),
            prev: state.and_then(|u| u.head),
            time,
            change,
        }
    }

    /// Applies the leaf at the next index; on error nothing changes.
    pub fn apply(&mut self, leaf: &[u8]) -> Result<DirectoryEntry, Error> {
        let index = self.size;
        let entry = DirectoryEntry::parse(leaf).map_err(|e| broken(index, e.to_string()))?;
        let hash = vellum_tlog::leaf_hash(leaf);
        let mut user = self.users.get(&entry.user).cloned().unwrap_or_default();
        if entry.user_seq != user.next_seq || entry.prev != user.head {
            return Err(broken(
                index,
                format!(
                    "{}'s entry {} does not follow their entry chain",
                    entry.user, entry.user_seq
                ),
            ));
        }
        let mut new_device: Option<&DeviceRef> = None;
        match &entry.change {
            Change::UpgradeDone => {
                if self.upgrade_done || !entry.user.is_empty() {
                    return Err(broken(index, "a second or misplaced end of the upgrade"));
                }
                self.upgrade_done = true;
            }
            _ if entry.user.is_empty()
                || !self.upgrade_done && !matches!(entry.change, Change::Legacy { .. }) =>
            {
                return Err(broken(index, "an entry before the upgrade listing ended"));
            }
            Change::Legacy { device } => {
                if self.upgrade_done {
                    return Err(broken(
                        index,
                        "a device listed as existing after the upgrade",
                    ));
                }
                new_device = Some(device);
                user.devices.insert(
                    device.device_id.clone(),
                    DeviceState {
                        signature_key: device.signature_key,
                        status: DeviceStatus::Legacy,
                        changed_at: index,
                        generation: user.generation,
                    },
                );
            }
            Change::Identity {
                identity_key,
                device,
                signature,
                device_signature,
            } => {
                if user.identity.is_some() {
                    return Err(broken(
                        index,
                        format!("{} already has an identity", entry.user),
                    ));
                }
                Statement::Identity {
                    user: &entry.user,
                    identity_key,
                    device,
                }
                .verify(signature, &device.signature_key, device_signature)
                .map_err(|e| broken(index, e.to_string()))?;
                // An upgraded user's identity is made by their earliest device still standing.
                let earliest = user
                    .devices
                    .iter()
                    .filter(|(_, d)| d.status == DeviceStatus::Legacy)
                    .min_by_key(|(_, d)| d.changed_at)
                    .map(|(id, _)| id.as_str());
                if earliest.is_some_and(|id| id != device.device_id) {
                    return Err(broken(
                        index,
                        "the identity of an upgraded user must name their earliest device",
                    ));
                }
                match user.devices.get(&device.device_id) {
                    // The upgrade: an existing device becomes the identity holder.
                    Some(d)
                        if d.status == DeviceStatus::Legacy
                            && d.signature_key == device.signature_key => {}
                    Some(_) => {
                        return Err(broken(index, "the identity names a device already used"))
                    }
                    None => new_device = Some(device),
                }
                user.identity = Some(*identity_key);
                user.devices.insert(
                    device.device_id.clone(),
                    DeviceState {
                        signature_key: device.signature_key,
                        status: DeviceStatus::Approved,
                        changed_at: index,
                        generation: user.generation,
                    },
                );
            }
            Change::Approved {
                device,
                by_device,
                signature,
                device_signature,
            } => {
                let (identity_key, by_key) =
                    signer_keys(&user, &entry.user, by_device, index, "approved")?;
                Statement::Approve {
                    user: &entry.user,
                    identity_key: &identity_key,
                    device,
                    by_device,
                }
                .verify(signature, &by_key, device_signature)
                .map_err(|e| broken(index, e.to_string()))?;
                match user.devices.get(&device.device_id) {
                    Some(d)
                        if d.status == DeviceStatus::Legacy
                            && d.signature_key == device.signature_key => {}
                    Some(_) => return Err(broken(index, "approves a device already used")),
                    None => new_device = Some(device),
                }
                user.devices.insert(
                    device.device_id.clone(),
                    DeviceState {
                        signature_key: device.signature_key,
                        status: DeviceStatus::Approved,
                        changed_at: index,
                        generation: user.generation,
                    },
                );
            }
            Change::RevokedByUser {
                device_id,
                by_device,
                signature,
                device_signature,
            } => {
                let (identity_key, by_key) =
                    signer_keys(&user, &entry.user, by_device, index, "revoked")?;
                Statement::Revoke {
                    user: &entry.user,
                    identity_key: &identity_key,
                    device_id,
                    by_device,
                }
                .verify(signature, &by_key, device_signature)
                .map_err(|e| broken(index, e.to_string()))?;
                revoke(&mut user, device_id, index)?;
            }
            Change::RevokedByAdmin { device_id } => revoke(&mut user, device_id, index)?,
            Change::ResetRequested {
                request_id,
                effective_at,
            } => {
                if user.pending_reset.is_some() {
                    return Err(broken(index, "a second reset while one is pending"));
                }
                if user.reset_ids.contains(request_id) {
                    return Err(broken(index, "a reset request id used before"));
                }
                if effective_at.saturating_sub(entry.time) < self.min_reset_wait_secs {
                    return Err(broken(
                        index,
                        format!(
                            "a reset that waits less than the {} s this device pinned",
                            self.min_reset_wait_secs
                        ),
                    ));
                }
                user.reset_ids.push(request_id.clone());
                user.pending_reset = Some(PendingReset {
                    request_id: request_id.clone(),
                    effective_at: *effective_at,
                });
            }
            Change::ResetVetoed {
                request_id,
                by_device,
                signature,
                device_signature,
            } => {
                if user.pending_reset.as_ref().map(|p| &p.request_id) != Some(request_id) {
                    return Err(broken(index, "vetoes no pending reset"));
                }
                let (identity_key, by_key) =
                    signer_keys(&user, &entry.user, by_device, index, "vetoed")?;
                Statement::Veto {
                    user: &entry.user,
                    identity_key: &identity_key,
                    request_id,
                    by_device,
                }
                .verify(signature, &by_key, device_signature)
                .map_err(|e| broken(index, e.to_string()))?;
                user.pending_reset = None;
            }
            Change::Reset { request_id } => {
                let pending = user
                    .pending_reset
                    .take()
                    .filter(|p| &p.request_id == request_id)
                    .ok_or_else(|| broken(index, "a reset nobody requested"))?;
                if entry.time < pending.effective_at {
                    return Err(broken(index, "a reset before its waiting period ended"));
                }
                user.identity = None;
                user.generation += 1;
                for device in user.devices.values_mut() {
                    if device.status != DeviceStatus::Revoked {
                        device.status = DeviceStatus::Revoked;
                        device.changed_at = index;
                    }
                }
            }
        }
        if let Some(device) = new_device {
            if let Some(owner) = self.device_owner.get(&device.device_id) {
                return Err(broken(
                    index,
                    format!("device id {} was already {owner}'s", device.device_id),
                ));
            }
        }
        // Every check passed: commit.
        if let Some(device) = new_device {
            self.device_owner
                .insert(device.device_id.clone(), entry.user.clone());
        }
        user.next_seq += 1;
        user.head = Some(hash);
        if !entry.user.is_empty() {
            self.users.insert(entry.user.clone(), user);
        }
        self.size += 1;
        Ok(entry)
    }
}

/// The keys that must sign a change `name` made from `by_device`: their identity key, and the
/// key of `by_device`, which must be one of their approved devices.
fn signer_keys(
    user: &UserState,
    name: &str,
    by_device: &str,
    index: u64,
    verb: &str,
) -> Result<(Key32, Key32), Error> {
    let identity_key = user
        .identity
        .ok_or_else(|| broken(index, format!("{name} has no identity")))?;
    let by_key = user
        .devices
        .get(by_device)
        .filter(|d| d.status == DeviceStatus::Approved)
        .map(|d| d.signature_key)
        .ok_or_else(|| broken(index, format!("{verb} by a device that is not approved")))?;
    Ok((identity_key, by_key))
}

fn revoke(user: &mut UserState, device_id: &str, index: u64) -> Result<(), Error> {
    match user.devices.get_mut(device_id) {
        Some(d) if d.status != DeviceStatus::Revoked => {
            d.status = DeviceStatus::Revoked;
            d.changed_at = index;
            Ok(())
        }
        Some(_) => Err(broken(index, "revokes a device already revoked")),
        None => Err(broken(index, "revokes a device the user does not have")),
    }
}

/// A device's verified copy of the directory: the replayed state and the log's compact range,
/// so the next checkpoint is checked from what this copy already holds (a rollback or a fork
/// of anything it has seen cannot match).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Mirror {
    pub state: DirectoryState,
    /// Roots of the perfect subtrees of the prefix held, largest first.
    frontier: Vec<Hash>,
    /// The root of the prefix held, as the checkpoint that reached it said.
    #[serde(with = "crate::entry::hex32_opt")]
    root: Option<Hash>,
}

impl Mirror {
    pub fn size(&self) -> u64 {
        self.state.size
    }

    fn builder(&self) -> RootBuilder {
        RootBuilder::from_frontier(self.state.size, self.frontier.clone())
            .expect("a mirror keeps a frontier that matches its size")
    }

    /// Extends the copy by `leaves` (which must start at [`Mirror::size`]) to `checkpoint`,
    /// whose signatures the caller has checked. All or nothing: the new root must be the
    /// checkpoint's, and every entry must keep the rules. Returns the entries applied.
    pub fn extend(
        &mut self,
        leaves: &[Vec<u8>],
        checkpoint: &Checkpoint,
    ) -> Result<Vec<DirectoryEntry>, Error> {
        if checkpoint.size < self.size() {
            return Err(Error::Rollback {
                held: self.size(),
                shown: checkpoint.size,
            });
        }
        if self.size() + leaves.len() as u64 != checkpoint.size {
            return Err(Error::Malformed(format!(
                "{} entries from {} do not reach the checkpoint's size {}",
                leaves.len(),
                self.size(),
                checkpoint.size
            )));
        }
        if leaves.is_empty() {
            let root = self.root.unwrap_or_else(vellum_tlog::empty_root);
            return match root == checkpoint.root {
                true => Ok(Vec::new()),
                false => Err(Error::Fork {
                    size: checkpoint.size,
                }),
            };
        }
        // The root first: a fork costs no replay. Then the entries, undone if one breaks a
        // rule (cloning only the users they touch: the whole state is megabytes).
        let mut builder = self.builder();
        for leaf in leaves {
            builder.push(vellum_tlog::leaf_hash(leaf));
        }
        if builder.root() != checkpoint.root {
            return Err(Error::Fork {
                size: checkpoint.size,
            });
        }
        let mut undo = Undo::new(&self.state);
        let mut applied = Vec::with_capacity(leaves.len());
        for leaf in leaves {
            let user = DirectoryEntry::parse(leaf)
                .map(|e| e.user)
                .unwrap_or_default();
            undo.touch(&self.state, &user);
            match self.state.apply(leaf) {
                Ok(entry) => {
                    if let Change::Legacy { device }
                    | Change::Identity { device, .. }
                    | Change::Approved { device, .. } = &entry.change
                    {
                        undo.owned(&device.device_id);
                    }
                    applied.push(entry)
                }
                Err(e) => {
                    undo.restore(&mut self.state);
                    return Err(e);
                }
            }
        }
        self.frontier = builder.frontier().to_vec();
        self.root = Some(checkpoint.root);
        Ok(applied)
    }
}

/// What a batch of entries changed, to put back if a later one breaks a rule.
struct Undo {
    users: BTreeMap<String, Option<UserState>>,
    owners: Vec<String>,
    upgrade_done: bool,
    size: u64,
}

impl Undo {
    fn new(state: &DirectoryState) -> Self {
        Self {
            users: BTreeMap::new(),
            owners: Vec::new(),
            upgrade_done: state.upgrade_done,
            size: state.size,
        }
    }

    fn touch(&mut self, state: &DirectoryState, user: &str) {
        if !self.users.contains_key(user) {
            self.users
                .insert(user.to_owned(), state.users.get(user).cloned());
        }
    }

    fn owned(&mut self, device_id: &str) {
        self.owners.push(device_id.to_owned());
    }

    fn restore(self, state: &mut DirectoryState) {
        for (user, before) in self.users {
            match before {
                Some(before) => state.users.insert(user, before),
                None => state.users.remove(&user),
            };
        }
        for device_id in self.owners {
            state.device_owner.remove(&device_id);
        }
        state.upgrade_done = self.upgrade_done;
        state.size = self.size;
    }
}
