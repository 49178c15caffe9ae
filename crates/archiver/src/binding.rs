//! The custodians' binding of this archiver (issue 8): at an unseal that assembles the
//! records key, the archiver states what it is (its device and identity key, its log key,
//! the origin, its witnesses) and, if that differs from its newest binding, signs the
//! statement with the binding key derived from the records seed. Only k custodians' shares
//! make that key, so nobody else (the admin who ran `records init` included) can bind an
//! archiver. The binding is kept with the archive, for auditors, and handed to the delivery
//! server, for devices.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vellum_record::{ArchiverBinding, RecordsPublic, SignedBinding, BINDING_VERSION};
use vellum_wire::PutBinding;

use crate::actor::Vault;

/// What the archiver binds, and what it knows of the bindings so far.
pub struct Binder {
    pub device_id: String,
    /// The device's signature key, base64.
    pub identity: String,
    pub origin: String,
    pub witnesses: Vec<String>,
    pub witness_quorum: u32,
    /// Where the upgraded `records.pub` (version 2) is written: `DATA/records.pub`.
    pub public_path: PathBuf,
    /// The newest binding the delivery server holds (verified), as far as this archiver knows.
    pub on_server: Option<(SignedBinding, ArchiverBinding)>,
    /// A binding the server does not hold yet, retried until it does.
    pub pending: Option<Pending>,
    /// When the next upload attempt is due.
    pub retry_at: Instant,
}

/// A binding on its way to the delivery server.
#[derive(Clone)]
pub struct Pending {
    pub signed: SignedBinding,
    pub statement: ArchiverBinding,
    pub request: PutBinding,
}

/// How long a failed upload waits before the next try.
pub const UPLOAD_RETRY: Duration = Duration::from_secs(2);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The bindings kept with the archive that verify against `public`, oldest first. One that
/// does not (damage, or another records key's) is logged and ignored.
pub fn local_bindings(vault: &Vault) -> Vec<(SignedBinding, ArchiverBinding)> {
    let texts = match vault.archive.binding_texts() {
        Ok(texts) => texts,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the archive's bindings");
            return Vec::new();
        }
    };
    let mut out: Vec<(SignedBinding, ArchiverBinding)> = texts
        .iter()
        .filter_map(|text| {
            let signed = SignedBinding::parse(text).ok()?;
            match signed.verify(&vault.public) {
                Ok(statement) => Some((signed, statement)),
                Err(e) => {
                    tracing::error!(error = %e, "ignoring a binding in the archive that does not verify");
                    None
                }
            }
        })
        .collect();
    out.sort_by_key(|(_, b)| b.serial);
    out
}

/// The upload of a binding: with `records.pub` when it is version 2, which the server takes
/// as the upgrade of a stored version 1 (and as nothing new otherwise).
fn upload_of(
    signed: &SignedBinding,
    statement: &ArchiverBinding,
    public: &RecordsPublic,
) -> Pending {
    Pending {
        signed: signed.clone(),
        statement: statement.clone(),
        request: PutBinding {
            binding: signed.to_json(),
            records_public: (public.version == 2).then(|| public.to_json()),
        },
    }
}

/// At start: the newest binding kept with the archive, if the server lacks it.
pub fn pending_at_start(vault: &mut Vault) {
    let newest = local_bindings(vault).pop();
    let public = vault.public.clone();
    let Some(binder) = vault.binder.as_mut() else {
        return;
    };
    if let Some((signed, statement)) = newest {
        if binder
            .on_server
            .as_ref()
            .is_none_or(|(_, b)| b.serial < statement.serial)
        {
            binder.pending = Some(upload_of(&signed, &statement, &public));
        }
    }
}

/// Whether the delivery server holds a binding of the key this archive signs with now:
/// only then do devices accept receipts of its checkpoints.
pub fn current_key_on_server(vault: &Vault) -> bool {
    match &vault.binder {
        None => true, // not bound through the server (the actor's own tests)
        Some(b) => {
            b.pending.is_none()
                && b.on_server
                    .as_ref()
                    .is_some_and(|(_, s)| s.log_key == vault.archive.verifier_key())
        }
    }
}

/// The serial of the newest binding kept with the archive.
pub fn newest_serial(vault: &Vault) -> Option<u64> {
    local_bindings(vault).last().map(|(_, b)| b.serial)
}

