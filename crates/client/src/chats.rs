//! Chats: creating them, their members, and their timers (the chat policy).

use reqwest::Method;
use vellum_mls::mls_rs::{ExtensionList, MlsMessage};
use vellum_mls::{roster, ChatPolicy, ChatSettings, OrgIdentityProvider, RecordChat};
use vellum_wire::*;

use crate::{
    now_millis, random_id, ChatEvent, ChatRow, Client, Error, Group, Member, MessageKind,
    MessageRow,
};

/// Whether a chat's messages are kept as records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatClass {
    Record,
    Transitory,
}

impl ChatClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatClass::Record => "record",
            ChatClass::Transitory => "transitory",
        }
    }
}

/// What every member's history says when a transitory chat becomes a record chat.
pub(crate) fn conversion_notice(committer: &str) -> String {
    format!(
        "This chat is now kept as a record by the organisation (converted by {committer}); \
         messages from before the conversion were not archived"
    )
}

/// What every member's history says when a legal hold starts or stops keeping the chat (a
/// hold keeps only transitory chats: one that became a record chat is the archive's now).
pub(crate) fn hold_notice(held: bool, record: bool) -> &'static str {
    match (held, record) {
        (true, _) => "Disappearing timers are suspended by a legal hold: nothing in this chat expires or burns until it is released",
        (false, false) => "The legal hold was released: disappearing timers run again",
        (false, true) => "Disappearing timers run again: the organisation's archive keeps this chat now",
    }
}

/// Whether a claim answer's key package of `device_id` of `user` was asked for: a user in the
/// request, or a device the request names (the bound archiver).
fn asked_for(request: &ClaimKeyPackages, user: &str, device_id: &str) -> bool {
    request.users.iter().any(|u| u == user) || request.devices.iter().any(|d| d == device_id)
}

/// `records` is not a person to invite: a record chat adds the bound archiver itself.
fn check_not_archiver(users: &[String]) -> Result<(), Error> {
    if users.iter().any(|u| u == RECORDS_USER) {
        return Err(Error::Invalid(
            "records is the organisation's archive, not a member to add: record chats add the archiver the custodians bound".into(),
        ));
    }
    Ok(())
}

/// What every member's history says about the chat's class.
pub(crate) fn class_notice(record: bool) -> &'static str {
    if record {
        "Messages in this chat are kept as records by the organisation"
    } else {
        "This chat is transitory: its messages are not kept as records"
    }
}

/// A device's fingerprint, to compare out of band: the first 16 bytes of the SHA-256 of its
/// signature key, in hex, in groups of four digits ("1a2b 3c4d …").
pub fn device_fingerprint(signature_key: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(signature_key);
    hex::encode(&digest[..16])
        .as_bytes()
        .chunks(4)
        .map(|group| String::from_utf8_lossy(group).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a device in a chat is, as `chat members --devices` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberDeviceState {
    /// A person's device, as this device's copy of the key directory vouches for it (or
    /// not: such a device is removed before this device sends there again).
    Directory(vellum_directory::Vouch),
    /// This device has not read the key directory yet.
    Unchecked,
    /// The archiver the records custodians bound.
    RecordsArchive,
    /// A device of `records` that is not the bound archiver.
    NotBoundArchiver,
}

impl MemberDeviceState {
    pub fn as_str(&self) -> &'static str {
        match self {
            MemberDeviceState::Directory(vouch) => vouch.reason(),
            MemberDeviceState::Unchecked => "not checked yet",
            MemberDeviceState::RecordsArchive => "records archive",
            MemberDeviceState::NotBoundArchiver => "not the bound archiver",
        }
    }
}

/// One device of a chat, from this device's verified MLS roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDevice {
    pub user: String,
    pub device_id: String,
    pub state: MemberDeviceState,
    /// [`device_fingerprint`] of its signature key.
    pub fingerprint: String,
    /// What it is when it is not a person ("records archive (sealed, 2 of 3 custodians)").
    pub role: Option<String>,
}

