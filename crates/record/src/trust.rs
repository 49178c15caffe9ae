//! What an outsider needs to trust the archive: `records.pub`, and the custodians' binding
//! of one archiver to it.
//!
//! `records init` writes `records.pub`. Version 2 adds the organisation's stable log origin
//! and a binding key, an Ed25519 key derived from the records seed, so only k custodians
//! together can sign with it. At the first unseal the archiver signs, with that key, a
//! [`ArchiverBinding`] naming its device, its identity key, its log key and its witnesses.
//! Devices and auditors accept only what a binding verified against `records.pub` names.

use base64::{engine::general_purpose::STANDARD, Engine};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use vellum_tlog::cosignature::CosignatureVerifier;
use vellum_tlog::NoteVerifier;

/// The newest `records.pub` format this build writes.
pub const RECORDS_PUBLIC_VERSION: u32 = 2;
/// The newest binding statement format this build writes.
pub const BINDING_VERSION: u32 = 1;
/// Prefixed to a statement's bytes before signing: a binding signature can never be taken
/// for any other signature made with a key derived from the records seed.
pub const BINDING_CONTEXT: &[u8] = b"vellum-archiver-binding-v1\n";

const MAX_WITNESSES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("records.pub is malformed: {0}")]
    MalformedPublic(String),
    #[error("the archiver binding is malformed: {0}")]
    MalformedBinding(String),
    #[error(
        "records.pub version 1 has no binding key: the custodians have not bound an archiver to it"
    )]
    Unbindable,
    #[error("the archiver binding is not signed by this records.pub's custodians")]
    BadSignature,
    #[error("{0}")]
    NotBound(String),
}

/// The archiver and log the org's custodians bound, from what the server publishes in the
/// org policy (`records.pub` and the signed binding), for a holder who already trusts that
/// `records.pub` (the server, which checked it when it was stored; tests). Devices never
/// take the policy's `records.pub` on trust: they verify against the one they pinned
/// (`vellum_client`'s `bound_archiver`).
pub fn bound_log(policy: &vellum_wire::OrgPolicy) -> Result<ArchiverBinding, TrustError> {
    let public = policy.records_public.as_deref().ok_or_else(|| {
        TrustError::NotBound("records are not configured for this organisation".into())
    })?;
    let public = RecordsPublic::parse(public)?;
    let signed = policy.records_binding.as_deref().ok_or_else(|| {
        TrustError::NotBound(
            "the custodians have not bound an archiver yet (it happens at the first `records unseal`)"
                .into(),
        )
    })?;
    let binding = SignedBinding::parse(signed)?.verify(&public)?;
    if policy.archiver_device.as_deref() != Some(binding.archiver_device.as_str()) {
        return Err(TrustError::MalformedBinding(format!(
            "it binds device {} but the server names {} as the archiver",
            binding.archiver_device,
            policy.archiver_device.as_deref().unwrap_or("no device")
        )));
    }
    Ok(binding)
}

/// `records.pub`: the records key's public half, a commitment to every share, and (version 2)
/// the log's origin and the custodians' binding key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsPublic {
    pub version: u32,
    /// HPKE public key (X25519), base64.
    pub public_key: String,
    pub threshold: u8,
    pub custodians: u8,
    /// SHA-256 of each share's bytes, hex, by share index (1-based).
    pub share_hashes: Vec<String>,
    /// Version 2: the log's origin (C2SP checkpoint origin line), chosen by the organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Version 2: Ed25519 public key (base64) derived from the records seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_key: Option<String>,
}

impl RecordsPublic {
    pub fn parse(json: &str) -> Result<Self, TrustError> {
        let bad = |m: &str| TrustError::MalformedPublic(m.into());
        let public: Self =
            serde_json::from_str(json).map_err(|e| TrustError::MalformedPublic(e.to_string()))?;
        if public.threshold < 2
            || public.threshold > public.custodians
            || public.share_hashes.len() != public.custodians as usize
        {
            return Err(bad("inconsistent threshold, custodians or hashes"));
        }
        if public.key_bytes()?.len() != 32 {
            return Err(bad("public_key must be a 32-byte X25519 key"));
        }
        match (public.version, &public.origin, &public.binding_key) {
            (1, None, None) => {}
            (2, Some(origin), Some(_)) => {
                check_origin(origin).map_err(TrustError::MalformedPublic)?;
                public.binding_verifying_key()?;
            }
            (1 | 2, _, _) => {
                return Err(bad(
                    "version 1 has neither origin nor binding_key; version 2 has both",
                ))
            }
            (v, _, _) => {
                return Err(TrustError::MalformedPublic(format!(
                    "version {v} is newer than this build reads (up to {RECORDS_PUBLIC_VERSION}); upgrade Vellum"
                )))
            }
        }
        Ok(public)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("records.pub serialises") + "\n"
    }

