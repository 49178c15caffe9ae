//! The C2SP tlog-witness `add-checkpoint` call, sans I/O: the request body, and the checks
//! in the order the specification gives them, each with its status code.

use std::collections::HashMap;

use base64::{engine::general_purpose::STANDARD, Engine};
use vellum_tlog::{empty_root, verify_consistency, Checkpoint, Hash, NoteVerifier};

/// The specification caps a request's consistency proof at 63 lines.
pub const MAX_PROOF_LINES: usize = 63;

/// Why a checkpoint was not cosigned, with the status code tlog-witness assigns to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 400: the body is not an old size line, proof lines, an empty line and a checkpoint.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// 400: the old size is larger than the checkpoint's.
    #[error("old size {old} is larger than the checkpoint's size {size}")]
    OldSizeTooLarge { old: u64, size: u64 },
    /// 404: the witness follows no log of this origin.
    #[error("this witness does not follow the log {0:?}")]
    UnknownLog(String),
    /// 403: no signature by the log's key, or one that does not verify.
    #[error("the checkpoint is not signed by the log's key: {0}")]
    Forbidden(String),
    /// 409: the old size is not the size the witness last cosigned (carried in the body).
    #[error("old size {old} does not match the witness's size {known}")]
    Conflict { old: u64, known: u64 },
    /// 422: an empty tree with another root, a proof that does not verify, or the same size
    /// with another root.
    #[error("{0}")]
    Inconsistent(String),
    /// 500: the witness could not read or write its own state; nothing was cosigned.
    #[error("the witness cannot use its state: {0}")]
    Storage(String),
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Malformed(_) | Refusal::OldSizeTooLarge { .. } => 400,
            Refusal::Forbidden(_) => 403,
            Refusal::UnknownLog(_) => 404,
            Refusal::Conflict { .. } => 409,
            Refusal::Inconsistent(_) => 422,
            Refusal::Storage(_) => 500,
        }
    }
}

/// An `add-checkpoint` request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    pub old_size: u64,
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, as sent.
    pub note: String,
}

fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

impl AddCheckpoint {
    /// Parses `old <size>\n`, up to 63 base64 hash lines, an empty line, then the note.
    pub fn parse(body: &[u8]) -> Result<Self, Refusal> {
        let bad = |why: &str| Refusal::Malformed(why.to_owned());
        let body = std::str::from_utf8(body).map_err(|_| bad("the body is not UTF-8"))?;
        // Neither the old size line nor a proof line can be empty, so the first empty line
        // ends the header.
        let (head, note) = body
            .split_once("\n\n")
            .ok_or_else(|| bad("no empty line between the proof and the checkpoint"))?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .ok_or_else(|| bad("the first line must be `old <size>`"))?;
        let old_size = decimal(old)
            .ok_or_else(|| bad("the old size must be a decimal number without leading zeros"))?;
        let mut proof = Vec::new();
        for line in lines {
            if proof.len() == MAX_PROOF_LINES {
                return Err(bad("more than 63 consistency proof lines"));
            }
            let hash: Hash = STANDARD
                .decode(line)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| bad("a proof line is not a base64 SHA-256 hash"))?;
            proof.push(hash);
        }
        Ok(Self {
            old_size,
            proof,
            note: note.to_owned(),
        })
    }

    /// The request body a client sends.
    pub fn to_body(&self) -> String {
        let mut body = format!("old {}\n", self.old_size);
        for hash in &self.proof {
            body.push_str(&STANDARD.encode(hash));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(&self.note);
        body
    }
}

/// A checkpoint whose log signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub checkpoint: Checkpoint,
    /// The note text (what is signed).
    pub text: String,
    /// The note's signature lines by the log's trusted keys, each ending in a newline;
    /// other lines (unknown keys, other witnesses) are dropped.
    pub log_lines: Vec<String>,
}