/// The members of a group, each credential verified against the pinned org key.
pub(crate) fn members(group: &Group, identity: &OrgIdentityProvider) -> Result<Vec<Member>, Error> {
    Ok(roster(group, identity)?
        .into_iter()
        .map(|(_, cert)| Member {
            user: cert.user,
            device_id: cert.device_id,
        })
        .collect())
}

impl Client {
    pub fn chats(&self) -> Result<Vec<ChatRow>, Error> {
        self.store.chats()
    }

    /// The chat's members from this device's verified MLS roster (not from the server).
    pub fn members(&self, chat: &str) -> Result<Vec<Member>, Error> {
        let group_id = self.resolve_chat(chat)?;
        if self.store.chat(&group_id)?.is_some_and(|c| c.removed) {
            return Err(Error::RemovedFromChat);
        }
        members(&self.load_group(&group_id)?, &self.identity)
    }

    /// The chat's members, each with what it is when it is not a person: the archiver the
    /// custodians bound is "records archive (sealed, k of n custodians)"; another device of
    /// `records` is flagged as not bound.
    /// A chat's admins are "admin" (issue 10; not where every member manages).
    pub fn described_members(&self, chat: &str) -> Result<Vec<(Member, Option<String>)>, Error> {
        Ok(self
            .member_devices(chat)?
            .into_iter()
            .map(|d| {
                (
                    Member {
                        user: d.user,
                        device_id: d.device_id,
                    },
                    d.role,
                )
            })
            .collect())
    }

    /// Every device of the chat with its state and fingerprint, in leaf order.
    pub fn member_devices(&self, chat: &str) -> Result<Vec<MemberDevice>, Error> {
        let group_id = self.resolve_chat(chat)?;
        if self.store.chat(&group_id)?.is_some_and(|c| c.removed) {
            return Err(Error::RemovedFromChat);
        }
        let trust = self.records_trust()?;
        let mirror = self.directory()?;
        let group = self.load_group(&group_id)?;
        let settings = ChatSettings::from_extensions(&group.context().extensions)?;
        let admin = |user: &str| {
            (!settings.everyone_manages && settings.admins.iter().any(|a| a == user.as_bytes()))
                .then(|| "admin".to_owned())
        };
        Ok(roster(&group, &self.identity)?
            .into_iter()
            .map(|(_, cert)| {
                let bound = trust.is_bound_archiver(&cert.device_id, &cert.signature_key);
                let (state, role) = match (cert.user == RECORDS_USER, &trust.public, bound) {
                    (false, _, _) if !mirror.state.upgrade_done => {
                        (MemberDeviceState::Unchecked, None)
                    }
                    (false, _, _) => (
                        MemberDeviceState::Directory(mirror.state.vouch(
                            &cert.user,
                            &cert.device_id,
                            &cert.signature_key,
                        )),
                        None,
                    ),
                    (true, Some(public), true) => (
                        MemberDeviceState::RecordsArchive,
                        Some(crate::trust::archive_label(public)),
                    ),
                    (true, _, _) => (
                        MemberDeviceState::NotBoundArchiver,
                        Some("NOT the archiver the records custodians bound".to_owned()),
                    ),
                };
                MemberDevice {
                    fingerprint: device_fingerprint(&cert.signature_key),
                    role: role.or_else(|| admin(&cert.user)),
                    user: cert.user,
                    device_id: cert.device_id,
                    state,
                }
            })
            .collect())
    }

