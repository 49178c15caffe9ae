//! This user's devices (issue 9): the user's identity key, enrollment as pending, the
//! approval exchange of `vellum_directory::sas` through the server, revocation, reset vetoes,
//! and the remote wipe of a revoked device.
//!
//! The exchange (ISSUE9 "Approval exchange"): the new device N commits to its offer (step 0),
//! an approved device O answers with its hello (1), N reveals its offer and shows the code
//! (2), O checks the code the user types, signs N into the directory and seals the identity
//! key to N (3), N takes it (4). Each step is one command, so a script can run them in turn.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::de::IgnoredAny;
use vellum_directory::{
    verification_code, ApproverHello, Change, DeviceOffer, DeviceRef, DeviceStatus, HelloSecret,
    IdentityKey, Key32, OfferSecret, UserState,
};
use vellum_mls::mls_rs::MlsMessage;
use vellum_mls::{roster, DeviceKey};
use vellum_wire::*;

use crate::{Client, Error, LocalStore};

/// The user's identity key (its 32-byte seed), on devices that hold it.
pub(crate) const IDENTITY_KEY: &str = "identity_key";
/// The new device's side of its exchange (an `OfferSecret` as JSON), until it ends.
pub(crate) const OFFER_SECRET: &str = "offer_secret";
/// The approver's side of its exchanges: JSON map device id → `HelloSecret`.
pub(crate) const HELLO_SECRETS: &str = "hello_secrets";

/// The alarm of a device the server refuses as revoked without the directory's word.
pub(crate) const REFUSED_NOT_REVOKED: &str =
    "the server refuses this device, but the key directory does not say it was revoked";

/// The files remote wipe deletes from HOME (only these: HOME may hold anything else).
const PROFILE_FILES: &[&str] = &[
    "vellum.db",
    "vellum.db-wal",
    "vellum.db-shm",
    "vellum.db-journal",
    "lock",
];

fn directory_error(e: vellum_directory::Error) -> Error {
    Error::Invalid(e.to_string())
}

fn json_error(what: &str, e: serde_json::Error) -> Error {
    Error::Invalid(format!("{what} is malformed: {e}"))
}

fn device_ref(device_id: &str, key: &DeviceKey) -> DeviceRef {
    DeviceRef {
        device_id: device_id.to_owned(),
        signature_key: key.public_key(),
    }
}

/// At enrollment, in the transaction that saves the profile: the user's first device makes
/// the identity key; a later one the secret of its approval exchange. The archiver (user
/// `records`) makes neither: the custodians' binding vouches for it.
pub(crate) fn save_enrollment_secret(
    store: &LocalStore,
    user: &str,
    state: DeviceState,
    device_id: &str,
    key: &DeviceKey,
) -> Result<(), Error> {
    if user == RECORDS_USER {
        return Ok(());
    }
    match state {
        DeviceState::Approved => {
            store.profile_set(IDENTITY_KEY, IdentityKey::generate().seed().as_slice())
        }
        DeviceState::Pending | DeviceState::Legacy => {
            save_offer(store, &OfferSecret::new(device_ref(device_id, key)))
        }
        DeviceState::Revoked => Err(Error::Invalid(
            "the server enrolled this device as revoked".into(),
        )),
    }
}

fn save_offer(store: &LocalStore, offer: &OfferSecret) -> Result<(), Error> {
    let json = serde_json::to_vec(offer).map_err(|e| Error::Invalid(e.to_string()))?;
    store.profile_set(OFFER_SECRET, &json)
}

/// What the new device does next, given its exchange as the server relays it.
pub(crate) enum OfferAction {
    /// The server holds no commitment of this offer (none yet, or the exchange was
    /// cancelled): start again with a fresh offer.
    Commit,
    /// Committed; no approver has answered yet.
    Wait,
    /// An approver answered: reveal the offer and show the code.
    Reveal { code: String },
    /// Revealed already: show the code.
    Show { code: String },
    /// Approved: the identity key, opened.
    TakeIdentity(IdentityKey),
}

/// Steps 2 and 4 on the new device, without I/O.
pub(crate) fn next_offer_action(
    user: &str,
    offer: &OfferSecret,
    exchange: &ApprovalExchange,
) -> Result<OfferAction, Error> {
    let hello = exchange
        .hello
        .clone()
        .map(serde_json::from_value::<ApproverHello>)
        .transpose()
        .map_err(|e| json_error("the approver's hello", e))?;
    if let Some(sealed) = &exchange.sealed_identity {
        let hello = hello.ok_or_else(|| {
            Error::Invalid("the server holds an identity for this device but no hello".into())
        })?;
        let identity = offer
            .open_identity(user, &hello, sealed)
            .map_err(directory_error)?;
        return Ok(OfferAction::TakeIdentity(identity));
    }
    if exchange.commitment.as_deref() != Some(hex::encode(offer.commitment(user)).as_str()) {
        return Ok(OfferAction::Commit);
    }
    let Some(hello) = hello else {
        return Ok(OfferAction::Wait);
    };
    let code = verification_code(user, &offer.offer, &hello);
    Ok(match exchange.offer {
        None => OfferAction::Reveal { code },
        Some(_) => OfferAction::Show { code },
    })
}

/// Why step 3 did not approve.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The new device has not got that far: nothing to cancel.
    NotReady(String),
    /// A wrong code, or values that are not the ones committed to: the exchange is cancelled.
    Cancel(String),
}