/// Run on the actor right after an unseal assembled the key: binds this archiver if its
/// statement differs from the newest binding. Returns the serial of a new binding.
pub fn bind(vault: &mut Vault) -> Result<Option<u64>, String> {
    if vault.binder.is_none() || vault.secret.is_none() {
        return Ok(None);
    }
    // records.pub version 1 (an archive from before bindings): the assembled seed yields its
    // version 2, with the origin and the binding key. Written before anything is signed.
    if vault.public.version == 1 {
        let (secret, binder) = (vault.secret.as_ref(), vault.binder.as_ref());
        let (Some(secret), Some(binder)) = (secret, binder) else {
            return Ok(None);
        };
        let upgraded = secret
            .upgrade_public(&vault.public, &binder.origin)
            .map_err(|e| e.to_string())?;
        vellum_archive::write_atomic(&binder.public_path, upgraded.to_json().as_bytes(), 0o644)
            .map_err(|e| e.to_string())?;
        tracing::info!(path = %binder.public_path.display(), "records.pub upgraded to version 2");
        vault.public = upgraded;
    }
    let local = local_bindings(vault);
    let log_key = vault.archive.verifier_key();
    let transitions = vault.archive.transitions().map_err(|e| e.to_string())?;
    let binder = vault.binder.as_mut().expect("checked above");
    let newest = local
        .last()
        .map(|(_, b)| b)
        .into_iter()
        .chain(binder.on_server.as_ref().map(|(_, b)| b))
        .max_by_key(|b| b.serial)
        .cloned();
    let statement = ArchiverBinding {
        version: BINDING_VERSION,
        serial: newest.as_ref().map_or(1, |b| b.serial + 1),
        origin: binder.origin.clone(),
        archiver_device: binder.device_id.clone(),
        archiver_identity: binder.identity.clone(),
        log_key: log_key.clone(),
        witnesses: binder.witnesses.clone(),
        witness_quorum: binder.witness_quorum,
        issued_at: now_ms(),
        // The history this log key continues: what the newest binding of this very key said,
        // or else the key the log last moved on from (an upgrade, or a restored archive).
        previous: match local.last() {
            Some((_, b)) if b.log_key == log_key => b.previous.clone(),
            _ => transitions.last().cloned(),
        },
    };
    if let Some(newest) = newest.filter(|n| n.same_statement(&statement)) {
        // Already bound. A restored archive may lack the binding the server holds: it is
        // kept with the archive now, for auditors.
        let from_server = binder
            .on_server
            .as_ref()
            .filter(|(_, b)| b.serial == newest.serial);
        if let (Some((signed, _)), false) = (
            from_server,
            local.iter().any(|(_, b)| b.serial == newest.serial),
        ) {
            vault
                .archive
                .save_binding(newest.serial, signed)
                .map_err(|e| e.to_string())?;
        }
        return Ok(None);
    }
    let secret = vault.secret.as_ref().expect("checked above");
    let signed = secret.sign_binding(&statement);
    vault
        .archive
        .save_binding(statement.serial, &signed)
        .map_err(|e| e.to_string())?;
    let detail = format!(
        "binding {}: archiver device {}, log {}, {} witness(es), quorum {}{}",
        statement.serial,
        statement.archiver_device,
        statement.log_key,
        statement.witnesses.len(),
        statement.witness_quorum,
        statement
            .previous
            .as_ref()
            .map(|p| format!(", continuing {} from size {}", p.log_key, p.size))
            .unwrap_or_default()
    );
    crate::api::log_access(vault, "bind", &detail);
    let public = vault.public.clone();
    let binder = vault.binder.as_mut().expect("checked above");
    binder.pending = Some(upload_of(&signed, &statement, &public));
    binder.retry_at = Instant::now();
    tracing::info!(
        serial = statement.serial,
        "the custodians bound this archiver"
    );
    Ok(Some(statement.serial))
}

#[cfg(test)]
mod tests {
    use vellum_archive::Archive;
    use vellum_records::{generate, Generated, UnsealProgress};

    use super::*;
    use crate::sink::OwedReceipts;

    const ORIGIN: &str = "records.test/vellum";

    fn binder(dir: &std::path::Path, witnesses: Vec<String>) -> Binder {
        Binder {
            device_id: "archiver-device".into(),
            identity: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
            origin: ORIGIN.into(),
            witnesses,
            witness_quorum: 0,
            public_path: dir.join("records.pub"),
            on_server: None,
            pending: None,
            retry_at: Instant::now(),
        }
    }

    /// A vault over `dir/archive` for `public`, unsealed with two shares of `g`.
    fn unsealed(dir: &std::path::Path, public: RecordsPublic, g: &Generated) -> Vault {
        let signer = vellum_tlog::NoteSigner::new(ORIGIN, &[5; 32]).unwrap();
        let archive = Archive::open(&dir.join("archive"), signer).unwrap();
        let mut vault = Vault::sealed(archive, public, OwedReceipts::in_memory()).unwrap();
        vault.binder = Some(binder(dir, Vec::new()));
        vault.unsealer.add(&g.shares[0]).unwrap();
        let UnsealProgress::Unsealed(secret) = vault.unsealer.add(&g.shares[2]).unwrap() else {
            panic!("two shares unseal")
        };
        vault.secret = Some(secret);
        vault
    }

