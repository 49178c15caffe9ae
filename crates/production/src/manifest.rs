//! `manifest.json`: what a court checks a production against. The SHA-256 of every other
//! file; the cosigned checkpoint (and the log's key and binding); and for every record its
//! leaf, inclusion proof and, for a released record, the leaf's data and the openings of its
//! content commitments for the fields produced exactly as sealed. A redacted field gets no
//! opening (its commitment stays closed); a record withheld whole shows only its leaf hash,
//! proof and exemption, so that the court sees it exists.

use std::path::Path;

use base64::{engine::general_purpose::STANDARD, Engine};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vellum_record::content::{parse_salt, Disclosure};

use crate::pdf::Bates;
use crate::view::View;
use crate::{Error, ProductionInput, Treatment};

pub const FILE: &str = "manifest.json";
pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub case_id: String,
    /// Unix ms.
    pub produced_at: i64,
    pub origin: String,
    /// The log's C2SP note verifier key.
    pub verifier_key: String,
    /// The custodians' signed binding of the log (`vellum_record::SignedBinding` JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<String>,
    /// The cosigned checkpoint note every proof is against.
    pub checkpoint: String,
    pub checkpoint_size: u64,
    pub files: Vec<ManifestFile>,
    pub records: Vec<ManifestRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRecord {
    pub leaf: u64,
    /// `released` or `withheld`.
    pub treatment: String,
    /// For a record withheld whole: its exemption (`b6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exemption: Option<String>,
    /// The leaf's public encoding, base64 (released records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_data: Option<String>,
    /// The leaf hash, hex (records withheld whole, whose leaf data is not produced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_hash: Option<String>,
    /// RFC 6962 inclusion proof in the checkpoint's tree, hex.
    pub inclusion_proof: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bates_begin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bates_end: Option<String>,
    /// Openings of the commitments of the fields produced unredacted.
    #[serde(default)]
    pub openings: Vec<Disclosure>,
    /// Committed fields withheld, each with its exemptions (`b6 b7c`).
    #[serde(default)]
    pub withheld_fields: Vec<WithheldField>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithheldField {
    pub field: String,
    pub exemptions: Vec<String>,
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(crate) fn write(
    input: &ProductionInput,
    views: &[View<'_>],
    bates: &Bates,
    files: &[String],
    out: &Path,
    tick: &mut dyn FnMut(u64),
) -> Result<(), Error> {
    let mut listed = Vec::new();
    for name in files {
        let path = out.join(name);
        let bytes = std::fs::read(&path).map_err(|e| Error::Io(path.display().to_string(), e))?;
        listed.push(ManifestFile {
            name: name.clone(),
            bytes: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        });
    }
    let mut records = Vec::new();
    let mut views = views.iter().peekable();
    for item in &input.items {
        let mut entry = ManifestRecord {
            leaf: item.leaf,
            treatment: "released".into(),
            exemption: None,
            leaf_data: None,
            leaf_hash: None,
            inclusion_proof: item.inclusion_proof.clone(),
            bates_begin: None,
            bates_end: None,
            openings: vec![],
            withheld_fields: vec![],
        };
        match &item.treatment {
            Treatment::Withhold { exemption } => {
                let data = STANDARD.decode(&item.leaf_data).map_err(|_| {
                    Error::Invalid(format!("leaf {}: its leaf data is not base64", item.leaf))
                })?;
                entry.treatment = "withheld".into();
                entry.exemption = Some(exemption.as_str().into());
                entry.leaf_hash = Some(hex::encode(vellum_tlog::leaf_hash(&data)));
            }
            Treatment::Release { .. } => {
                let v = views
                    .next_if(|v| std::ptr::eq(v.item, item))
                    .expect("a view for every released item, in order");
                entry.leaf_data = Some(item.leaf_data.clone());
                if let Some((b, e)) = bates.by_leaf.get(&item.leaf) {
                    entry.bates_begin = Some(crate::bates_number(input, *b));
                    entry.bates_end = Some(crate::bates_number(input, *e));
                }
                let (open, closed) = v.produced_fields();
                // A record sealed before content commitments can prove nothing field by field.
                if let Some(salt) = item.record.salt.as_deref().and_then(parse_salt) {
                    entry.openings = item
                        .record
                        .content()
                        .disclose(&salt)
                        .into_iter()
                        .filter(|d| open.contains(&d.field.as_str()))
                        .collect();
                }
                entry.withheld_fields = closed
                    .into_iter()
                    .map(|(field, exemptions)| WithheldField {
                        field: field.into(),
                        exemptions: exemptions.iter().map(|e| e.as_str().into()).collect(),
                    })
                    .collect();
            }
        }
        records.push(entry);
        tick(1);
    }
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        case_id: input.case_id.clone(),
        produced_at: input.produced_at,
        origin: input.origin.clone(),
        verifier_key: input.verifier_key.clone(),
        binding: input.binding.clone(),
        checkpoint: input.checkpoint.clone(),
        checkpoint_size: input.checkpoint_size,
        files: listed,
        records,
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("the manifest serialises");
    crate::write_file(out, FILE, &json)
}