/// Step 3 on the approver, without I/O: the new device's revealed offer and the identity key
/// sealed to it, if the typed code is right.
pub(crate) fn approver_complete(
    user: &str,
    device_id: &str,
    hello: &HelloSecret,
    exchange: &ApprovalExchange,
    typed_code: &str,
    identity: &IdentityKey,
) -> Result<(DeviceOffer, Vec<u8>), Refusal> {
    let not_shown = || {
        Refusal::NotReady(format!(
            "device {device_id} has not shown its verification code yet: run `vellum devices` on it, then approve with the code it shows"
        ))
    };
    let commitment = exchange.commitment.as_deref().ok_or_else(not_shown)?;
    let offer = exchange.offer.clone().ok_or_else(not_shown)?;
    let cancel = |why: &str| {
        Refusal::Cancel(format!(
            "{why}: nothing was approved; start again: run `vellum devices` on the new device (it commits to fresh keys), then `vellum devices approve {device_id}`"
        ))
    };
    let commitment: Key32 = hex::decode(commitment)
        .ok()
        .and_then(|c| c.try_into().ok())
        .ok_or_else(|| cancel("the new device's commitment is malformed"))?;
    let offer: DeviceOffer =
        serde_json::from_value(offer).map_err(|_| cancel("the new device's offer is malformed"))?;
    if offer.device.device_id != device_id {
        return Err(cancel(&format!(
            "the offer is of device {}, not {device_id}",
            offer.device.device_id
        )));
    }
    match hello.complete(user, &commitment, &offer, typed_code, identity) {
        Ok(sealed) => Ok((offer, sealed)),
        Err(vellum_directory::Error::WrongCode) => Err(cancel("wrong code")),
        Err(e) => Err(cancel(&e.to_string())),
    }
}

/// The device that is to make its user's identity at the upgrade: the earliest legacy device
/// (smallest `changed_at`) of a user who has no identity yet.
pub(crate) fn upgrade_holder(user: &UserState) -> Option<&str> {
    if user.identity.is_some() {
        return None;
    }
    user.devices
        .iter()
        .filter(|(_, d)| d.status == DeviceStatus::Legacy)
        .min_by_key(|(_, d)| d.changed_at)
        .map(|(id, _)| id.as_str())
}

/// One of the user's devices, as the server lists it and the key directory says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    pub device_id: String,
    pub state: DeviceState,
    /// Unix seconds; unknown for a device only the directory lists.
    pub enrolled_at: Option<i64>,
    pub last_seen: Option<i64>,
    pub this_device: bool,
    /// On this device's own entry while it waits for approval: the code to compare.
    pub code: Option<String>,
    /// Where the server and the key directory disagree.
    pub warning: Option<String>,
}

/// `vellum devices`: the user's devices and what to do next.
#[derive(Debug, Clone)]
pub struct DevicesView {
    pub devices: Vec<DeviceEntry>,
    pub notices: Vec<String>,
}

/// Merges the server's list with the key directory: the directory decides the state of a
/// device it lists (the server cannot approve or un-revoke one), and a device the server
/// leaves out is listed anyway.
pub(crate) fn merge_devices(
    listed: &[DeviceInfo],
    directory: Option<&UserState>,
    this_device: &str,
) -> Vec<DeviceEntry> {
    let mut out: Vec<DeviceEntry> = listed
        .iter()
        .map(|d| {
            let known = directory.and_then(|u| u.devices.get(&d.device_id));
            let (state, warning) = match known {
                Some(k) if k.signature_key.as_slice() != &d.signature_key[..] => (
                    d.state,
                    Some("its key differs from the key directory's".to_owned()),
                ),
                Some(k) => (
                    match k.status {
                        DeviceStatus::Approved => DeviceState::Approved,
                        DeviceStatus::Legacy => DeviceState::Legacy,
                        DeviceStatus::Revoked => DeviceState::Revoked,
                    },
                    None,
                ),
                None => (
                    d.state,
                    matches!(d.state, DeviceState::Approved | DeviceState::Legacy)
                        .then(|| "not in the key directory".to_owned()),
                ),
            };
            DeviceEntry {
                device_id: d.device_id.clone(),
                state,
                enrolled_at: Some(d.enrolled_at),
                last_seen: d.last_seen,
                this_device: d.device_id == this_device,
                code: None,
                warning,
            }
        })
        .collect();
    if let Some(user) = directory {
        for (id, d) in &user.devices {
            if listed.iter().any(|l| &l.device_id == id) {
                continue;
            }
            out.push(DeviceEntry {
                device_id: id.clone(),
                state: match d.status {
                    DeviceStatus::Approved => DeviceState::Approved,
                    DeviceStatus::Legacy => DeviceState::Legacy,
                    DeviceStatus::Revoked => DeviceState::Revoked,
                },
                enrolled_at: None,
                last_seen: None,
                this_device: id == this_device,
                code: None,
                warning: (d.status != DeviceStatus::Revoked)
                    .then(|| "in the key directory, but the server does not list it".to_owned()),
            });
        }
    }
    out
}

/// Where this device stands with its user's identity.
pub(crate) enum Standing {
    /// The archiver: outside the directory.
    Outside,
    /// Holds the identity key.
    Holder,
    /// Waiting for approval: the code to show, if any, and what to do.
    Waiting {
        code: Option<String>,
        notice: String,
    },
}

/// `devices approve`: which step ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalStep {
    /// Step 1: the hello is on the server; the new device shows the code next.
    Started { device_id: String },
    /// Step 3: approved, and added to this many chats.
    Approved { device_id: String, chats: usize },
}

/// `devices revoke`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// Another device: revoked and removed from this many chats.
    Other { device_id: String, chats: usize },
    /// This device: revoked, and its profile wiped.
    ThisDevice,
}

/// `devices veto-reset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VetoedReset {
    pub request_id: String,
    /// When it would have taken effect, Unix seconds.
    pub effective_at: i64,
}

impl Client {
    fn device_ref(&self) -> DeviceRef {
        device_ref(&self.device_id, &self.key)
    }

    pub(crate) fn identity_key(&self) -> Result<Option<IdentityKey>, Error> {
        self.store
            .profile_get(IDENTITY_KEY)?
            .map(|seed| IdentityKey::from_seed(&zeroize::Zeroizing::new(seed)))
            .transpose()
            .map_err(|_| Error::Store("profile identity_key is corrupt".into()))
    }

    /// Whether this device holds its user's identity key (so it can approve and revoke).
    pub fn holds_identity(&self) -> Result<bool, Error> {
        Ok(self.store.profile_get(IDENTITY_KEY)?.is_some())
    }