    pub fn key_bytes(&self) -> Result<Vec<u8>, TrustError> {
        STANDARD
            .decode(&self.public_key)
            .map_err(|_| TrustError::MalformedPublic("public_key is not base64".into()))
    }

    /// Whether `other` is this records key with the same shares: what a device that pinned
    /// version 1 accepts as its upgrade to version 2 (the custodians' unseal made it).
    pub fn same_key(&self, other: &RecordsPublic) -> bool {
        self.public_key == other.public_key
            && self.threshold == other.threshold
            && self.custodians == other.custodians
            && self.share_hashes == other.share_hashes
    }

    fn binding_verifying_key(&self) -> Result<VerifyingKey, TrustError> {
        let key = self.binding_key.as_deref().ok_or(TrustError::Unbindable)?;
        STANDARD
            .decode(key)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            .ok_or_else(|| TrustError::MalformedPublic("binding_key is not an Ed25519 key".into()))
    }
}

/// What refuses a record chat until the custodians have bound the archiver: the step to take.
pub fn unbound_archiver(threshold: u8) -> String {
    format!(
        "the custodians have not bound the archiver to the records key yet: {threshold} custodians must each run `vellum records --archiver URL --token-file FILE unseal --share FILE` (the first unseal binds it; `records seal` may follow at once)"
    )
}

/// A C2SP checkpoint origin: non-empty, at most 255 bytes, no whitespace, `+` or controls
/// (it is also the log key's name).
pub fn check_origin(origin: &str) -> Result<(), String> {
    if origin.is_empty()
        || origin.len() > 255
        || origin
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
    {
        return Err(format!(
            "invalid origin {origin:?}: 1 to 255 bytes, no spaces or '+' (for example records.agency.example/vellum)"
        ));
    }
    Ok(())
}

/// The custodians' statement binding one archiver to the records key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiverBinding {
    pub version: u32,
    /// 1 for the first archiver; each replacement increments it.
    pub serial: u64,
    /// Equal to `records.pub`'s origin.
    pub origin: String,
    /// The archiver's device id: the only device of the `records` user clients accept.
    pub archiver_device: String,
    /// The archiver device's signature (identity) public key, base64 (Ed25519): the key its
    /// key packages and requests are signed with.
    pub archiver_identity: String,
    /// The log's C2SP note verifier key; its name is the origin.
    pub log_key: String,
    /// The witnesses' C2SP cosignature verifier keys.
    pub witnesses: Vec<String>,
    /// How many of `witnesses` must cosign a checkpoint for it to count as witnessed.
    pub witness_quorum: u32,
    /// Unix ms, the archiver's clock at signing.
    pub issued_at: i64,
    /// The log this one continues (an archive from before bindings, or a replaced
    /// archiver's): its checkpoints up to `size` are under that origin and key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousLog>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousLog {
    pub origin: String,
    pub log_key: String,
    /// The tree size the previous key's checkpoints reached when this binding was signed.
    pub size: u64,
}

/// A binding as it is stored and sent: the statement's exact JSON text and the binding
/// key's Ed25519 signature over [`BINDING_CONTEXT`] followed by that text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignedBinding {
    pub statement: String,
    /// Base64 Ed25519 signature.
    pub signature: String,
}

impl SignedBinding {
    pub fn parse(json: &str) -> Result<Self, TrustError> {
        serde_json::from_str(json).map_err(|e| TrustError::MalformedBinding(e.to_string()))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("bindings serialise") + "\n"
    }

    /// The statement of a binding its holder verified when it stored it (the server's
    /// database, a device's profile): parsed, not verified again.
    pub fn stored_statement(&self) -> Result<ArchiverBinding, TrustError> {
        serde_json::from_str(&self.statement)
            .map_err(|e| TrustError::MalformedBinding(e.to_string()))
    }

    /// The bytes the binding key signs.
    pub fn signed_bytes(statement: &str) -> Vec<u8> {
        [BINDING_CONTEXT, statement.as_bytes()].concat()
    }

