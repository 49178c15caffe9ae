//! Gathering a production's input from the archive (issue 11): each selected record opened,
//! with its leaf's public encoding and an inclusion proof against the newest cosigned
//! checkpoint that covers them all.

use base64::{engine::general_purpose::STANDARD, Engine};
use vellum_archive::Leaf;
use vellum_production::{ProducedItem, Treatment};
use vellum_record::{ArchiverBinding, Record};

use crate::Vault;

/// A record chosen for a production and what review decided for it.
#[derive(Debug, Clone)]
pub struct Selection {
    pub leaf: u64,
    pub treatment: Treatment,
}

/// What [`gather`] found: the items in order, and the checkpoint their proofs are against.
#[derive(Debug, Clone)]
pub struct Gathered {
    pub items: Vec<ProducedItem>,
    pub checkpoint: String,
    pub checkpoint_size: u64,
    pub origin: String,
    pub verifier_key: String,
    /// The custodians' signed binding of this log (JSON), if they have bound it: with it a
    /// court checks the checkpoint against `records.pub` alone.
    pub binding: Option<String>,
}

/// Like [`gather`], but first signs a checkpoint when the newest one does not cover every
/// selected leaf yet (records archived in the last checkpoint interval).
pub fn checkpoint_and_gather(
    vault: &mut Vault,
    selection: &[Selection],
) -> Result<Gathered, String> {
    let needed = selection.iter().map(|s| s.leaf + 1).max().unwrap_or(0);
    let covered = vault
        .archive
        .latest_checkpoint()
        .map_err(|e| e.to_string())?
        .is_some_and(|(size, _)| size >= needed);
    if !covered {
        crate::checkpoint(vault)?;
    }
    gather(vault, selection)
}

/// Opens every selected record (the archive must be unsealed) and proves it. Unknown,
/// non-record and disposed leaves are errors naming the leaf; so is a selection no signed
/// checkpoint covers yet ([`checkpoint_and_gather`] signs one).
pub fn gather(vault: &Vault, selection: &[Selection]) -> Result<Gathered, String> {
    let secret = vault
        .secret
        .as_ref()
        .ok_or("the archive is sealed: keyholders must hand in enough shares to unseal it first")?;
    let archive = &vault.archive;
    let mut opened = Vec::with_capacity(selection.len());
    for s in selection {
        let leaf = archive
            .leaf(s.leaf)
            .map_err(|_| format!("leaf {} is not in the archive", s.leaf))?;
        let Leaf::Record { reference, .. } = &leaf else {
            return Err(format!("leaf {} is not a record", s.leaf));
        };
        let sealed = archive
            .record(s.leaf)
            .map_err(|e| format!("leaf {}: {e}", s.leaf))?
            .ok_or_else(|| format!("leaf {} was disposed: its record no longer exists", s.leaf))?;
        let record = vellum_records::open(secret, reference.as_bytes(), &sealed)
            .map_err(|e| e.to_string())
            .and_then(|p| Record::decode(&p).map_err(|e| e.to_string()))
            .map_err(|e| format!("leaf {} does not open under the records key: {e}", s.leaf))?;
        opened.push((s, leaf.to_bytes(), record));
    }
    let needed = selection.iter().map(|s| s.leaf + 1).max().unwrap_or(0);
    let binding = newest_binding(vault);
    let (size, note) = covering_checkpoint(vault, needed, binding.as_ref().map(|(_, b)| b))?;
    let mut items = Vec::with_capacity(opened.len());
    for (s, data, record) in opened {
        let proof = archive
            .inclusion_proof(s.leaf, size)
            .map_err(|e| format!("leaf {}: {e}", s.leaf))?;
        items.push(ProducedItem {
            leaf: s.leaf,
            leaf_data: STANDARD.encode(&data),
            inclusion_proof: proof.iter().map(hex::encode).collect(),
            record,
            treatment: s.treatment.clone(),
        });
    }
    let verifier_key = archive.verifier_key();
    Ok(Gathered {
        items,
        checkpoint: note,
        checkpoint_size: size,
        origin: verifier_key
            .split('+')
            .next()
            .unwrap_or_default()
            .to_owned(),
        verifier_key,
        binding: binding.map(|(signed, _)| signed.to_json()),
    })
}