    fn require_identity(&self, to: &str) -> Result<IdentityKey, Error> {
        self.identity_key()?.ok_or_else(|| {
            Error::Invalid(format!(
                "this device does not hold {}'s identity key (it is pending, or approved at upgrade and not confirmed): {to} from a device that does",
                self.user
            ))
        })
    }

    fn offer_secret(&self) -> Result<Option<OfferSecret>, Error> {
        self.store
            .profile_get(OFFER_SECRET)?
            .map(|json| serde_json::from_slice(&json))
            .transpose()
            .map_err(|_| Error::Store("profile offer_secret is corrupt".into()))
    }

    fn hello_secrets(&self) -> Result<BTreeMap<String, HelloSecret>, Error> {
        match self.store.profile_get(HELLO_SECRETS)? {
            None => Ok(BTreeMap::new()),
            Some(json) => serde_json::from_slice(&json)
                .map_err(|_| Error::Store("profile hello_secrets is corrupt".into())),
        }
    }

    fn save_hello_secrets(&self, hellos: &BTreeMap<String, HelloSecret>) -> Result<(), Error> {
        if hellos.is_empty() {
            return self.store.profile_delete(HELLO_SECRETS);
        }
        let json = serde_json::to_vec(hellos).map_err(|e| Error::Invalid(e.to_string()))?;
        self.store.profile_set(HELLO_SECRETS, &json)
    }

    fn forget_hello(&self, device_id: &str) -> Result<(), Error> {
        let mut hellos = self.hello_secrets()?;
        if hellos.remove(device_id).is_some() {
            self.save_hello_secrets(&hellos)?;
        }
        Ok(())
    }

    async fn post_change(&self, change: &Change) -> Result<DirectoryAppended, Error> {
        let body = PostDirectoryChange {
            change: serde_json::to_value(change).map_err(|e| Error::Invalid(e.to_string()))?,
        };
        self.request(Method::POST, "/v1/directory/changes", Some(&body))
            .await
    }

    async fn put_commitment(&self, offer: &OfferSecret) -> Result<(), Error> {
        let body = PutCommitment {
            commitment: hex::encode(offer.commitment(&self.user)),
        };
        let _: IgnoredAny = self
            .request(Method::PUT, "/v1/approvals/me/commitment", Some(&body))
            .await?;
        Ok(())
    }

    /// Right after enrollment: the first device publishes the user's identity; a later one
    /// commits to its offer (step 0).
    pub(crate) async fn publish_enrollment(&mut self) -> Result<(), Error> {
        if let Some(identity) = self.identity_key()? {
            let appended = self
                .post_change(&identity.identity_change(&self.user, self.device_ref(), &self.key))
                .await?;
            self.confirm_identity_landed(&identity, appended.index)
                .await?;
        } else if let Some(offer) = self.offer_secret()? {
            self.put_commitment(&offer).await?;
        }
        Ok(())
    }

    /// Brings this device's identity up to date; run by `sync` and `devices`. A holder makes
    /// sure the directory has its identity (an enrollment cut short publishes it now); a
    /// device enrolled before the directory makes the identity if it is its user's earliest,
    /// or starts its exchange; a waiting device runs its steps 2 and 4.
    pub(crate) async fn settle_identity(&mut self) -> Result<Standing, Error> {
        if self.user == RECORDS_USER {
            return Ok(Standing::Outside);
        }
        if let Some(identity) = self.identity_key()? {
            // Best effort: a directory that cannot be read now does not stop a sync.
            if let Err(e) = self.ensure_identity_published(&identity).await {
                if matches!(e, Error::Revoked) {
                    return Err(e);
                }
                tracing::warn!(%e, "could not check this device's identity in the directory");
            }
            return Ok(Standing::Holder);
        }
        let offer = match self.offer_secret()? {
            Some(offer) => offer,
            None => {
                // Enrolled before the directory (legacy): no identity, no exchange yet.
                self.refresh_directory().await?;
                let mirror = self.directory()?;
                let own = mirror.state.user(&self.user);
                if own.and_then(upgrade_holder) == Some(self.device_id.as_str()) {
                    let identity = IdentityKey::generate();
                    // Kept before it is published: a lost answer is published again.
                    self.store
                        .profile_set(IDENTITY_KEY, identity.seed().as_slice())?;
                    let appended = self
                        .post_change(&identity.identity_change(
                            &self.user,
                            self.device_ref(),
                            &self.key,
                        ))
                        .await?;
                    self.confirm_identity_landed(&identity, appended.index)
                        .await?;
                    return Ok(Standing::Holder);
                }
                self.restart_offer().await?
            }
        };
        let exchange: ApprovalExchange = self
            .request(Method::GET, "/v1/approvals/me", None::<&()>)
            .await?;
        let code = match next_offer_action(&self.user, &offer, &exchange)? {
            OfferAction::TakeIdentity(identity) => {
                self.store.begin()?;
                let saved = self
                    .store
                    .profile_set(IDENTITY_KEY, identity.seed().as_slice())
                    .and_then(|_| self.store.profile_delete(OFFER_SECRET));
                self.finish_tx(saved)?;
                let _: IgnoredAny = self
                    .request(Method::DELETE, "/v1/approvals/me", None::<&()>)
                    .await?;
                return Ok(Standing::Holder);
            }
            OfferAction::Commit => {
                self.restart_offer().await?;
                None
            }
            OfferAction::Wait => None,
            OfferAction::Reveal { code } => {
                let body = PutOffer {
                    offer: serde_json::to_value(&offer.offer)
                        .map_err(|e| Error::Invalid(e.to_string()))?,
                };
                let _: IgnoredAny = self
                    .request(Method::PUT, "/v1/approvals/me/offer", Some(&body))
                    .await?;
                Some(code)
            }
            OfferAction::Show { code } => Some(code),
        };
        let notice = self.waiting_notice(code.as_deref())?;
        Ok(Standing::Waiting { code, notice })
    }