    /// Creates a chat titled `title` with every device of `with` (and this user's other
    /// devices), with default timers `timers`. Where the org requires an expiration timer and
    /// none is given, the org's maximum is the chat's default.
    /// A record chat gets the org's archiver as a member in its first commit; `class` `None`
    /// takes the org's default.
    pub async fn create_chat(
        &mut self,
        title: &str,
        with: &[String],
        timers: ChatPolicy,
        class: Option<ChatClass>,
    ) -> Result<String, Error> {
        let _held = self.lock.hold()?;
        crate::names::check_title(&self.store.chats()?, title, None)?;
        // Fresh, not cached: a records init or a first unseal moments ago must count here.
        let org = self.refresh_trust().await?;
        let mut policy = timers;
        if policy.expire_secs.is_none() && !org.allow_no_expiry {
            policy.expire_secs = org.max_expire_secs;
        }
        policy.check(&org).map_err(|e| Error::Invalid(e.0))?;
        let configured = org.records_public.is_some();
        let record = match class {
            Some(ChatClass::Record) if !configured => return Err(Error::Invalid(
                "records are not configured for this organisation (the admin runs `records init`)"
                    .into(),
            )),
            Some(ChatClass::Transitory) if configured && !org.allow_transitory => {
                return Err(Error::Invalid(
                    "this organisation keeps every chat as records".into(),
                ))
            }
            Some(class) => class == ChatClass::Record,
            None => configured && (org.default_record || !org.allow_transitory),
        };
        let archiver = match record {
            true => Some(self.archiver_for_new_chat(&org)?),
            false => None,
        };
        check_not_archiver(with)?;
        // Every device encrypted to is checked against a fresh cosigned checkpoint.
        self.refresh_directory().await?;
        self.check_identities(with)?;
        // Claim first: an unknown user or a missing key package must leave no chat behind.
        let mut users = with.to_vec();
        users.push(self.user.clone());
        // Its creator is its admin (issue 10).
        let mut extensions = vellum_mls::ChatSettings::new(&self.user)
            .to_extensions(policy.to_extensions(ExtensionList::new()));
        if let Some(archiver) = &archiver {
            extensions = RecordChat::new(&archiver.archiver_device).add_to(extensions);
        }
        let key_packages = self.claim(users, archiver.as_ref()).await?;
        let mut group = self
            .mls
            .create_group(extensions, Default::default(), None)?;
        let info = group.group_info_message(true)?.to_bytes()?;
        let created: GroupCreated = self
            .request(
                Method::POST,
                "/v1/groups",
                Some(&CreateGroup {
                    group_info: info.into(),
                }),
            )
            .await?;
        let group_id = created.group_id;
        self.store.begin()?;
        let saved = group
            .write_to_storage()
            .map_err(Error::from)
            .and_then(|_| self.store.add_chat(&group_id, Some(title), now_millis()))
            .and_then(|_| {
                self.record_event(&group_id, Some(0), "", class_notice(archiver.is_some()))
            })
            .and_then(|_| {
                self.record_policy_event(
                    &group_id,
                    Some(0),
                    &self.user.clone(),
                    policy,
                    ChatPolicy::default(),
                )
            });
        self.finish_tx(saved)?;
        self.add_key_packages(&group_id, key_packages).await?;
        self.send_payload(
            &group_id,
            AppPayload::ChatInfo {
                title: title.to_owned(),
            },
            None,
            None,
        )
        .await?;
        Ok(group_id)
    }

    /// Adds every device of `users` who are not members yet; returns those who already were
    /// (nothing is committed for them: their new devices join through approval).
    pub async fn add_members(
        &mut self,
        chat: &str,
        users: &[String],
    ) -> Result<Vec<String>, Error> {
        let _held = self.lock.hold()?;
        let group_id = self.resolve_chat(chat)?;
        check_not_archiver(users)?;
        self.require_manager(&group_id, crate::Manage::Members)?;
        let present: Vec<String> = members(&self.load_group(&group_id)?, &self.identity)?
            .into_iter()
            .map(|m| m.user)
            .collect();
        let (already, users): (Vec<String>, Vec<String>) =
            users.iter().cloned().partition(|u| present.contains(u));
        if users.is_empty() {
            return Ok(already);
        }
        self.refresh_directory().await?;
        self.check_identities(&users)?;
        self.switch_archiver_if_needed(&group_id).await?;
        let key_packages = self.claim(users.to_vec(), None).await?;
        self.add_key_packages(&group_id, key_packages).await?;
        if let Some(title) = self.store.chat(&group_id)?.and_then(|c| c.title) {
            // Newcomers learn the title from the members, never from the server.
            self.send_payload(&group_id, AppPayload::ChatInfo { title }, None, None)
                .await?;
        }
        Ok(already)
    }

