//! Records trust on the device (issue 8): `records.pub` pinned at first sight, the
//! custodians' binding verified against it, and the one answer to "which device is the
//! archiver" ([`Client::bound_archiver`]): the device the binding names, with its identity
//! key. No other device of the user `records` is ever added, claimed or accepted.
//!
//! `records.pub` is pinned at enrollment, or at the first sync that sees it when `records
//! init` runs later. Afterwards only its version 1 → 2 upgrade of the same key and shares
//! is taken; any other change is refused, and shown loudly in every chat once per change.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use vellum_record::{unbound_archiver, ArchiverBinding, RecordsPublic, SignedBinding};
use vellum_wire::{OrgPolicy, RECORDS_USER};

use vellum_mls::{roster, RecordChat};

use crate::{Client, Error};

const RECORDS_PUBLIC: &str = "records_public";
const RECORDS_BINDING: &str = "records_binding";
/// SHA-256 of the last `records.pub` refused, so each change is announced once.
const RECORDS_REFUSED: &str = "records_public_refused";

/// A long-running client (`watch`) looks at the org's records trust this often; each CLI
/// command, a process of its own, looks once.
pub(crate) const TRUST_REFRESH: Duration = Duration::from_secs(30);

/// What the device trusts about the org's records.
#[derive(Debug, Clone, Default)]
pub struct RecordsTrust {
    /// The pinned `records.pub`.
    pub public: Option<RecordsPublic>,
    /// The custodians' newest binding this device has seen, verified against `public`.
    pub binding: Option<ArchiverBinding>,
}

impl RecordsTrust {
    /// Whether `device_id` with `signature_key` is the archiver the custodians bound.
    pub fn is_bound_archiver(&self, device_id: &str, signature_key: &[u8]) -> bool {
        self.binding
            .as_ref()
            .is_some_and(|b| b.archiver_device == device_id && b.identity_bytes() == signature_key)
    }
}

/// How the device calls the archiver in `chat members`.
pub fn archive_label(public: &RecordsPublic) -> String {
    format!(
        "records archive (sealed, {} of {} custodians)",
        public.threshold, public.custodians
    )
}

impl Client {
    /// The records trust as this device holds it (no network).
    pub fn records_trust(&self) -> Result<RecordsTrust, Error> {
        let text = |key: &str| -> Result<Option<String>, Error> {
            Ok(self
                .store
                .profile_get(key)?
                .map(|b| String::from_utf8_lossy(&b).into_owned()))
        };
        let public = text(RECORDS_PUBLIC)?
            .map(|t| RecordsPublic::parse(&t))
            .transpose()
            .map_err(|e| Error::Store(format!("the pinned records.pub: {e}")))?;
        let binding = match (&public, text(RECORDS_BINDING)?) {
            (Some(_), Some(b)) => Some(
                SignedBinding::parse(&b)
                    .and_then(|b| b.stored_statement())
                    .map_err(|e| Error::Store(format!("the stored binding: {e}")))?,
            ),
            _ => None,
        };
        Ok(RecordsTrust { public, binding })
    }

    /// The archiver the custodians bound: the only device of `records` this device adds to
    /// a chat, claims a key package of, or accepts in one. `None` before the binding.
    pub fn bound_archiver(&self) -> Result<Option<ArchiverBinding>, Error> {
        Ok(self.records_trust()?.binding)
    }

    /// The archiver a new record chat names: the device the custodians bound, if it is still
    /// the org's archiver. Until k custodians have unsealed (and so bound) it, the error
    /// names that step.
    pub(crate) fn archiver_for_new_chat(&self, org: &OrgPolicy) -> Result<ArchiverBinding, Error> {
        let trust = self.records_trust()?;
        let Some(public) = &trust.public else {
            return Err(Error::Invalid(
                "the organisation's records.pub was refused by this device (see the warning in your chats): no record chat can be created".into(),
            ));
        };
        match trust.binding {
            None => Err(Error::Invalid(unbound_archiver(public.threshold))),
            Some(b) if org.archiver_device.as_deref() != Some(b.archiver_device.as_str()) => {
                Err(Error::Invalid(format!(
                    "the archiver was replaced and the new one is not bound yet: {}",
                    unbound_archiver(public.threshold)
                )))
            }
            Some(b) => Ok(b),
        }
    }