    /// A fresh offer, kept, then committed to (step 0).
    async fn restart_offer(&mut self) -> Result<OfferSecret, Error> {
        let offer = OfferSecret::new(self.device_ref());
        save_offer(&self.store, &offer)?;
        self.put_commitment(&offer).await?;
        Ok(offer)
    }

    /// What a waiting device tells its user, from the local directory copy.
    fn waiting_notice(&self, code: Option<&str>) -> Result<String, Error> {
        let id = &self.device_id;
        if let Some(code) = code {
            return Ok(format!(
                "compare this code with the approving device, then type it there: `vellum devices approve {id} --code {code}`"
            ));
        }
        let mirror = self.directory()?;
        let own = mirror.state.user(&self.user);
        let legacy = own
            .and_then(|u| u.devices.get(id))
            .is_some_and(|d| d.status == DeviceStatus::Legacy);
        if !legacy {
            return Ok(format!(
                "this device is pending approval: on an approved device of {} run `vellum devices approve {id}`, then `vellum devices` here",
                self.user
            ));
        }
        let holder = own
            .and_then(|u| {
                u.devices
                    .iter()
                    .find(|(_, d)| d.status == DeviceStatus::Approved)
                    .map(|(id, _)| id.as_str())
                    .or_else(|| upgrade_holder(u))
            })
            .unwrap_or("the device that holds the identity");
        Ok(format!(
            "this device was approved at upgrade; confirm it with `vellum devices approve {id}` on {holder}, or revoke it"
        ))
    }

    /// Publishes this holder's identity if the directory does not have it yet (an enrollment
    /// whose post was lost). The local copy answers without a request once it has it.
    async fn ensure_identity_published(&mut self, identity: &IdentityKey) -> Result<(), Error> {
        let published = |client: &Self| -> Option<Option<Key32>> {
            client
                .directory()
                .ok()
                .map(|m| m.state.user(&client.user).and_then(|u| u.identity))
        };
        if published(self).flatten() == Some(identity.public()) {
            return Ok(());
        }
        self.refresh_directory().await?;
        match published(self).flatten() {
            Some(key) if key == identity.public() => Ok(()),
            Some(_) => Err(Error::Invalid(format!(
                "the key directory holds another identity for {} than the one this device holds",
                self.user
            ))),
            None => {
                let appended = self
                    .post_change(&identity.identity_change(
                        &self.user,
                        self.device_ref(),
                        &self.key,
                    ))
                    .await?;
                self.confirm_identity_landed(identity, appended.index).await
            }
        }
    }

    /// After the server took this device's `identity` change (appended at `index`): the
    /// verified copy must show the identity this device holds, with this device approved.
    /// If it does not, the server is withholding it: a permanent alarm, and an error.
    async fn confirm_identity_landed(
        &mut self,
        identity: &IdentityKey,
        index: u64,
    ) -> Result<(), Error> {
        self.refresh_past(index).await?;
        let landed = self.directory()?.state.user(&self.user).is_some_and(|u| {
            u.identity == Some(identity.public())
                && u.devices
                    .get(&self.device_id)
                    .is_some_and(|d| d.status == DeviceStatus::Approved)
        });
        if landed {
            return Ok(());
        }
        Err(self.directory_problem(crate::directory::Problem::Identity(format!(
            "the identity this device published for {} is not in the key directory: the server may be withholding it (`vellum sync` publishes it again)",
            self.user
        )))?)
    }

    /// `vellum devices`: the user's devices, this one's code while it waits for approval,
    /// and what to do next. Runs the waiting device's steps 2 and 4.
    pub async fn devices(&mut self) -> Result<DevicesView, Error> {
        let _held = self.lock.hold()?;
        let standing = self.settle_identity().await?;
        let listed: DeviceList = self
            .request(Method::GET, "/v1/devices", None::<&()>)
            .await?;
        self.refresh_directory().await?;
        let mirror = self.directory()?;
        let own = mirror.state.user(&self.user);
        let mut devices = merge_devices(&listed.devices, own, &self.device_id);
        let mut notices = Vec::new();
        match standing {
            Standing::Waiting { code, notice } => {
                if let Some(me) = devices.iter_mut().find(|d| d.this_device) {
                    me.code = code;
                }
                notices.push(notice);
            }
            Standing::Holder => {
                for d in devices.iter().filter(|d| !d.this_device) {
                    let id = &d.device_id;
                    match d.state {
                        DeviceState::Pending => notices.push(format!(
                            "device {id} is pending: run `vellum devices` on it, then `vellum devices approve {id}` here"
                        )),
                        DeviceState::Legacy => notices.push(format!(
                            "device {id} was approved at upgrade: confirm it with `vellum devices approve {id}` (after `vellum devices` on it), or revoke it with `vellum devices revoke {id}`"
                        )),
                        _ => {}
                    }
                }
            }
            Standing::Outside => {}
        }
        for d in &devices {
            if let Some(warning) = &d.warning {
                notices.push(format!("WARNING: device {}: {warning}", d.device_id));
            }
        }
        if let Some(reset) = own.and_then(|u| u.pending_reset.as_ref()) {
            notices.push(format!(
                "WARNING: the administrator asked to reset {}'s identity; it takes effect at {} unless you run `vellum devices veto-reset`",
                self.user,
                crate::directory::rfc3339_secs(reset.effective_at)
            ));
        }
        Ok(DevicesView { devices, notices })
    }