    /// One key package for every device of `users` (but this one), and one of `archiver`'s
    /// device. Each is checked to belong to the device the server says it does; a device of
    /// `records` other than the bound archiver is refused, whatever the server hands out.
    pub(crate) async fn claim(
        &self,
        mut users: Vec<String>,
        archiver: Option<&vellum_record::ArchiverBinding>,
    ) -> Result<Vec<(String, MlsMessage)>, Error> {
        users.sort();
        users.dedup();
        let request = ClaimKeyPackages {
            users,
            devices: archiver
                .map(|a| a.archiver_device.clone())
                .into_iter()
                .collect(),
        };
        let claimed: ClaimedKeyPackages = self
            .request(Method::POST, "/v1/key-packages/claim", Some(&request))
            .await?;
        self.check_claimed(&request, claimed, archiver)
    }

    /// Takes a claim answer's key packages only if each is of a device asked for, once, that
    /// is what the server says it is, and that the org's trust vouches for: the bound
    /// archiver for `records`, the key directory copy for everyone else (refreshed by the
    /// caller). Anything else refuses the whole answer.
    pub(crate) fn check_claimed(
        &self,
        request: &ClaimKeyPackages,
        claimed: ClaimedKeyPackages,
        archiver: Option<&vellum_record::ArchiverBinding>,
    ) -> Result<Vec<(String, MlsMessage)>, Error> {
        let trust = self.records_trust()?;
        let mut directory = None;
        let mut out = Vec::with_capacity(claimed.key_packages.len());
        for kp in claimed.key_packages {
            let message = vellum_mls::key_package_message(&kp.key_package)?;
            let owner = message
                .as_key_package()
                .map(|k| self.identity.certificate(k.signing_identity()))
                .transpose()?
                .ok_or_else(|| Error::Invalid("not a key package".into()))?;
            if owner.device_id != kp.device_id || owner.user != kp.user {
                return Err(Error::Invalid(format!(
                    "the server handed out a key package of device {} of {} as one of {}",
                    owner.device_id, owner.user, kp.device_id
                )));
            }
            if owner.user == RECORDS_USER
                && !trust.is_bound_archiver(&owner.device_id, &owner.signature_key)
            {
                tracing::error!(device = %owner.device_id, "refusing a key package of a records device that is not the bound archiver");
                return Err(Error::Invalid(format!(
                    "the server handed out a key package of device {} of user records, which is not the archiver the custodians bound: refused",
                    owner.device_id
                )));
            }
            // Only the users asked for (and the bound archiver, asked for by device), each
            // device once: a key package slipped into the answer adds no reader (issue 9).
            if !asked_for(request, &owner.user, &owner.device_id)
                || out.iter().any(|(d, _)| *d == owner.device_id)
            {
                return Err(Error::Invalid(format!(
                    "the server handed out a key package of device {} of {} that this device did not ask for: refused, nothing was committed",
                    owner.device_id, owner.user
                )));
            }
            // Only a device the user's identity approved (issue 9): a certificate from the
            // org key alone vouches for nothing.
            if owner.user != RECORDS_USER {
                if directory.is_none() {
                    directory = Some(self.directory()?);
                }
                let mirror = directory.as_ref().expect("loaded above");
                let vouch = mirror
                    .state
                    .vouch(&owner.user, &owner.device_id, &owner.signature_key);
                if !vouch.is_vouched() {
                    return Err(Error::Directory(format!(
                        "the server handed out a key package of {}'s device {}, which the key directory does not vouch for ({}): refused, nothing was committed",
                        owner.user,
                        owner.device_id,
                        vouch.reason()
                    )));
                }
            }
            out.push((kp.device_id, message));
        }
        if let Some(archiver) = archiver {
            if !out.iter().any(|(d, _)| *d == archiver.archiver_device) {
                return Err(Error::Invalid(
                    "the server handed out no key package of the bound archiver".into(),
                ));
            }
        }
        Ok(out)
    }