    #[test]
    fn issue8_an_unseal_binds_once_and_again_only_when_the_statement_changes() {
        let dir = tempfile::tempdir().unwrap();
        let g = generate(3, 2, ORIGIN).unwrap();
        let mut vault = unsealed(dir.path(), g.public.clone(), &g);
        assert!(!current_key_on_server(&vault), "nothing on the server yet");
        assert_eq!(bind(&mut vault).unwrap(), Some(1));
        let pending = vault.binder.as_ref().unwrap().pending.clone().unwrap();
        assert_eq!(pending.statement.archiver_device, "archiver-device");
        assert_eq!(pending.statement.log_key, vault.archive.verifier_key());
        assert_eq!(pending.request.records_public, Some(g.public.to_json()));
        assert_eq!(
            SignedBinding::parse(&pending.request.binding)
                .unwrap()
                .verify(&g.public)
                .unwrap(),
            pending.statement
        );
        // Nothing changed: the next unseal signs nothing.
        assert_eq!(bind(&mut vault).unwrap(), None);
        assert_eq!(newest_serial(&vault), Some(1));
        // New witnesses: a new binding, the next serial.
        let witness = vellum_tlog::cosignature::CosignatureSigner::new("w.example/w", &[1; 32])
            .unwrap()
            .verifier_key();
        vault.binder.as_mut().unwrap().witnesses = vec![witness.clone()];
        assert_eq!(bind(&mut vault).unwrap(), Some(2));
        let newest = local_bindings(&vault).pop().unwrap().1;
        assert_eq!((newest.serial, newest.witnesses), (2, vec![witness]));
        // A server that holds a higher serial (another archiver was bound since) raises the
        // next one above it.
        let (signed, mut statement) = local_bindings(&vault).pop().unwrap();
        statement.serial = 9;
        vault.binder.as_mut().unwrap().on_server = Some((signed, statement));
        vault.binder.as_mut().unwrap().device_id = "next-device".into();
        assert_eq!(bind(&mut vault).unwrap(), Some(10));
        // Sealed: nothing can be signed.
        vault.secret = None;
        vault.binder.as_mut().unwrap().device_id = "third-device".into();
        assert_eq!(bind(&mut vault).unwrap(), None);
    }

    #[test]
    fn issue8_a_version_1_records_pub_is_upgraded_before_the_first_binding() {
        let dir = tempfile::tempdir().unwrap();
        let g = generate(3, 2, ORIGIN).unwrap();
        let v1 = RecordsPublic {
            version: 1,
            origin: None,
            binding_key: None,
            ..g.public.clone()
        };
        let mut vault = unsealed(dir.path(), v1.clone(), &g);
        assert_eq!(bind(&mut vault).unwrap(), Some(1));
        let written =
            RecordsPublic::parse(&std::fs::read_to_string(dir.path().join("records.pub")).unwrap())
                .unwrap();
        assert_eq!(
            written, g.public,
            "version 2 of the same key, from the seed"
        );
        assert!(written.same_key(&v1));
        assert_eq!(vault.public, written);
        let pending = vault.binder.as_ref().unwrap().pending.clone().unwrap();
        assert_eq!(pending.request.records_public, Some(written.to_json()));
    }

    #[test]
    fn issue8_a_binding_the_server_lacks_is_handed_to_it_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let g = generate(3, 2, ORIGIN).unwrap();
        let mut vault = unsealed(dir.path(), g.public.clone(), &g);
        bind(&mut vault).unwrap();
        let (signed, statement) = local_bindings(&vault).pop().unwrap();
        // A restart: nothing pending in memory; the server has nothing.
        vault.binder = Some(binder(dir.path(), Vec::new()));
        pending_at_start(&mut vault);
        assert!(vault.binder.as_ref().unwrap().pending.is_some());
        assert!(
            !current_key_on_server(&vault),
            "no receipts until it is there"
        );
        // The server has it: nothing to send, receipts may go.
        vault.binder = Some(Binder {
            on_server: Some((signed, statement)),
            ..binder(dir.path(), Vec::new())
        });
        pending_at_start(&mut vault);
        assert!(vault.binder.as_ref().unwrap().pending.is_none());
        assert!(current_key_on_server(&vault));
    }
}