    /// `vellum devices approve ID [--code CODE]`: step 1 without a code, step 3 with one.
    pub async fn approve_device(
        &mut self,
        device_id: &str,
        code: Option<&str>,
    ) -> Result<ApprovalStep, Error> {
        let _held = self.lock.hold()?;
        let identity = self.require_identity("approve devices")?;
        if device_id == self.device_id {
            return Err(Error::Invalid("a device cannot approve itself".into()));
        }
        let path = format!("/v1/approvals/{device_id}");
        let exchange: ApprovalExchange = self.request(Method::GET, &path, None::<&()>).await?;
        let Some(code) = code else {
            if exchange.commitment.is_none() {
                return Err(Error::Invalid(format!(
                    "device {device_id} has not started its approval: run `vellum --home NEW devices` on it first"
                )));
            }
            let hello = HelloSecret::new(self.device_ref(), identity.public());
            let mut hellos = self.hello_secrets()?;
            hellos.insert(device_id.to_owned(), hello.clone());
            self.save_hello_secrets(&hellos)?;
            let body = PutHello {
                hello: serde_json::to_value(&hello.hello)
                    .map_err(|e| Error::Invalid(e.to_string()))?,
            };
            let _: IgnoredAny = self
                .request(Method::PUT, &format!("{path}/hello"), Some(&body))
                .await?;
            return Ok(ApprovalStep::Started {
                device_id: device_id.to_owned(),
            });
        };
        let hello = self.hello_secrets()?.remove(device_id).ok_or_else(|| {
            Error::Invalid(format!(
                "no approval of {device_id} was started on this device: run `vellum devices approve {device_id}` first"
            ))
        })?;
        let (offer, sealed) =
            match approver_complete(&self.user, device_id, &hello, &exchange, code, &identity) {
                Ok(done) => done,
                Err(Refusal::NotReady(why)) => return Err(Error::Invalid(why)),
                Err(Refusal::Cancel(why)) => {
                    // Cancelled on the server before anything else: nothing was approved.
                    let _: IgnoredAny = self.request(Method::DELETE, &path, None::<&()>).await?;
                    self.forget_hello(device_id)?;
                    return Err(Error::Invalid(why));
                }
            };
        let change =
            identity.approve_change(&self.user, offer.device.clone(), &self.device_id, &self.key);
        let body = CompleteApproval {
            change: serde_json::to_value(&change).map_err(|e| Error::Invalid(e.to_string()))?,
            sealed_identity: sealed.into(),
        };
        let _: IgnoredAny = self
            .request(Method::POST, &format!("{path}/complete"), Some(&body))
            .await?;
        self.forget_hello(device_id)?;
        let chats = self.add_device_to_chats(&offer.device).await?;
        Ok(ApprovalStep::Approved {
            device_id: device_id.to_owned(),
            chats,
        })
    }

    /// Adds a device of this user, just approved, to every chat of this device: one add
    /// commit per chat, each with a key package claimed by its device id.
    async fn add_device_to_chats(&mut self, device: &DeviceRef) -> Result<usize, Error> {
        // Every chat this device belongs to, including those it was invited to since its
        // last sync; what the sync finds waits for the next `sync` to show it.
        self.sync_quiet().await?;
        // This device's own checks must find the new device vouched for.
        self.refresh_directory().await?;
        let mut added = 0;
        for chat in self.store.chats()? {
            if chat.removed {
                continue;
            }
            let group_id = chat.group_id;
            self.switch_archiver_if_needed(&group_id).await?;
            let present = roster(&self.load_group(&group_id)?, &self.identity)?
                .iter()
                .any(|(_, c)| c.device_id == device.device_id);
            if present {
                continue;
            }
            let key_package = self.claim_device(device).await?;
            self.add_key_packages(&group_id, vec![(device.device_id.clone(), key_package)])
                .await?;
            if let Some(title) = self.store.chat(&group_id)?.and_then(|c| c.title) {
                // The new device learns the title from the members, never from the server.
                self.send_payload(&group_id, AppPayload::ChatInfo { title }, None, None)
                    .await?;
            }
            added += 1;
        }
        Ok(added)
    }

    /// One key package of `device`, which must be exactly the device approved: this user,
    /// this id, this signature key.
    async fn claim_device(&self, device: &DeviceRef) -> Result<MlsMessage, Error> {
        let request = ClaimKeyPackages {
            users: Vec::new(),
            devices: vec![device.device_id.clone()],
        };
        let claimed: ClaimedKeyPackages = self
            .request(Method::POST, "/v1/key-packages/claim", Some(&request))
            .await?;
        let mut found = None;
        for kp in claimed.key_packages {
            let message = vellum_mls::key_package_message(&kp.key_package)?;
            let owner = message
                .as_key_package()
                .map(|k| self.identity.certificate(k.signing_identity()))
                .transpose()?
                .ok_or_else(|| Error::Invalid("not a key package".into()))?;
            let exact = owner.user == self.user
                && owner.device_id == device.device_id
                && kp.device_id == device.device_id
                && owner.signature_key.as_slice() == device.signature_key.as_slice();
            if !exact || found.is_some() {
                return Err(Error::Invalid(format!(
                    "the server handed out a key package of device {} of {} that is not the device just approved: refused, nothing was committed",
                    owner.device_id, owner.user
                )));
            }
            found = Some(message);
        }
        found.ok_or_else(|| {
            Error::Invalid(format!(
                "the server handed out no key package of device {}",
                device.device_id
            ))
        })
    }