/// The newest binding of the key this archive signs with now.
fn newest_binding(vault: &Vault) -> Option<(vellum_record::SignedBinding, ArchiverBinding)> {
    let key = vault.archive.verifier_key();
    crate::binding::local_bindings(vault)
        .into_iter()
        .rev()
        .find(|(_, b)| b.log_key == key)
}

/// The newest checkpoint of at least `needed` leaves that carries the binding's witness
/// quorum (any, when the log is not bound yet).
fn covering_checkpoint(
    vault: &Vault,
    needed: u64,
    binding: Option<&ArchiverBinding>,
) -> Result<(u64, String), String> {
    let latest = vault
        .archive
        .latest_checkpoint()
        .map_err(|e| e.to_string())?;
    let Some((size, note)) = latest.filter(|(size, _)| *size >= needed) else {
        return Err(format!(
            "leaf {} is not covered by a signed checkpoint yet; try again in a moment",
            needed.saturating_sub(1)
        ));
    };
    let Some(binding) = binding.filter(|b| b.witness_quorum > 0) else {
        return Ok((size, note));
    };
    if vellum_record::check_checkpoint(&note, binding).is_ok() {
        return Ok((size, note));
    }
    // The newest is not cosigned yet: an older one that covers the selection may be.
    let dir = vault.archive.dir().join("checkpoints");
    let mut sizes: Vec<u64> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|s| *s >= needed && *s < size)
        .collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    for older in sizes {
        let Ok(note) = std::fs::read_to_string(dir.join(format!("{older:020}"))) else {
            continue;
        };
        if vellum_record::check_checkpoint(&note, binding).is_ok() {
            return Ok((older, note));
        }
    }
    Err(format!(
        "no checkpoint covering leaf {} carries the witnesses' quorum of {} cosignatures yet; try again in a moment",
        needed.saturating_sub(1),
        binding.witness_quorum
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use vellum_archive::Archive;
    use vellum_production::{produce, verify_production, Trust};
    use vellum_record::{Record, RecordKind};
    use vellum_records::UnsealProgress;

    use super::*;
    use crate::binding::Binder;
    use crate::sink::OwedReceipts;

    const ORIGIN: &str = "records.test/vellum";

    fn record(seq: u64, text: &str) -> Record {
        Record {
            version: vellum_record::FORMAT_VERSION,
            chat_id: "chat".into(),
            chat_title: Some("Budget".into()),
            seq,
            kind: RecordKind::Message,
            message_id: Some(format!("m{seq}")),
            sender_user: "alice".into(),
            sender_device: "alice-1".into(),
            recipients: vec![],
            sent_at: 1_764_000_000_000,
            received_at: 1_764_000_000_000 + seq as i64,
            text: Some(text.into()),
            expire_secs: None,
            burn_secs: None,
            log_hash: None,
            salt: None,
            reply_to: None,
            mentions: Vec::new(),
            target: None,
            remove: false,
        }
    }

    fn release() -> Treatment {
        Treatment::Release {
            text: vec![],
            fields: vec![],
        }
    }

    /// An unsealed, bound vault holding three records, and their leaves.
    fn vault(dir: &std::path::Path) -> (Vault, vellum_records::Generated, Vec<u64>) {
        let g = vellum_records::generate(3, 2, ORIGIN).unwrap();
        let signer = vellum_tlog::NoteSigner::new(ORIGIN, &[5; 32]).unwrap();
        let archive = Archive::open(&dir.join("archive"), signer).unwrap();
        let mut vault =
            Vault::sealed(archive, g.public.clone(), OwedReceipts::in_memory()).unwrap();
        vault.binder = Some(Binder {
            device_id: "archiver-device".into(),
            identity: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
            origin: ORIGIN.into(),
            witnesses: vec![],
            witness_quorum: 0,
            public_path: dir.join("records.pub"),
            on_server: None,
            pending: None,
            retry_at: Instant::now(),
        });
        vault.unsealer.add(&g.shares[0]).unwrap();
        let UnsealProgress::Unsealed(secret) = vault.unsealer.add(&g.shares[1]).unwrap() else {
            panic!("two shares unseal")
        };
        vault.secret = Some(secret);
        crate::binding::bind(&mut vault).unwrap();
        for seq in 1..=3 {
            crate::sink::archive(&mut vault, record(seq, &format!("text {seq}"))).unwrap();
        }
        let leaves = vault.archive.records().map(|(leaf, _)| leaf).collect();
        (vault, g, leaves)
    }

    #[test]
    fn issue_11_gather_proves_the_selection_against_a_fresh_checkpoint_and_the_production_verifies()
    {
        let dir = tempfile::tempdir().unwrap();
        let (mut vault, g, leaves) = vault(dir.path());
        let selection = [
            Selection {
                leaf: leaves[2],
                treatment: release(),
            },
            Selection {
                leaf: leaves[0],
                treatment: Treatment::Withhold {
                    exemption: vellum_record::api::foia::Exemption::B5,
                },
            },
        ];
        // No checkpoint covers the records yet: gather alone says so, naming the leaf.
        let err = gather(&vault, &selection).unwrap_err();
        assert!(err.contains(&format!("leaf {}", leaves[2])), "{err}");
        let gathered = checkpoint_and_gather(&mut vault, &selection).unwrap();
        assert_eq!(gathered.checkpoint_size, vault.archive.size());
        assert_eq!(gathered.items.len(), 2);
        assert_eq!(gathered.items[0].record.text.as_deref(), Some("text 3"));
        assert!(gathered.binding.is_some());
        let out = dir.path().join("production");
        let input = vellum_production::ProductionInput {
            case_id: "C-1".into(),
            requester: "r".into(),
            description: "d".into(),
            produced_at: 0,
            time_zone: "UTC".into(),
            bates_prefix: "V".into(),
            bates_start: 1,
            formats: Default::default(),
            origin: gathered.origin.clone(),
            verifier_key: gathered.verifier_key.clone(),
            checkpoint: gathered.checkpoint.clone(),
            checkpoint_size: gathered.checkpoint_size,
            binding: gathered.binding.clone(),
            items: gathered.items,
        };
        produce(&input, &out, &mut |_| {}).unwrap();
        let verified = verify_production(&out, &Trust::RecordsPublic(g.public)).unwrap();
        assert!(verified.ok(), "{:?}", verified.failures);
        assert_eq!(
            (verified.records_released, verified.records_withheld),
            (1, 1)
        );
    }

    #[test]
    fn issue_11_gather_refuses_unknown_non_record_disposed_leaves_and_a_sealed_archive() {
        let dir = tempfile::tempdir().unwrap();
        let (mut vault, _, leaves) = vault(dir.path());
        let access = vault
            .archive
            .append(vellum_archive::Leaf::Access {
                time: 1,
                action: "test".into(),
                detail: String::new(),
            })
            .unwrap();
        vault.archive.dispose(leaves[1], "test", 2).unwrap();
        let disposed = format!("leaf {} was disposed", leaves[1]);
        for (leaf, says) in [
            (99, "leaf 99 is not in the archive"),
            (access, "is not a record"),
            (leaves[1], disposed.as_str()),
        ] {
            let err = checkpoint_and_gather(
                &mut vault,
                &[Selection {
                    leaf,
                    treatment: release(),
                }],
            )
            .unwrap_err();
            assert!(err.contains(says), "{leaf}: {err}");
        }
        vault.secret = None;
        let err = gather(
            &vault,
            &[Selection {
                leaf: leaves[0],
                treatment: release(),
            }],
        )
        .unwrap_err();
        assert!(err.contains("sealed"), "{err}");
    }
}