    /// Adds the devices of `key_packages` that are not in the chat yet.
    pub(crate) async fn add_key_packages(
        &mut self,
        group_id: &str,
        key_packages: Vec<(String, MlsMessage)>,
    ) -> Result<(), Error> {
        let identity = self.identity.clone();
        self.commit_with_rebase(group_id, true, move |group| {
            let present: Vec<String> = roster(group, &identity)?
                .into_iter()
                .map(|(_, c)| c.device_id)
                .collect();
            let mut builder = group.commit_builder();
            let mut any = false;
            for (device_id, kp) in &key_packages {
                if !present.contains(device_id) {
                    builder = builder.add_member(kp.clone())?;
                    any = true;
                }
            }
            Ok(if any { Some(builder.build()?) } else { None })
        })
        .await
    }

    /// Removes every device of `users` from the chat.
    pub async fn remove_members(&mut self, chat: &str, users: &[String]) -> Result<(), Error> {
        let _held = self.lock.hold()?;
        let group_id = self.resolve_chat(chat)?;
        // Anyone may take their own other devices out; others only an admin.
        if users.iter().any(|u| *u != self.user) {
            self.require_manager(&group_id, crate::Manage::Members)?;
        }
        self.switch_archiver_if_needed(&group_id).await?;
        let identity = self.identity.clone();
        let me = self.device_id.clone();
        let me_user = self.user.clone();
        let users = users.to_vec();
        {
            let group = self.load_group(&group_id)?;
            let members = roster(&group, &identity)?;
            for user in &users {
                if !members.iter().any(|(_, c)| &c.user == user) {
                    return Err(Error::Invalid(format!(
                        "{user} is not a member of this chat"
                    )));
                }
            }
            let my_other_devices = members
                .iter()
                .filter(|(_, c)| c.user == me_user && c.device_id != me)
                .count();
            if users.iter().all(|u| *u == me_user) && my_other_devices == 0 {
                return Err(Error::Invalid(
                    "removing yourself takes out only your other devices, and this chat has none: \
                     to leave it, run `vellum chat leave CHAT`"
                        .into(),
                ));
            }
        }
        self.commit_with_rebase(&group_id, true, move |group| {
            let members = roster(group, &identity)?;
            // A removed admin is no admin any more: re-added later, they come back as a
            // member (issue 10 review). The committer stays, so an admin remains.
            let context_before = group.context().extensions.clone();
            let mut settings = ChatSettings::from_extensions(&context_before)?;
            let admins_before = settings.admins.len();
            settings.admins.retain(|a| {
                !users
                    .iter()
                    .any(|u| u.as_bytes() == a.as_slice() && *u != me_user)
            });
            let mut builder = group.commit_builder();
            let mut any = false;
            for (index, cert) in members {
                if users.contains(&cert.user) && cert.device_id != me {
                    builder = builder.remove_member(index)?;
                    any = true;
                }
            }
            if any && settings.admins.len() != admins_before {
                builder = builder.set_group_context_ext(settings.to_extensions(context_before))?;
            }
            Ok(if any { Some(builder.build()?) } else { None })
        })
        .await
    }

    /// Makes a transitory chat a record chat, as the server demands (`record_required`)
    /// once the org keeps every chat as records: one commit sets the record-chat extension
    /// and adds the org's archiver. Every member sees it as an event before their next
    /// message goes out; what was said before stays unarchived, and the event says so.
    /// Nothing to do if another member converted it first.
    pub(crate) async fn convert_to_record(&mut self, group_id: &str) -> Result<(), Error> {
        // The catch-up syncs below must not resend this device's unconfirmed messages into
        // the chat before it is converted: the send that asked for the conversion resends.
        let flushing = std::mem::replace(&mut self.flushing, true);
        let converted = self.commit_conversion(group_id).await;
        self.flushing = flushing;
        if !converted? {
            return Ok(());
        }
        if let Some(title) = self.store.chat(group_id)?.and_then(|c| c.title) {
            // The archiver learns the title from the members, as any newcomer does.
            self.send_payload(group_id, AppPayload::ChatInfo { title }, None, None)
                .await?;
        }
        Ok(())
    }

