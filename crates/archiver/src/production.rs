//! Gathering a production's input from the archive (issue 11): each selected record opened,
//! with its leaf's public encoding and an inclusion proof against the newest cosigned
//! checkpoint. (Contract: the production work implements it.)

use vellum_production::{ProducedItem, Treatment};

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
}

/// Opens every selected record (the archive must be unsealed) and proves it.
pub fn gather(vault: &Vault, selection: &[Selection]) -> Result<Gathered, String> {
    let _ = (vault, selection);
    Err("productions are not built yet".into())
}