    /// `vellum devices revoke ID`: an identity-signed revocation in the directory, then the
    /// device leaves every chat of this device. Revoking this device wipes it.
    pub async fn revoke_device(&mut self, device_id: &str) -> Result<Revocation, Error> {
        let _held = self.lock.hold()?;
        let identity = self.require_identity("revoke devices")?;
        self.refresh_directory().await?;
        let known = self
            .directory()?
            .state
            .user(&self.user)
            .and_then(|u| u.devices.get(device_id))
            .map(|d| d.status);
        match known {
            None => {
                // A device waiting for approval is listed but not in the key directory yet,
                // so there is nothing of it to revoke there.
                return Err(Error::Invalid(format!(
                    "{} has no device {device_id:?} in the key directory (see `vellum devices`); \
                     one waiting for approval is not there until approved: leave it unapproved, \
                     or have an administrator remove it (`vellum admin device revoke`)",
                    self.user
                )));
            }
            Some(vellum_directory::DeviceStatus::Revoked) => {
                return Err(Error::Invalid(format!(
                    "device {device_id} is revoked already"
                )))
            }
            Some(_) => {}
        }
        let change = identity.revoke_change(&self.user, device_id, &self.device_id, &self.key);
        self.post_change(&change).await?;
        if device_id == self.device_id {
            self.wipe()?;
            return Ok(Revocation::ThisDevice);
        }
        self.forget_hello(device_id)?;
        // This device's own checks must find it revoked.
        self.refresh_directory().await?;
        let mut removed = 0;
        for chat in self.store.chats()? {
            if chat.removed {
                continue;
            }
            let group_id = chat.group_id;
            self.switch_archiver_if_needed(&group_id).await?;
            let present = roster(&self.load_group(&group_id)?, &self.identity)?
                .iter()
                .any(|(_, c)| c.device_id == device_id);
            if !present {
                continue;
            }
            let identity = self.identity.clone();
            let target = device_id.to_owned();
            self.commit_with_rebase(&group_id, true, move |group| {
                let members = roster(group, &identity)?;
                let mut builder = group.commit_builder();
                let mut any = false;
                for (index, cert) in members {
                    if cert.device_id == target {
                        builder = builder.remove_member(index)?;
                        any = true;
                    }
                }
                // Another member (or the directory check) may have removed it first.
                Ok(if any { Some(builder.build()?) } else { None })
            })
            .await?;
            removed += 1;
        }
        Ok(Revocation::Other {
            device_id: device_id.to_owned(),
            chats: removed,
        })
    }

    /// `vellum devices veto-reset`: stops the administrator's pending reset of this user's
    /// identity with an identity-signed veto.
    pub async fn veto_reset(&mut self) -> Result<VetoedReset, Error> {
        let _held = self.lock.hold()?;
        let identity = self.require_identity("veto a reset")?;
        self.refresh_directory().await?;
        let pending = self
            .directory()?
            .state
            .user(&self.user)
            .and_then(|u| u.pending_reset.clone())
            .ok_or_else(|| {
                Error::Invalid(format!("no reset of {}'s identity is pending", self.user))
            })?;
        let change =
            identity.veto_change(&self.user, &pending.request_id, &self.device_id, &self.key);
        let appended = self.post_change(&change).await?;
        // The server's answer is not the directory's: the reset passes unless the veto is
        // in the log every device replays.
        let applied = self.refresh_past(appended.index).await?;
        let vetoed = applied.iter().any(|e| {
            e.user == self.user
                && matches!(&e.change, Change::ResetVetoed { request_id, by_device, .. }
                    if *request_id == pending.request_id && *by_device == self.device_id)
        });
        let still_pending = self
            .directory()?
            .state
            .user(&self.user)
            .is_some_and(|u| u.pending_reset.is_some());
        if !vetoed || still_pending {
            return Err(self.directory_problem(crate::directory::Problem::Veto(
                "the veto was not published: the server may be withholding it".into(),
            ))?);
        }
        Ok(VetoedReset {
            request_id: pending.request_id,
            effective_at: pending.effective_at,
        })
    }

    /// What a `device_revoked` answer does: the profile is wiped, and the caller told so,
    /// only if the key directory (verified, caught up) says this device was revoked or its
    /// user reset; the server's word alone could wipe every device of a user before a reset
    /// nobody could veto then. Otherwise nothing is deleted and a permanent alarm raised.
    /// The archiver (user `records`) is replaced by its records office, not wiped.
    pub(crate) async fn revoked_answer(&self, refused: Error) -> Error {
        if self.user == RECORDS_USER {
            return refused;
        }
        let why = match self.revoked_in_directory().await {
            Ok(true) => {
                return match self.wipe() {
                    Ok(()) => Error::Revoked,
                    Err(e) => Error::Io(format!(
                        "this device was revoked, but wiping its profile failed: {e}"
                    )),
                }
            }
            Ok(false) => String::new(),
            Err(e) => format!(" (the directory could not be checked: {e})"),
        };
        let problem = crate::directory::Problem::Refused(format!(
            "{REFUSED_NOT_REVOKED}{why}; this device keeps its profile"
        ));
        match self.record_problem(problem) {
            Ok((error, _)) => error,
            Err(e) => e,
        }
    }

