//! C2SP signed notes with Ed25519 keys (signature type 0x01).

use base64::{engine::general_purpose::STANDARD, Engine};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::Error;

const ED25519: u8 = 0x01;
/// Notes larger than this, or with more signatures, are refused before any parsing work.
const MAX_NOTE_BYTES: usize = 1 << 20;
const MAX_SIGNATURES: usize = 100;

fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
    {
        return Err(Error::MalformedKey(format!("invalid key name {name:?}")));
    }
    Ok(())
}

/// A key's ID per C2SP signed-note: the first four bytes of SHA-256(name, `\n`, the key
/// type, the public key). Signature (0x01) and cosignature (0x04) keys share it.
pub(crate) fn key_id(name: &str, key_type: u8, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', key_type]);
    h.update(public);
    let digest = h.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// The verifier key string `name+hexid+base64(type || public key)` of a key of `key_type`.
pub(crate) fn verifier_key(name: &str, key_type: u8, public: &[u8; 32]) -> String {
    let mut typed = vec![key_type];
    typed.extend_from_slice(public);
    format!(
        "{name}+{:08x}+{}",
        key_id(name, key_type, public),
        STANDARD.encode(typed)
    )
}

/// Signs notes as `name`.
pub struct NoteSigner {
    name: String,
    key: SigningKey,
}

impl NoteSigner {
    pub fn new(name: &str, seed: &[u8; 32]) -> Result<Self, Error> {
        check_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            key: SigningKey::from_bytes(seed),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        key_id(&self.name, ED25519, &self.key.verifying_key().to_bytes())
    }

    /// The verifier key string `name+hexid+base64(0x01 || public key)` an auditor pins.
    pub fn verifier_key(&self) -> String {
        verifier_key(&self.name, ED25519, &self.key.verifying_key().to_bytes())
    }

    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            id: self.key_id(),
            key: self.key.verifying_key(),
        }
    }

    /// The signed note: `text`, a blank line, one signature line.
    pub fn sign(&self, text: &str) -> Result<String, Error> {
        check_text(text)?;
        let mut blob = self.key_id().to_be_bytes().to_vec();
        blob.extend_from_slice(&self.key.sign(text.as_bytes()).to_bytes());
        Ok(format!(
            "{text}\n\u{2014} {} {}\n",
            self.name,
            STANDARD.encode(blob)
        ))
    }
}

fn check_text(text: &str) -> Result<(), Error> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err(Error::MalformedNote(
            "text must be non-empty and end with a newline".into(),
        ));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::MalformedNote(
            "control characters other than newline".into(),
        ));
    }
    Ok(())
}

/// Parses a verifier key string `name+hexid+base64(type || Ed25519 public key)` of the
/// given key type (`what` names it in errors), checking the ID against the key.
pub(crate) fn parse_verifier_key(
    vkey: &str,
    key_type: u8,
    what: &str,
) -> Result<(String, u32, VerifyingKey), Error> {
    let bad = |why: &str| Error::MalformedKey(format!("{why}: {vkey:?}"));
    let mut parts = vkey.splitn(3, '+');
    let (Some(name), Some(id), Some(typed)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("expected name+id+key"));
    };
    check_name(name)?;
    if id.len() != 8
        || !id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(bad("key id must be 8 lower-case hex digits"));
    }
    let id = u32::from_str_radix(id, 16).map_err(|_| bad("bad key id"))?;
    let typed = STANDARD
        .decode(typed)
        .map_err(|_| bad("key is not base64"))?;
    let (&[found], public) = typed.split_at(1.min(typed.len())) else {
        return Err(bad(&format!("not {what} key")));
    };
    if found != key_type {
        return Err(bad(&format!("not {what} key")));
    }
    let public: [u8; 32] = public
        .try_into()
        .map_err(|_| bad("Ed25519 keys are 32 bytes"))?;
    let key = VerifyingKey::from_bytes(&public).map_err(|_| bad("not a valid Ed25519 key"))?;
    if key_id(name, key_type, &public) != id {
        return Err(bad("key id does not match the key"));
    }
    Ok((name.to_owned(), id, key))
}

/// A trusted key, from its verifier key string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl NoteVerifier {
    pub fn parse(vkey: &str) -> Result<Self, Error> {
        let (name, id, key) = parse_verifier_key(vkey, ED25519, "an Ed25519")?;
        Ok(Self { name, id, key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Verifies `note` against trusted `verifiers` and returns its text. Signatures by unknown
    /// keys are ignored; a bad signature by a known key rejects the note; at least one known
    /// signature must verify.
    pub fn open<'n>(note: &'n str, verifiers: &[NoteVerifier]) -> Result<&'n str, Error> {
        if note.len() > MAX_NOTE_BYTES {
            return Err(Error::MalformedNote("note too large".into()));
        }
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| Error::MalformedNote("no signature block".into()))?;
        let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
        check_text(text)?;
        if signatures.is_empty() || !signatures.ends_with('\n') {
            return Err(Error::MalformedNote(
                "signature block must end with a newline".into(),
            ));
        }
        let mut verified = 0;
        for (count, line) in signatures.trim_end_matches('\n').split('\n').enumerate() {
            if count >= MAX_SIGNATURES {
                return Err(Error::MalformedNote("too many signatures".into()));
            }
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or_else(|| Error::MalformedNote(format!("not a signature line: {line:?}")))?;
            let (name, blob) = rest
                .split_once(' ')
                .ok_or_else(|| Error::MalformedNote("signature line without a key name".into()))?;
            let blob = STANDARD
                .decode(blob)
                .map_err(|_| Error::MalformedNote("signature is not base64".into()))?;
            if blob.len() < 4 {
                return Err(Error::MalformedNote("signature too short".into()));
            }
            let id = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]);
            let Some(verifier) = verifiers.iter().find(|v| v.name == name && v.id == id) else {
                continue;
            };
            let signature = Signature::from_slice(&blob[4..])
                .map_err(|_| Error::BadSignature(name.to_owned()))?;
            verifier
                .key
                .verify(text.as_bytes(), &signature)
                .map_err(|_| Error::BadSignature(name.to_owned()))?;
            verified += 1;
        }
        if verified == 0 {
            return Err(Error::Unverified);
        }
        Ok(text)
    }
}