/// Origin and signature checks: 404 for an origin the witness does not follow, 403 when no
/// trusted key's signature verifies or a trusted key's does not, 400 for a malformed note.
pub fn verify(
    request: &AddCheckpoint,
    logs: &HashMap<String, Vec<NoteVerifier>>,
) -> Result<Verified, Refusal> {
    let note = &request.note;
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| Refusal::Malformed("the checkpoint note has no signatures".into()))?;
    let text = &note[..split + 1];
    let origin = text.split('\n').next().unwrap_or_default();
    let keys = logs
        .get(origin)
        .ok_or_else(|| Refusal::UnknownLog(origin.to_owned()))?;
    match NoteVerifier::open(note, keys) {
        Ok(_) => {}
        Err(e @ (vellum_tlog::Error::Unverified | vellum_tlog::Error::BadSignature(_))) => {
            return Err(Refusal::Forbidden(e.to_string()))
        }
        Err(e) => return Err(Refusal::Malformed(e.to_string())),
    }
    let checkpoint = Checkpoint::parse(text).map_err(|e| Refusal::Malformed(e.to_string()))?;
    // Keep exactly the lines a trusted key verifies (a line alone, as a note, verifies).
    let log_lines = note[split + 2..]
        .lines()
        .filter(|line| NoteVerifier::open(&format!("{text}\n{line}\n"), keys).is_ok())
        .map(|line| format!("{line}\n"))
        .collect();
    Ok(Verified {
        checkpoint,
        text: text.to_owned(),
        log_lines,
    })
}

/// Size and consistency checks against `known`, the checkpoint the witness last cosigned
/// for this origin (if any), in the specification's order.
pub fn check_consistency(
    request: &AddCheckpoint,
    checkpoint: &Checkpoint,
    known: Option<&Checkpoint>,
) -> Result<(), Refusal> {
    let old = request.old_size;
    if old > checkpoint.size {
        return Err(Refusal::OldSizeTooLarge {
            old,
            size: checkpoint.size,
        });
    }
    let known_size = known.map_or(0, |k| k.size);
    if old != known_size {
        return Err(Refusal::Conflict {
            old,
            known: known_size,
        });
    }
    if checkpoint.size == 0 && checkpoint.root != empty_root() {
        return Err(Refusal::Inconsistent(
            "a checkpoint of size 0 must have the empty tree's root".into(),
        ));
    }
    let Some(known) = known.filter(|k| k.size > 0) else {
        return if request.proof.is_empty() {
            Ok(())
        } else {
            Err(Refusal::Inconsistent(
                "from old size 0 the consistency proof must be empty".into(),
            ))
        };
    };
    if known.size == checkpoint.size {
        return if known.root == checkpoint.root && request.proof.is_empty() {
            Ok(())
        } else {
            Err(Refusal::Inconsistent(format!(
                "the witness holds another root for size {}: a fork",
                known.size
            )))
        };
    }
    verify_consistency(
        known.size,
        checkpoint.size,
        &known.root,
        &checkpoint.root,
        &request.proof,
    )
    .map_err(|_| {
        Refusal::Inconsistent(format!(
            "the consistency proof from size {} to {} does not verify",
            known.size, checkpoint.size
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tlog-witness "add-checkpoint": the example request body parses and prints back.
    #[test]
    fn spec_example_body_round_trips() {
        let body = "old 20852014\n\
            PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n\
            jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\
            5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n\
            /6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\
            \n\
            example.com/behind-the-sofa\n\
            20852163\n\
            CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\
            \n\
            \u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\
            \u{2014} example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n";
        let request = AddCheckpoint::parse(body.as_bytes()).unwrap();
        assert_eq!(request.old_size, 20852014);
        assert_eq!(request.proof.len(), 4);
        assert!(request
            .note
            .starts_with("example.com/behind-the-sofa\n20852163\n"));
        assert_eq!(request.to_body(), body);
    }

    #[test]
    fn malformed_headers_are_refused() {
        for body in [
            "old 01\n\nx\n",
            "old -1\n\nx\n",
            "old 1\nnot base64!\n\nx\n",
            "old 1\nAAAA\n\nx\n",
            "new 1\n\nx\n",
            "old 1\n",
            "old 18446744073709551616\n\nx\n",
        ] {
            assert!(
                matches!(
                    AddCheckpoint::parse(body.as_bytes()),
                    Err(Refusal::Malformed(_))
                ),
                "{body:?}"
            );
        }
        let line = format!("{}\n", STANDARD.encode([0u8; 32]));
        let too_long = format!("old 1\n{}\nx\n", line.repeat(64));
        assert!(AddCheckpoint::parse(too_long.as_bytes()).is_err());
        let just_right = format!("old 1\n{}\nx\n", line.repeat(63));
        assert_eq!(
            AddCheckpoint::parse(just_right.as_bytes())
                .unwrap()
                .proof
                .len(),
            63
        );
    }
}
