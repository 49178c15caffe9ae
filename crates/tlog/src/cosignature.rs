//! C2SP tlog-cosignature, the Ed25519 type (`cosignature/v1`, signature type 0x04): a
//! witness's timestamped statement that a checkpoint is the largest consistent tree head it
//! has seen for the log.
//!
//! A cosignature line is an ordinary signed-note signature line whose blob is
//! `key ID (4) || timestamp (u64, big-endian) || Ed25519 signature (64)` over
//! `"cosignature/v1\ntime <timestamp>\n" || checkpoint text`.

use base64::{engine::general_purpose::STANDARD, Engine};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::note::{key_id, parse_verifier_key, verifier_key};
use crate::{Checkpoint, Error};

/// The signed-note signature type of Ed25519 cosignatures.
pub const COSIGNATURE_V1: u8 = 0x04;
/// Notes larger than this, or with more signature lines, are refused before any work.
const MAX_NOTE_BYTES: usize = 1 << 20;
const MAX_SIGNATURES: usize = 100;
/// Key ID, timestamp, Ed25519 signature.
const BLOB_LEN: usize = 4 + 8 + 64;

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

/// The message a cosignature signs: the header line, the time line, then the checkpoint's
/// whole note text (extension lines included).
pub fn message(timestamp: u64, checkpoint_text: &str) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{checkpoint_text}").into_bytes()
}

/// A cosignature line taken apart (not yet verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignatureLine {
    pub name: String,
    pub key_id: u32,
    /// POSIX seconds at which the witness signed.
    pub timestamp: u64,
    pub signature: [u8; 64],
}

impl CosignatureLine {
    /// Parses `— <name> base64(id || timestamp || signature)` (with or without the final
    /// newline). Lines of other signature types (other lengths) are refused.
    pub fn parse(line: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::MalformedNote(format!("{why}: {line:?}"));
        let rest = line
            .strip_suffix('\n')
            .unwrap_or(line)
            .strip_prefix("\u{2014} ")
            .ok_or_else(|| bad("not a signature line"))?;
        let (name, blob) = rest
            .split_once(' ')
            .ok_or_else(|| bad("signature line without a key name"))?;
        check_name(name)?;
        let blob = STANDARD
            .decode(blob)
            .map_err(|_| bad("signature is not base64"))?;
        let blob: [u8; BLOB_LEN] = blob
            .try_into()
            .map_err(|_| bad("not an Ed25519 cosignature (76 bytes)"))?;
        let timestamp = u64::from_be_bytes(blob[4..12].try_into().expect("8 bytes"));
        if timestamp > i64::MAX as u64 {
            return Err(bad("timestamp beyond 2^63 - 1"));
        }
        Ok(Self {
            name: name.to_owned(),
            key_id: u32::from_be_bytes(blob[..4].try_into().expect("4 bytes")),
            timestamp,
            signature: blob[12..].try_into().expect("64 bytes"),
        })
    }
}

/// A witness's cosigning key.
pub struct CosignatureSigner {
    name: String,
    key: SigningKey,
}

impl CosignatureSigner {
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
        key_id(
            &self.name,
            COSIGNATURE_V1,
            &self.key.verifying_key().to_bytes(),
        )
    }

    /// The verifier key `name+hexid+base64(0x04 || public key)` that clients pin.
    pub fn verifier_key(&self) -> String {
        verifier_key(
            &self.name,
            COSIGNATURE_V1,
            &self.key.verifying_key().to_bytes(),
        )
    }

    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier {
            name: self.name.clone(),
            id: self.key_id(),
            key: self.key.verifying_key(),
        }
    }

    /// The cosignature line (ending in a newline) over `checkpoint` at `timestamp`. A zero
    /// timestamp would omit the statement that this is the newest tree seen, so it is refused.
    pub fn sign(&self, checkpoint: &Checkpoint, timestamp: u64) -> Result<String, Error> {
        if timestamp == 0 || timestamp > i64::MAX as u64 {
            return Err(Error::MalformedNote(format!(
                "cosignature timestamp {timestamp} is outside 1..2^63"
            )));
        }
        let signature = self.key.sign(&message(timestamp, &checkpoint.to_text()));
        let mut blob = self.key_id().to_be_bytes().to_vec();
        blob.extend_from_slice(&timestamp.to_be_bytes());
        blob.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "\u{2014} {} {}\n",
            self.name,
            STANDARD.encode(blob)
        ))
    }
}