    /// Shreds every message and key, then deletes the profile's files (HOME itself stays).
    fn wipe(&self) -> Result<(), Error> {
        self.store.wipe()?;
        for name in PROFILE_FILES {
            let path = self.home.join(name);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::Io(format!("{}: {e}", path.display())))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Whether a refused WebSocket handshake is the server's `device_revoked`.
pub(crate) fn is_revoked_answer(status: u16, body: Option<&[u8]>) -> bool {
    status == 403
        && body
            .and_then(|b| serde_json::from_slice::<vellum_wire::ApiError>(b).ok())
            .is_some_and(|e| e.code == codes::DEVICE_REVOKED)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use vellum_directory::DeviceState as Listed;
    use vellum_mls::OrgSigner;

    use super::*;
    use crate::{MessageKind, MessageRow};

    const USER: &str = "alice";

    fn device(id: &str) -> (DeviceRef, DeviceKey) {
        let key = DeviceKey::generate();
        (device_ref(id, &key), key)
    }

    /// The server's relay of one exchange, as the endpoints of ISSUE9 keep it.
    #[derive(Default)]
    struct Relay(ApprovalExchange);

    impl Relay {
        fn commit(&mut self, offer: &OfferSecret) {
            self.0 = ApprovalExchange {
                device_id: offer.offer.device.device_id.clone(),
                commitment: Some(hex::encode(offer.commitment(USER))),
                ..Default::default()
            };
        }
        fn hello(&mut self, hello: &ApproverHello) {
            self.0.hello = Some(serde_json::to_value(hello).unwrap());
        }
        fn offer(&mut self, offer: &DeviceOffer) {
            self.0.offer = Some(serde_json::to_value(offer).unwrap());
        }
    }

    fn shown_code(action: OfferAction) -> String {
        match action {
            OfferAction::Reveal { code } | OfferAction::Show { code } => code,
            _ => panic!("no code to show"),
        }
    }

    /// Steps 0-4 with in-memory values, a wrong code first: the wrong code cancels and
    /// approves nothing; a fresh start with the right code hands over the identity key.
    #[test]
    fn issue_9_the_approval_exchange_needs_the_code_the_new_device_shows() {
        let identity = IdentityKey::generate();
        let (old, _) = device("old");
        let (new, _) = device("new");
        let mut relay = Relay::default();

        // Step 0: nothing on the server yet, so the new device commits.
        let offer = OfferSecret::new(new.clone());
        assert!(matches!(
            next_offer_action(USER, &offer, &relay.0).unwrap(),
            OfferAction::Commit
        ));
        relay.commit(&offer);
        assert!(matches!(
            next_offer_action(USER, &offer, &relay.0).unwrap(),
            OfferAction::Wait
        ));
        // Step 1.
        let hello = HelloSecret::new(old.clone(), identity.public());
        let early = approver_complete(USER, "new", &hello, &relay.0, "0", &identity);
        assert!(matches!(early, Err(Refusal::NotReady(_))), "{early:?}");
        relay.hello(&hello.hello);
        // Step 2: reveal once, then only show; the code is the same.
        let code = shown_code(next_offer_action(USER, &offer, &relay.0).unwrap());
        relay.offer(&offer.offer);
        assert_eq!(
            shown_code(next_offer_action(USER, &offer, &relay.0).unwrap()),
            code
        );
        // Step 3, a wrong code: cancelled, with the words the CLI prints.
        let wrong = if code.starts_with('0') { "1" } else { "0" }.to_owned() + &code[1..];
        match approver_complete(USER, "new", &hello, &relay.0, &wrong, &identity) {
            Err(Refusal::Cancel(why)) => assert_eq!(
                why,
                "wrong code: nothing was approved; start again: run `vellum devices` on the new device (it commits to fresh keys), then `vellum devices approve new`"
            ),
            other => panic!("{other:?}"),
        }
        // The server cancels (clears everything): the new device commits afresh.
        relay.0 = ApprovalExchange::default();
        assert!(matches!(
            next_offer_action(USER, &offer, &relay.0).unwrap(),
            OfferAction::Commit
        ));
        let offer = OfferSecret::new(new.clone());
        relay.commit(&offer);
        let hello = HelloSecret::new(old.clone(), identity.public());
        relay.hello(&hello.hello);
        let code = shown_code(next_offer_action(USER, &offer, &relay.0).unwrap());
        relay.offer(&offer.offer);
        // Step 3, the right code (typed with spaces).
        let typed = code.replace('-', " ");
        let (revealed, sealed) =
            approver_complete(USER, "new", &hello, &relay.0, &typed, &identity).unwrap();
        assert_eq!(revealed.device, new);
        // Step 4.
        relay.0.sealed_identity = Some(sealed.into());
        match next_offer_action(USER, &offer, &relay.0).unwrap() {
            OfferAction::TakeIdentity(taken) => assert_eq!(taken.public(), identity.public()),
            _ => panic!("the identity was not taken"),
        }
    }

    /// A server that swaps in its own hello (its own identity key) gets the new device to
    /// show a code the approver does not compute: the approver's code check cancels.
    #[test]
    fn issue_9_a_substituted_hello_or_offer_approves_nothing() {
        let identity = IdentityKey::generate();
        let (old, _) = device("old");
        let (new, _) = device("new");
        let offer = OfferSecret::new(new.clone());
        let hello = HelloSecret::new(old.clone(), identity.public());
        let mut relay = Relay::default();
        relay.commit(&offer);
        let forged = HelloSecret::new(old.clone(), IdentityKey::generate().public());
        relay.hello(&forged.hello);
        let shown = shown_code(next_offer_action(USER, &offer, &relay.0).unwrap());
        relay.offer(&offer.offer);
        assert!(matches!(
            approver_complete(USER, "new", &hello, &relay.0, &shown, &identity),
            Err(Refusal::Cancel(why)) if why.starts_with("wrong code")
        ));
        // An offer other than the one committed to (a key of the server's choosing).
        let (mallory, _) = device("new");
        let swapped = OfferSecret::new(mallory);
        relay.offer(&swapped.offer);
        let code = verification_code(USER, &swapped.offer, &hello.hello);
        match approver_complete(USER, "new", &hello, &relay.0, &code, &identity) {
            Err(Refusal::Cancel(why)) => {
                assert!(why.contains("committed to"), "{why}");
                assert!(why.ends_with(
                    "nothing was approved; start again: run `vellum devices` on the new device (it commits to fresh keys), then `vellum devices approve new`"
                ));
            }
            other => panic!("{other:?}"),
        }
        // An offer of another device than the one being approved.
        let other = OfferSecret::new(device("other").0);
        relay.commit(&other);
        relay.hello(&hello.hello);
        relay.offer(&other.offer);
        let code = verification_code(USER, &other.offer, &hello.hello);
        assert!(matches!(
            approver_complete(USER, "new", &hello, &relay.0, &code, &identity),
            Err(Refusal::Cancel(why)) if why.contains("not new")
        ));
        // A sealed identity that is not for this offer does not open.
        let mut relay = Relay::default();
        relay.commit(&offer);
        relay.hello(&hello.hello);
        relay.0.sealed_identity = Some(vec![7u8; vellum_directory::SEALED_IDENTITY_LEN].into());
        assert!(next_offer_action(USER, &offer, &relay.0).is_err());
    }

    fn listed(status: vellum_directory::DeviceStatus, key: Key32, at: u64) -> Listed {
        Listed {
            signature_key: key,
            status,
            changed_at: at,
            generation: 0,
        }
    }

    fn info(id: &str, state: DeviceState, key: Key32) -> DeviceInfo {
        DeviceInfo {
            device_id: id.into(),
            user: USER.into(),
            state,
            signature_key: key.to_vec().into(),
            enrolled_at: 100,
            last_seen: Some(200),
        }
    }

    /// The directory decides a listed device's state, flags what the server claims alone,
    /// and shows a device the server leaves out.
    #[test]
    fn issue_9_devices_are_shown_as_the_directory_says() {
        use vellum_directory::DeviceStatus::*;
        let mut user = UserState {
            identity: Some([1; 32]),
            ..Default::default()
        };
        user.devices
            .insert("a".into(), listed(Approved, [10; 32], 5));
        user.devices
            .insert("r".into(), listed(Revoked, [11; 32], 7));
        user.devices
            .insert("w".into(), listed(Approved, [12; 32], 8));
        user.devices
            .insert("hidden".into(), listed(Approved, [13; 32], 9));
        let server = vec![
            info("a", DeviceState::Approved, [10; 32]),
            info("r", DeviceState::Approved, [11; 32]),
            info("w", DeviceState::Approved, [99; 32]),
            info("p", DeviceState::Pending, [14; 32]),
            info("ghost", DeviceState::Approved, [15; 32]),
        ];
        let merged = merge_devices(&server, Some(&user), "a");
        let find = |id: &str| merged.iter().find(|d| d.device_id == id).unwrap();
        assert!(find("a").this_device && find("a").warning.is_none());
        assert_eq!(find("a").state, DeviceState::Approved);
        assert_eq!(
            find("r").state,
            DeviceState::Revoked,
            "the server cannot un-revoke"
        );
        assert!(find("w")
            .warning
            .as_deref()
            .unwrap()
            .contains("key differs"));
        assert_eq!(find("p").state, DeviceState::Pending);
        assert!(
            find("p").warning.is_none(),
            "a pending device is not in the directory yet"
        );
        assert_eq!(
            find("ghost").warning.as_deref(),
            Some("not in the key directory")
        );
        let hidden = find("hidden");
        assert_eq!(
            (hidden.state, hidden.enrolled_at),
            (DeviceState::Approved, None)
        );
        assert!(hidden
            .warning
            .as_deref()
            .unwrap()
            .contains("does not list it"));
        assert_eq!(merged.len(), 6);
    }

    #[test]
    fn issue_9_the_earliest_legacy_device_makes_the_identity_at_upgrade() {
        use vellum_directory::DeviceStatus::*;
        let mut user = UserState::default();
        user.devices
            .insert("z-first".into(), listed(Revoked, [1; 32], 0));
        user.devices.insert("b".into(), listed(Legacy, [2; 32], 3));
        user.devices.insert("a".into(), listed(Legacy, [3; 32], 4));
        assert_eq!(
            upgrade_holder(&user),
            Some("b"),
            "by log order, revoked ones aside"
        );
        user.identity = Some([9; 32]);
        assert_eq!(
            upgrade_holder(&user),
            None,
            "only while there is no identity"
        );
    }

    /// A profile of `user` with one chat message, openable without a server.
    fn profile(home: &std::path::Path, user: &str, server: &str) -> Client {
        let org = OrgSigner::generate();
        let key = DeviceKey::generate();
        let cert = org.issue(user, "d1", &key.public_key());
        let store = LocalStore::open(home).unwrap();
        store.set_servers(&[server.to_owned()]).unwrap();
        for (k, v) in [
            ("user", user.as_bytes().to_vec()),
            ("device_id", b"d1".to_vec()),
            ("device_key", key.seed().to_vec()),
            ("credential", cert.to_bytes()),
            ("org_key", org.public_key().to_bytes().to_vec()),
            (IDENTITY_KEY, IdentityKey::generate().seed().to_vec()),
        ] {
            store.profile_set(k, &v).unwrap();
        }
        store.add_chat("g", Some("ops"), 0).unwrap();
        store
            .add_message(&MessageRow {
                group_id: "g".into(),
                id: "m1".into(),
                kind: MessageKind::Text,
                sender_user: "bob".into(),
                sender_device: "b1".into(),
                sent_at: 1,
                received_at: 2,
                seq: Some(3),
                event: None,
                extra: Default::default(),
                text: "the vault code is 4417".into(),
                expires_at: None,
                burn_secs: None,
                read_at: None,
                burn_at: None,
                archived_leaf: None,
                salt: None,
            })
            .unwrap();
        drop(store);
        Client::open(home).unwrap()
    }

    /// A loopback server that answers every request 403 `device_revoked`.
    async fn revoking_server() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = Vec::new();
                while !request.ends_with(b"\r\n\r\n") {
                    let mut byte = [0u8; 1];
                    if socket.read_exact(&mut byte).await.is_err() {
                        break;
                    }
                    request.push(byte[0]);
                }
                let body = format!(
                    r#"{{"code":"{}","message":"revoked"}}"#,
                    codes::DEVICE_REVOKED
                );
                let response = format!(
                    "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        base
    }

    /// The archiver is replaced by its records office, not wiped by the server's word.
    #[tokio::test]
    async fn issue_9_the_archiver_is_not_wiped() {
        let home = tempfile::tempdir().unwrap();
        let server = revoking_server().await;
        let client = profile(home.path(), RECORDS_USER, &server);
        let err = client
            .request::<serde_json::Value>(Method::GET, "/v1/sync", None::<&()>)
            .await
            .unwrap_err();
        assert!(err.is_code(codes::DEVICE_REVOKED), "{err}");
        assert!(home.path().join("vellum.db").exists());
    }

    #[test]
    fn a_refused_websocket_handshake_is_recognised_as_revocation() {
        let body = format!(r#"{{"code":"{}","message":"m"}}"#, codes::DEVICE_REVOKED);
        assert!(is_revoked_answer(403, Some(body.as_bytes())));
        assert!(!is_revoked_answer(401, Some(body.as_bytes())));
        assert!(!is_revoked_answer(
            403,
            Some(b"{\"code\":\"forbidden\",\"message\":\"m\"}")
        ));
        assert!(!is_revoked_answer(403, None));
    }
}
