//! Key directory figures (issue 9): what a device pays to verify the org's directory.

use std::time::Instant;

use anyhow::Result;
use vellum_directory::{Change, DeviceRef, DirectoryState, IdentityKey, Mirror};
use vellum_mls::DeviceKey;
use vellum_tlog::{Checkpoint, RootBuilder};

use crate::ms;

/// A directory of `users` users, each with an identity (first device) and a second approved
/// device: 2 entries per user after `upgrade_done`. Returns the leaves.
fn build_log(users: usize) -> Result<Vec<Vec<u8>>> {
    let mut state = DirectoryState::default();
    let mut leaves = Vec::with_capacity(2 * users + 1);
    let mut append = |state: &mut DirectoryState, user: &str, change: Change| -> Result<()> {
        let leaf = state.next_entry(user, 1, change).to_bytes();
        state.apply(&leaf)?;
        leaves.push(leaf);
        Ok(())
    };
    append(&mut state, "", Change::UpgradeDone)?;
    for i in 0..users {
        let user = format!("user{i:05}");
        let identity = IdentityKey::generate();
        let (first_key, second_key) = (DeviceKey::generate(), DeviceKey::generate());
        let device = |n: u8, key: &DeviceKey| DeviceRef {
            device_id: format!("{i:08x}{n:02x}"),
            signature_key: key.public_key(),
        };
        let first = device(1, &first_key);
        let first_id = first.device_id.clone();
        append(
            &mut state,
            &user,
            identity.identity_change(&user, first, &first_key),
        )?;
        append(
            &mut state,
            &user,
            identity.approve_change(&user, device(2, &second_key), &first_id, &first_key),
        )?;
    }
    Ok(leaves)
}

fn checkpoint(leaves: &[Vec<u8>]) -> Checkpoint {
    let mut builder = RootBuilder::new();
    for leaf in leaves {
        builder.push(vellum_tlog::leaf_hash(leaf));
    }
    Checkpoint {
        origin: "bench/directory".into(),
        size: leaves.len() as u64,
        root: builder.root(),
        extensions: Vec::new(),
    }
}

/// A new device verifying the whole directory, then one more entry; the copy's size at rest.
pub fn directory_figures(users: usize) -> Result<()> {
    let leaves = build_log(users)?;
    let bytes: usize = leaves.iter().map(Vec::len).sum();
    let full = checkpoint(&leaves);
    let started = Instant::now();
    let mut mirror = Mirror::default();
    mirror.extend(&leaves, &full)?;
    let first = started.elapsed();
    println!(
        "| {users} users ({} entries, {:.1} MiB): a new device verifies the whole directory | {} ms ({:.0} µs per entry) |",
        leaves.len(),
        bytes as f64 / (1 << 20) as f64,
        ms(first),
        first.as_secs_f64() * 1e6 / leaves.len() as f64
    );
    let saved = serde_json::to_vec(&mirror)?;
    let started = Instant::now();
    let loaded: Mirror = serde_json::from_slice(&saved)?;
    let load = started.elapsed();
    println!(
        "| {users} users: the verified copy at rest, and loading it | {:.1} MiB, {} ms |",
        saved.len() as f64 / (1 << 20) as f64,
        ms(load)
    );
    // One approval more: what a device pays at each sync that brings a change.
    let mut state = loaded.state.clone();
    let extra = {
        let identity = IdentityKey::generate();
        let user = "newcomer";
        let key = DeviceKey::generate();
        let device = DeviceRef {
            device_id: "newcomer-1".into(),
            signature_key: key.public_key(),
        };
        let leaf = state
            .next_entry(user, 2, identity.identity_change(user, device, &key))
            .to_bytes();
        state.apply(&leaf)?;
        leaf
    };
    let mut grown = leaves;
    grown.push(extra.clone());
    let next = checkpoint(&grown);
    let mut mirror = loaded;
    let started = Instant::now();
    mirror.extend(&[extra], &next)?;
    println!(
        "| {users} users: catching up one new entry | {:.3} ms |",
        started.elapsed().as_secs_f64() * 1e3
    );
    // Looking up every device of every user (what a chat of all users costs to check).
    let started = Instant::now();
    let mut vouched = 0usize;
    for (user, state) in &mirror.state.users {
        for (id, device) in &state.devices {
            vouched += usize::from(
                mirror
                    .state
                    .vouch(user, id, &device.signature_key)
                    .is_vouched(),
            );
        }
    }
    println!(
        "| {users} users: looking up all {vouched} devices in the copy | {:.3} ms |",
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