/// A trusted witness key, from its verifier key string (type 0x04).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl CosignatureVerifier {
    pub fn parse(vkey: &str) -> Result<Self, Error> {
        let (name, id, key) = parse_verifier_key(vkey, COSIGNATURE_V1, "a cosignature/v1 (0x04)")?;
        Ok(Self { name, id, key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// The verifier key string this verifier was parsed from.
    pub fn verifier_key(&self) -> String {
        verifier_key(&self.name, COSIGNATURE_V1, self.key.as_bytes())
    }

    /// Checks this key's cosignature in a signed checkpoint `note` and returns the checkpoint
    /// and the cosignature's timestamp. Other signature lines are ignored (the log's own
    /// signature is the caller's to check); a line with this key's name and ID that does not
    /// verify rejects the note, and so does the absence of any.
    pub fn verify(&self, note: &str) -> Result<(Checkpoint, u64), Error> {
        if note.len() > MAX_NOTE_BYTES {
            return Err(Error::MalformedNote("note too large".into()));
        }
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| Error::MalformedNote("no signature block".into()))?;
        let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
        if signatures.is_empty() || !signatures.ends_with('\n') {
            return Err(Error::MalformedNote(
                "signature block must end with a newline".into(),
            ));
        }
        let checkpoint = Checkpoint::parse(text)?;
        let mut verified = None;
        for (count, line) in signatures.trim_end_matches('\n').split('\n').enumerate() {
            if count >= MAX_SIGNATURES {
                return Err(Error::MalformedNote("too many signatures".into()));
            }
            let Some(rest) = line.strip_prefix("\u{2014} ") else {
                return Err(Error::MalformedNote(format!(
                    "not a signature line: {line:?}"
                )));
            };
            // Only lines of this key are taken apart; any other type may have any length.
            if rest.split_once(' ').map(|(name, _)| name) != Some(self.name.as_str()) {
                continue;
            }
            let parsed = match CosignatureLine::parse(line) {
                Ok(parsed) if parsed.key_id == self.id => parsed,
                Ok(_) => continue,
                Err(_) => {
                    // Same name: a mangled line whose ID matches is still this key's.
                    let blob = STANDARD
                        .decode(&rest[self.name.len() + 1..])
                        .unwrap_or_default();
                    if blob.get(..4) == Some(&self.id.to_be_bytes()[..]) {
                        return Err(Error::BadSignature(self.name.clone()));
                    }
                    continue;
                }
            };
            let signature = Signature::from_bytes(&parsed.signature);
            self.key
                .verify(&message(parsed.timestamp, text), &signature)
                .map_err(|_| Error::BadSignature(self.name.clone()))?;
            verified = Some(verified.unwrap_or(0).max(parsed.timestamp));
        }
        let timestamp = verified.ok_or(Error::Unverified)?;
        Ok((checkpoint, timestamp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checkpoint of the tlog-cosignature and tlog-checkpoint examples.
    const SPEC_TEXT: &str =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    const SPEC_TIME: u64 = 1679315147;

    /// tlog-cosignature "Ed25519 signed message": the example block, byte for byte.
    #[test]
    fn message_is_the_spec_example() {
        let expected = "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n\
                        CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        assert_eq!(message(SPEC_TIME, SPEC_TEXT), expected.as_bytes());
    }

    /// tlog-cosignature "Format": the example cosignature line carries a 4-byte key ID, the
    /// big-endian timestamp of the example message, and a 64-byte signature.
    #[test]
    fn spec_example_line_parses() {
        let line =
            "\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI\
                    5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==";
        let parsed = CosignatureLine::parse(line).unwrap();
        assert_eq!(parsed.name, "witness.example.com/w1");
        assert_eq!(parsed.key_id, 0x8d66cf3f);
        assert_eq!(parsed.timestamp, SPEC_TIME);
        // The log's Ed25519 line of the same example is another type: 68 bytes, refused.
        let log_line =
            "\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJur\
                        mRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=";
        assert!(CosignatureLine::parse(log_line).is_err());
    }

    /// Key ID = SHA-256(name || "\n" || 0x04 || key)[:4]: a real witness's cosignature/v1
    /// vkey (from transparency-dev/formats' tests) parses; a wrong ID or type is refused.
    #[test]
    fn key_id_matches_a_published_witness_key() {
        let v = CosignatureVerifier::parse(
            "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
        )
        .unwrap();
        assert_eq!(v.key_id(), 0xda77ade7);
        assert_eq!(
            v.verifier_key(),
            "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
            "formats back to the key it was parsed from"
        );
        assert!(CosignatureVerifier::parse(
            "remora.n621.de+da77ade8+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
        )
        .is_err());
        // An ordinary Ed25519 (0x01) note key is not a cosignature key.
        assert!(CosignatureVerifier::parse(
            "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
        )
        .is_err());
    }

    /// A vector computed independently (Python `cryptography`, seed 32 x 0x07): the same
    /// vkey, the same line, byte for byte (Ed25519 is deterministic).
    #[test]
    fn independent_vector() {
        let signer = CosignatureSigner::new("witness.example.com/w1", &[7; 32]).unwrap();
        assert_eq!(
            signer.verifier_key(),
            "witness.example.com/w1+8122a5ab+BOpKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs"
        );
        let checkpoint = Checkpoint::parse(SPEC_TEXT).unwrap();
        let line = signer.sign(&checkpoint, SPEC_TIME).unwrap();
        assert_eq!(
            line,
            "\u{2014} witness.example.com/w1 gSKlqwAAAABkGFDLWr4Jea05CAgwNVtwky0Jgz6WfX0QJgM//F\
             kB/W9BoT9TX0DkTxG+2cT4p/ViKNhUM/SnUwFcYQzugGFQ15LwDw==\n"
        );
        let verifier = CosignatureVerifier::parse(&signer.verifier_key()).unwrap();
        assert_eq!(verifier, signer.verifier());
        let note = format!("{SPEC_TEXT}\n{line}");
        assert_eq!(verifier.verify(&note).unwrap(), (checkpoint, SPEC_TIME));
    }

    #[test]
    fn tampering_is_caught() {
        let signer = CosignatureSigner::new("w.example/1", &[9; 32]).unwrap();
        let verifier = signer.verifier();
        let checkpoint = Checkpoint::parse(SPEC_TEXT).unwrap();
        let line = signer.sign(&checkpoint, 100).unwrap();
        let log = crate::NoteSigner::new("example.com/behind-the-sofa", &[1; 32]).unwrap();
        let signed = log.sign(SPEC_TEXT).unwrap();
        // The log's line is ignored, the witness's verifies.
        assert_eq!(verifier.verify(&format!("{signed}{line}")).unwrap().1, 100);
        // Another size under the same cosignature.
        let forged = format!("{}\n{line}", SPEC_TEXT.replace("20852163", "20852164"));
        assert_eq!(
            verifier.verify(&forged),
            Err(Error::BadSignature("w.example/1".into()))
        );
        // Another timestamp under the same signature.
        let mut blob = STANDARD
            .decode(line.trim_end().rsplit(' ').next().unwrap())
            .unwrap();
        blob[11] ^= 1;
        let moved = format!(
            "{SPEC_TEXT}\n\u{2014} w.example/1 {}\n",
            STANDARD.encode(&blob)
        );
        assert!(matches!(
            verifier.verify(&moved),
            Err(Error::BadSignature(_))
        ));
        // No cosignature by this key at all.
        assert_eq!(verifier.verify(&signed), Err(Error::Unverified));
        // The witness never signs without a timestamp.
        assert!(signer.sign(&checkpoint, 0).is_err());
        assert!(signer.sign(&checkpoint, 1 << 63).is_err());
    }
}