    /// Switches a record chat that still names an archiver the custodians no longer bind (a
    /// replaced one) to the bound archiver, before this device sends or commits in it: one
    /// commit names the new archiver, adds it and removes every other device of `records`,
    /// so that what is said from then on is archived. Nothing to do for any other chat.
    pub(crate) async fn switch_archiver_if_needed(&mut self, group_id: &str) -> Result<(), Error> {
        if self.sink.is_some() {
            return Ok(());
        }
        let named = RecordChat::archiver(&self.load_group(group_id)?.context().extensions)?;
        let (Some(named), Some(bound)) = (named, self.bound_archiver()?) else {
            return Ok(());
        };
        if named == bound.archiver_device {
            return Ok(());
        }
        // The server takes the switch only once the bound archiver is the enrolled one.
        let org = self.org_policy().await?;
        if org.archiver_device.as_deref() != Some(bound.archiver_device.as_str()) {
            return Ok(());
        }
        let key_packages = self.claim(Vec::new(), Some(&bound)).await?;
        let identity = self.identity.clone();
        let device = bound.archiver_device.clone();
        tracing::info!(chat = group_id, from = %named, to = %device, "switching the chat to the bound archiver");
        self.commit_with_rebase(group_id, false, move |group| {
            if RecordChat::archiver(&group.context().extensions)?.as_deref() == Some(&device) {
                return Ok(None); // another member switched it first
            }
            let members = roster(group, &identity)?;
            let named = RecordChat::new(&device).add_to(group.context().extensions.clone());
            let mut builder = group.commit_builder().set_group_context_ext(named)?;
            if !members.iter().any(|(_, c)| c.device_id == device) {
                for (_, kp) in &key_packages {
                    builder = builder.add_member(kp.clone())?;
                }
            }
            for (index, cert) in &members {
                if cert.user == RECORDS_USER && cert.device_id != device {
                    builder = builder.remove_member(*index)?;
                }
            }
            Ok(Some(builder.build()?))
        })
        .await
    }

    /// Fetches the org's policy and takes what it says about records: pins `records.pub` at
    /// first sight, takes a newer binding that verifies against it (an event in every record
    /// chat), and refuses (loudly) a changed records key or a binding of another. Returns the
    /// policy.
    pub(crate) async fn refresh_trust(&mut self) -> Result<OrgPolicy, Error> {
        let policy = self.org_policy().await?;
        self.apply_trust(&policy)?;
        self.trust_checked = Some(Instant::now());
        self.trust_fresh = true;
        Ok(policy)
    }

    /// Refreshes unless done within [`TRUST_REFRESH`] (the archiver's own device never
    /// does: it holds `records.pub` itself). Returns the policy when it fetched it.
    pub(crate) async fn refresh_trust_if_due(&mut self) -> Result<Option<OrgPolicy>, Error> {
        if self.sink.is_some()
            || self
                .trust_checked
                .is_some_and(|t| t.elapsed() < TRUST_REFRESH)
        {
            return Ok(None);
        }
        self.refresh_trust().await.map(Some)
    }

    fn apply_trust(&self, policy: &OrgPolicy) -> Result<(), Error> {
        let Some(offered) = &policy.records_public else {
            return Ok(());
        };
        let pinned = self.records_trust()?.public;
        let public = match (pinned, RecordsPublic::parse(offered)) {
            (_, Err(e)) => {
                self.refuse_public(offered, &format!("it does not parse ({e})"))?;
                return Ok(());
            }
            (None, Ok(first)) => {
                self.store.profile_set(RECORDS_PUBLIC, offered.as_bytes())?;
                first
            }
            (Some(pinned), Ok(offered_public)) if pinned == offered_public => pinned,
            (Some(pinned), Ok(upgraded))
                if pinned.version == 1 && upgraded.version == 2 && upgraded.same_key(&pinned) =>
            {
                // Only the custodians' unseal can make version 2 (the binding key comes
                // from the seed), and the key and shares are the ones pinned.
                self.store.profile_set(RECORDS_PUBLIC, offered.as_bytes())?;
                upgraded
            }
            (Some(pinned), Ok(_)) => {
                let why = format!(
                    "it is not the pinned records key ({} of {} custodians) or its upgrade",
                    pinned.threshold, pinned.custodians
                );
                self.refuse_public(offered, &why)?;
                pinned
            }
        };
        let Some(text) = &policy.records_binding else {
            return Ok(());
        };
        let seen = self.records_trust()?.binding;
        let verified = SignedBinding::parse(text).and_then(|b| {
            let statement = b.verify(&public)?;
            Ok((b, statement))
        });
        match verified {
            Err(e) => {
                tracing::error!(error = %e, "the server's archiver binding is not signed by the custodians of the pinned records.pub: no archiver is trusted from it");
                self.warn_everywhere(&format!(
                    "WARNING: the server offers an archiver binding that the records custodians did not sign ({e}); it is refused"
                ), text)?;
            }
            Ok((_, statement)) if seen.as_ref().is_some_and(|s| s.serial > statement.serial) => {
                tracing::error!(
                    serial = statement.serial,
                    "the server offers an older archiver binding than this device has seen; kept the newer"
                );
            }
            Ok((signed, statement))
                if seen.as_ref().is_none_or(|s| s.serial < statement.serial) =>
            {
                self.store.begin()?;
                let saved = self
                    .store
                    .profile_set(RECORDS_BINDING, signed.to_json().as_bytes())
                    .and_then(|_| self.announce_binding(&statement, seen.as_ref(), &public));
                self.finish_tx(saved)?;
            }
            Ok(_) => {}
        }
        Ok(())
    }