    /// The conversion commit; false if the chat was a record chat already.
    async fn commit_conversion(&mut self, group_id: &str) -> Result<bool, Error> {
        let org = self.refresh_trust().await?;
        let binding = self.archiver_for_new_chat(&org)?;
        let archiver = binding.archiver_device.clone();
        self.sync_quiet().await?;
        if self.chat_class(group_id)? == ChatClass::Record {
            return Ok(false);
        }
        let key_package = self
            .claim(Vec::new(), Some(&binding))
            .await?
            .into_iter()
            .find(|(device, _)| *device == archiver)
            .map(|(_, kp)| kp)
            .ok_or_else(|| {
                Error::Invalid("the org's archiver has no key package on the server".into())
            })?;
        let identity = self.identity.clone();
        let mut converted = false;
        self.commit_with_rebase(group_id, false, |group| {
            converted = false;
            if RecordChat::archiver(&group.context().extensions)?.is_some() {
                return Ok(None); // another member converted it meanwhile
            }
            let present = roster(group, &identity)?
                .into_iter()
                .any(|(_, c)| c.device_id == archiver);
            let extensions = RecordChat::new(&archiver).add_to(group.context().extensions.clone());
            let mut builder = group.commit_builder().set_group_context_ext(extensions)?;
            if !present {
                builder = builder.add_member(key_package.clone())?;
            }
            converted = true;
            Ok(Some(builder.build()?))
        })
        .await?;
        Ok(converted)
    }

    /// Whether the chat is kept as records, from its GroupContext.
    pub fn chat_class(&self, chat: &str) -> Result<ChatClass, Error> {
        let group = self.load_group(&self.resolve_chat(chat)?)?;
        Ok(match RecordChat::archiver(&group.context().extensions)? {
            Some(_) => ChatClass::Record,
            None => ChatClass::Transitory,
        })
    }

    /// The org's bounds on timers, as the server enforces them.
    pub async fn org_policy(&self) -> Result<OrgPolicy, Error> {
        self.request(Method::GET, "/v1/policy", None::<&()>).await
    }

    /// The chat's current default timers, from this device's MLS GroupContext.
    pub fn chat_policy(&self, chat: &str) -> Result<ChatPolicy, Error> {
        let group = self.load_group(&self.resolve_chat(chat)?)?;
        Ok(ChatPolicy::from_extensions(&group.context().extensions)?)
    }