    /// Checks the signature against `records.pub`'s binding key and the statement's
    /// consistency with it; returns the statement.
    pub fn verify(&self, public: &RecordsPublic) -> Result<ArchiverBinding, TrustError> {
        let key = public.binding_verifying_key()?;
        let signature = STANDARD
            .decode(&self.signature)
            .ok()
            .and_then(|s| Signature::from_slice(&s).ok())
            .ok_or(TrustError::BadSignature)?;
        key.verify(&Self::signed_bytes(&self.statement), &signature)
            .map_err(|_| TrustError::BadSignature)?;
        let statement: ArchiverBinding = serde_json::from_str(&self.statement)
            .map_err(|e| TrustError::MalformedBinding(e.to_string()))?;
        statement.check(public)?;
        Ok(statement)
    }
}

impl ArchiverBinding {
    /// The statement's JSON text, as signed.
    pub fn to_statement(&self) -> String {
        serde_json::to_string(self).expect("bindings serialise")
    }

    fn check(&self, public: &RecordsPublic) -> Result<(), TrustError> {
        let bad = |m: String| Err(TrustError::MalformedBinding(m));
        if self.version != BINDING_VERSION {
            return bad(format!(
                "statement version {} is not {BINDING_VERSION}",
                self.version
            ));
        }
        if self.serial == 0 {
            return bad("serial starts at 1".into());
        }
        if public.origin.as_deref() != Some(self.origin.as_str()) {
            return bad(format!("origin {:?} is not records.pub's", self.origin));
        }
        if self.archiver_device.is_empty() || self.archiver_device.len() > 128 {
            return bad("archiver_device must be 1 to 128 bytes".into());
        }
        if STANDARD
            .decode(&self.archiver_identity)
            .map_or(true, |k| k.len() != 32)
        {
            return bad("archiver_identity must be a base64 32-byte Ed25519 key".into());
        }
        let log = NoteVerifier::parse(&self.log_key)
            .map_err(|e| TrustError::MalformedBinding(format!("log_key: {e}")))?;
        if log.name() != self.origin {
            return bad("the log key's name must be the origin".into());
        }
        if self.witnesses.len() > MAX_WITNESSES {
            return bad(format!("at most {MAX_WITNESSES} witnesses"));
        }
        let mut names = std::collections::BTreeSet::new();
        for witness in &self.witnesses {
            let verifier = CosignatureVerifier::parse(witness)
                .map_err(|e| TrustError::MalformedBinding(format!("witness: {e}")))?;
            if !names.insert(verifier.name().to_owned()) {
                return bad(format!("witness {} is named twice", verifier.name()));
            }
        }
        if self.witness_quorum as usize > self.witnesses.len() {
            return bad("the witness quorum exceeds the number of witnesses".into());
        }
        if let Some(previous) = &self.previous {
            let key = NoteVerifier::parse(&previous.log_key)
                .map_err(|e| TrustError::MalformedBinding(format!("previous log_key: {e}")))?;
            if key.name() != previous.origin {
                return bad("the previous log key's name must be the previous origin".into());
            }
        }
        Ok(())
    }

    /// Whether `other` binds the same archiver, log, origin and witnesses: a new binding is
    /// needed only when it does not.
    pub fn same_statement(&self, other: &ArchiverBinding) -> bool {
        self.origin == other.origin
            && self.archiver_device == other.archiver_device
            && self.archiver_identity == other.archiver_identity
            && self.log_key == other.log_key
            && self.witnesses == other.witnesses
            && self.witness_quorum == other.witness_quorum
    }

    /// The archiver's identity key's bytes.
    pub fn identity_bytes(&self) -> Vec<u8> {
        STANDARD
            .decode(&self.archiver_identity)
            .expect("checked when the binding was verified")
    }

    /// The log keys a device accepts receipts from: this binding's, and the one it
    /// continues (checkpoints signed before the transition reach devices late).
    pub fn receipt_keys(&self) -> Vec<&str> {
        std::iter::once(self.log_key.as_str())
            .chain(self.previous.as_ref().map(|p| p.log_key.as_str()))
            .collect()
    }

    /// The log key's verifier.
    pub fn log_verifier(&self) -> NoteVerifier {
        NoteVerifier::parse(&self.log_key).expect("checked when the binding was verified")
    }

    /// The witnesses' verifiers.
    pub fn witness_verifiers(&self) -> Vec<CosignatureVerifier> {
        self.witnesses
            .iter()
            .map(|w| CosignatureVerifier::parse(w).expect("checked when the binding was verified"))
            .collect()
    }
}