    /// "The custodians bound the records archive …" in every record chat.
    fn announce_binding(
        &self,
        statement: &ArchiverBinding,
        before: Option<&ArchiverBinding>,
        public: &RecordsPublic,
    ) -> Result<(), Error> {
        let quorum = format!("{} of {} custodians", public.threshold, public.custodians);
        let text = match before {
            Some(before) if before.archiver_device != statement.archiver_device => format!(
                "The records archiver was replaced: {quorum} bound device {} in place of {} (binding {})",
                statement.archiver_device, before.archiver_device, statement.serial
            ),
            Some(_) => format!(
                "The records archive's binding changed ({quorum}, binding {}): log key or witnesses",
                statement.serial
            ),
            None => format!(
                "The records archive is bound by {quorum} to device {} (binding {})",
                statement.archiver_device, statement.serial
            ),
        };
        for chat in self.record_chats()? {
            self.record_event(&chat, None, "", &text)?;
        }
        Ok(())
    }

    /// The chats this device is in that are kept as records.
    fn record_chats(&self) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        for chat in self.store.chats()?.into_iter().filter(|c| !c.removed) {
            let group = self.load_group(&chat.group_id)?;
            if vellum_mls::RecordChat::archiver(&group.context().extensions)?.is_some() {
                out.push(chat.group_id);
            }
        }
        Ok(out)
    }

    fn refuse_public(&self, offered: &str, why: &str) -> Result<(), Error> {
        tracing::error!(%why, "refusing a changed records.pub");
        self.warn_everywhere(
            &format!("WARNING: the server offers another records.pub than the one this device pinned: {why}. It is refused; records trust stays with the pinned key"),
            offered,
        )
    }

    /// A loud event in every chat (record chats above all, but a records key concerns every
    /// one), once per distinct `cause`.
    fn warn_everywhere(&self, text: &str, cause: &str) -> Result<(), Error> {
        // Every cause warned of is remembered (a changed records.pub and the binding it
        // comes with are two, offered at every sync): each is shown once.
        let digest = hex::encode(Sha256::digest(cause.as_bytes()));
        let mut warned = self
            .store
            .profile_get(RECORDS_REFUSED)?
            .map(|d| String::from_utf8_lossy(&d).into_owned())
            .unwrap_or_default();
        if warned.split(',').any(|d| d == digest) {
            return Ok(());
        }
        if !warned.is_empty() {
            warned.push(',');
        }
        warned.push_str(&digest);
        self.store.begin()?;
        let saved = (|| {
            for chat in self.store.chats()?.into_iter().filter(|c| !c.removed) {
                self.record_event(&chat.group_id, None, "", text)?;
            }
            self.store.profile_set(RECORDS_REFUSED, warned.as_bytes())
        })();
        self.finish_tx(saved)
    }

    /// Why a device of `records` in `members` may not be there: it is not the bound
    /// archiver (nor `also`, the archiver a record chat already names). `None`: all are.
    pub(crate) fn stray_archiver(
        &self,
        members: &[vellum_mls::DeviceCertificate],
        also: Option<&str>,
    ) -> Result<Option<String>, Error> {
        let trust = self.records_trust()?;
        for m in members.iter().filter(|m| m.user == RECORDS_USER) {
            if trust.is_bound_archiver(&m.device_id, &m.signature_key)
                || also == Some(m.device_id.as_str())
            {
                continue;
            }
            return Ok(Some(format!(
                "device {} of user records is not the archiver the custodians bound{}",
                m.device_id,
                match &trust.binding {
                    Some(b) => format!(" (that is device {})", b.archiver_device),
                    None => " (none is bound yet)".into(),
                }
            )));
        }
        Ok(None)
    }
}