    /// Changes the chat's default timers (`None` leaves one as it is; `Some(None)` switches it
    /// off). Every member agrees to it through the commit; the server checks the org's bounds.
    pub async fn set_timers(
        &mut self,
        chat: &str,
        expire: Option<Option<u64>>,
        burn: Option<Option<u64>>,
    ) -> Result<ChatPolicy, Error> {
        let _held = self.lock.hold()?;
        if expire.is_none() && burn.is_none() {
            return Err(Error::Invalid(
                "say which timer to set: --expire or --burn-on-read".into(),
            ));
        }
        let group_id = self.resolve_chat(chat)?;
        self.require_manager(&group_id, crate::Manage::Timers)?;
        self.switch_archiver_if_needed(&group_id).await?;
        let org = self.org_policy().await?;
        let before = self.chat_policy(&group_id)?;
        let wanted = ChatPolicy {
            expire_secs: expire.unwrap_or(before.expire_secs),
            burn_secs: burn.unwrap_or(before.burn_secs),
        };
        wanted.check(&org).map_err(|e| Error::Invalid(e.0))?;
        // The change shows as an event once the commit comes back through sync.
        self.commit_with_rebase(&group_id, true, move |group| {
            if ChatPolicy::from_extensions(&group.context().extensions)? == wanted {
                return Ok(None);
            }
            let extensions = wanted.to_extensions(group.context().extensions.clone());
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

    /// "alice set messages to disappear after 1 day", in the chat's history.
    pub(crate) fn record_policy_event(
        &self,
        group_id: &str,
        seq: Option<u64>,
        who: &str,
        policy: ChatPolicy,
        before: ChatPolicy,
    ) -> Result<(), Error> {
        if policy == before {
            return Ok(());
        }
        let event = ChatEvent::TimersChanged {
            by: who.to_owned(),
            expire_secs: policy.expire_secs,
            burn_secs: policy.burn_secs,
            before: Some(crate::events::TimerSettings {
                expire_secs: before.expire_secs,
                burn_secs: before.burn_secs,
            }),
        };
        self.typed_event_row(group_id, seq, who, event).map(|_| ())
    }

    /// An event at `seq`, the log position of what caused it, so history shows it in order.
    pub(crate) fn record_event(
        &self,
        group_id: &str,
        seq: Option<u64>,
        who: &str,
        text: &str,
    ) -> Result<(), Error> {
        self.event_row(group_id, seq, who, text).map(|_| ())
    }

    /// [`Client::record_event`], returning the row (for `sync` to show it at once).
    pub(crate) fn event_row(
        &self,
        group_id: &str,
        seq: Option<u64>,
        who: &str,
        text: &str,
    ) -> Result<MessageRow, Error> {
        let notice = ChatEvent::Notice {
            text: text.to_owned(),
        };
        self.typed_event_row(group_id, seq, who, notice)
    }

    /// Records `event` in the chat's history at `seq`, with its sentence as the row's text.
    pub(crate) fn typed_event_row(
        &self,
        group_id: &str,
        seq: Option<u64>,
        who: &str,
        event: ChatEvent,
    ) -> Result<MessageRow, Error> {
        let now = now_millis();
        // An event of a log entry is as old as the entry, not as its processing.
        let at = self.entry_time.unwrap_or(now);
        let row = MessageRow {
            group_id: group_id.to_owned(),
            id: random_id(),
            kind: MessageKind::Event,
            sender_user: who.to_owned(),
            sender_device: String::new(),
            sent_at: at,
            received_at: at,
            seq,
            text: event.text(),
            expires_at: None,
            burn_secs: None,
            read_at: Some(now),
            burn_at: None,
            archived_leaf: None,
            salt: None,
            event: Some(event),
            extra: Default::default(),
        };
        self.store.add_message(&row)?;
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_9_a_fingerprint_is_16_bytes_of_the_keys_sha256_in_groups_of_four() {
        // SHA-256 of 32 zero bytes: 66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925.
        assert_eq!(
            device_fingerprint(&[0u8; 32]),
            "6668 7aad f862 bd77 6c8f c18b 8e9f 8e20"
        );
        assert_ne!(
            device_fingerprint(&[1u8; 32]),
            device_fingerprint(&[0u8; 32])
        );
    }

    /// Issue 9 finding: a proxy appended a foreign key package to a claim answer and the
    /// client added it. Only what was asked for is taken.
    #[test]
    fn issue9_a_key_package_nobody_asked_for_is_refused() {
        let request = ClaimKeyPackages {
            users: vec!["bob".into(), "carol".into()],
            devices: vec!["archiver-1".into()],
        };
        assert!(asked_for(&request, "bob", "b2"));
        assert!(asked_for(&request, "carol", "c1"));
        assert!(asked_for(&request, RECORDS_USER, "archiver-1"));
        assert!(
            !asked_for(&request, "mallory", "m1"),
            "a user not asked for"
        );
        assert!(
            !asked_for(&request, RECORDS_USER, "archiver-2"),
            "another device of records"
        );
        let none = ClaimKeyPackages {
            users: vec![],
            devices: vec![],
        };
        assert!(!asked_for(&none, "bob", "b1"));
    }
}
