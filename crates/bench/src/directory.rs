//! Key directory figures (issue 9): what a device pays to verify the org's directory, what
//! the directory adds to creating a chat, and how soon an approval is witnessed.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use reqwest::Method;
use vellum_client::{Api, ApprovalStep, Client, Signer};
use vellum_directory::{Change, DeviceRef, DirectoryEntry, DirectoryState, IdentityKey, Mirror};
use vellum_mls::DeviceKey;
use vellum_tlog::cosignature::CosignatureVerifier;
use vellum_tlog::{Checkpoint, RootBuilder};
use vellum_wire::{DirectoryCheckpoint, DirectoryEntries};

use vellum_load::ms;

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

/// The median of `times` (sorted here).
fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    vellum_load::percentile(times, 0.5)
}

/// One org's measures of creating a chat of `members` (see [`create_figures`]).
struct CreateRound {
    /// `create_chat` with the creator's copy of the directory behind by every member.
    behind: Duration,
    /// The same `create_chat` by a creator whose copy is current.
    current: Duration,
    /// A refresh catching up the same entries, and one with nothing new.
    catch_up: Duration,
    up_to_date: Duration,
    /// Reading the copy from the profile (median of 5).
    load: Duration,
    /// Reading the list of other users' identities from the profile (median of 5).
    known: Duration,
    /// Looking up every member's device in the copy.
    lookups: Duration,
    /// Reading the chat's roster (loading the group, every member's credential checked):
    /// what a roster check does besides the lookups (median of 5).
    roster: Duration,
    entries: usize,
}

/// How many times `create_chat` reads the copy from the profile, reads the chat's full
/// roster for a roster check, and looks up every member's device, on its code path
/// (vellum-client at this commit, counted by instrumenting it once): the refresh; the claim
/// check; in each of the two syncs around the add commit, the creator's identity check, the
/// refresh-due check and the roster check (of the chat still without members in the first);
/// the roster check before the title message. The known identities are read once besides
/// the refresh's own read.
const COPY_LOADS: u32 = 9;
const FULL_ROSTERS: u32 = 2;
const FULL_LOOKUPS: u32 = 3;

async fn create_round(members: usize, behind_first: bool) -> Result<CreateRound> {
    let org = crate::start_org().await?;
    // Both enrolled before everyone else and current then, never refreshed since: their
    // copies are behind by the members' identities.
    let mut alice = org.client("alice").await?;
    let mut carol = org.client("carol").await?;
    alice.refresh_directory().await?;
    carol.refresh_directory().await?;
    let mut devices = Vec::with_capacity(members);
    for i in 1..members {
        let name = format!("m{i}");
        // Two key packages: one for each creator.
        let vellum_load::LightDevice { device_id: id, key } =
            org.light_device_with(&name, 2).await?;
        devices.push((name, id, key.public_key()));
    }
    let names: Vec<String> = devices.iter().map(|(n, _, _)| n.clone()).collect();
    ensure!(alice.directory()?.size() == carol.directory()?.size());

    let started = Instant::now();
    let entries = carol.refresh_directory().await?.len();
    let catch_up = started.elapsed();
    ensure!(
        entries == members - 1,
        "the catch-up brought every member's identity"
    );
    let started = Instant::now();
    ensure!(carol.refresh_directory().await?.is_empty());
    let up_to_date = started.elapsed();
    let mut loads = Vec::new();
    let mut known = Vec::new();
    let mut mirror = None;
    for _ in 0..5 {
        let started = Instant::now();
        mirror = Some(carol.directory()?);
        loads.push(started.elapsed());
        let started = Instant::now();
        ensure!(carol.known_identities()?.len() + 1 >= members);
        known.push(started.elapsed());
    }
    let mirror = mirror.expect("loaded above");
    let started = Instant::now();
    for (user, id, key) in &devices {
        ensure!(mirror.state.vouch(user, id, key).is_vouched());
    }
    let lookups = started.elapsed();

    let ((behind, chat), (current, _)) = if behind_first {
        let behind = timed_create(&mut alice, &names).await?;
        (behind, timed_create(&mut carol, &names).await?)
    } else {
        let current = timed_create(&mut carol, &names).await?;
        (timed_create(&mut alice, &names).await?, current)
    };
    let mut rosters = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        ensure!(alice.members(&chat)?.len() == members);
        rosters.push(started.elapsed());
    }
    Ok(CreateRound {
        behind,
        current,
        catch_up,
        up_to_date,
        load: median(&mut loads),
        known: median(&mut known),
        lookups,
        roster: median(&mut rosters),
        entries,
    })
}

/// `create_chat` with `names`, end to end; and the chat.
async fn timed_create(client: &mut Client, names: &[String]) -> Result<(Duration, String)> {
    let started = Instant::now();
    let chat = client
        .create_chat("big", names, Default::default(), None)
        .await?;
    let took = started.elapsed();
    ensure!(client.members(&chat)?.len() == names.len() + 1);
    Ok((took, chat))
}

/// What the key directory adds to creating a chat of `members` (median of `rounds` orgs).
/// The creator alice is a full client, the others enrolled devices with their identities in
/// the directory. Measured in each org: `create_chat` by alice, whose copy is behind by the
/// members' identities (caught up inside it), and by carol, enrolled with her but whose copy
/// is current; and carol's refresh catching up the same entries, a refresh with nothing new,
/// one read of the copy and of the known identities, one lookup of every member's device,
/// and one read of the new chat's roster. The directory work inside alice's create is that
/// refresh plus the reads and lookups counted on its code path ([`COPY_LOADS`],
/// [`FULL_ROSTERS`], [`FULL_LOOKUPS`]); the rest is what the same create costs without it.
pub async fn create_figures(members: usize, rounds: usize) -> Result<()> {
    let mut all = Vec::with_capacity(rounds);
    for round in 0..rounds {
        all.push(create_round(members, round % 2 == 0).await?);
    }
    let pick = |f: fn(&CreateRound) -> Duration| median(&mut all.iter().map(f).collect::<Vec<_>>());
    let behind = pick(|r| r.behind);
    let current = pick(|r| r.current);
    let catch_up = pick(|r| r.catch_up);
    let up_to_date = pick(|r| r.up_to_date);
    let load = pick(|r| r.load);
    let known = pick(|r| r.known);
    let lookups = pick(|r| r.lookups);
    let roster = pick(|r| r.roster);
    let directory =
        catch_up + load * (COPY_LOADS - 1) + known + roster * FULL_ROSTERS + lookups * FULL_LOOKUPS;
    let rest = behind.saturating_sub(directory);
    println!(
        "| {members} | {} | {} | {:.1}% | {} | {} ({} entries) | {} | {} / {} | {} | {} |",
        ms(behind),
        ms(directory),
        directory.as_secs_f64() * 100.0 / rest.as_secs_f64(),
        ms(current),
        ms(catch_up),
        all[0].entries,
        ms(up_to_date),
        ms(load),
        ms(known),
        ms(roster),
        ms(lookups),
    );
    Ok(())
}

/// Time from approving a device (step 3 of the exchange) to a cosigned checkpoint that holds
/// the approval: an org whose directory a witness follows; per run a new user with two full
/// clients, the second pending. Steps 1 and 2 run untimed; from the start of step 3 a
/// separate task polls `GET /v1/directory/checkpoint` (signed by another device) every
/// [`POLL`] until the checkpoint covers the approval and carries the witness's cosignature.
pub async fn approval_figures(runs: usize) -> Result<()> {
    let (org, witness) = crate::start_witnessed_org().await?;
    let vellum_load::LightDevice {
        device_id: watcher,
        key: watcher_key,
    } = org.light_device("watcher").await?;
    let seed = watcher_key.seed();
    let api = Api::new(&org.url)?;
    // The log so far: upgrade_done and the watcher's identity.
    let mut size = 2;
    wait_for_checkpoint(&api, &watcher, &watcher_key, &witness, size).await?;
    let (mut approved, mut cosigned) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let user = format!("u{run}");
        let mut first = org.client(&user).await?;
        size += 1; // its identity
        let code = org.device_code(&user).await?;
        let mut second =
            Client::enroll(&org.root.join(format!("{user}-2")), &org.url, &user, &code).await?;
        let device = second.device_id().to_owned();
        first.approve_device(&device, None).await?;
        let shown = second
            .devices()
            .await?
            .devices
            .into_iter()
            .find_map(|d| d.code)
            .context("the new device shows no code")?;
        // Everything before is witnessed first: the figure is the approval's alone.
        let before = wait_for_checkpoint(&api, &watcher, &watcher_key, &witness, size).await?;
        ensure!(before == size, "the log holds {before} entries, not {size}");
        let started = Instant::now();
        let poll = {
            let (url, watcher, witness) = (org.url.clone(), watcher.clone(), witness.clone());
            tokio::spawn(async move {
                let api = Api::new(&url)?;
                let key = DeviceKey::from_seed(&seed)?;
                wait_for_checkpoint(&api, &watcher, &key, &witness, size + 1).await?;
                anyhow::Ok(started.elapsed())
            })
        };
        let step = first.approve_device(&device, Some(&shown)).await?;
        approved.push(started.elapsed());
        ensure!(matches!(step, ApprovalStep::Approved { .. }));
        cosigned.push(poll.await??);
        // The entry the checkpoint took in is this approval.
        let signer = Signer {
            device_id: &watcher,
            key: &watcher_key,
        };
        let page: DirectoryEntries = api
            .call(
                Method::GET,
                &format!("/v1/directory/entries?start={size}&limit=1"),
                None::<&()>,
                Some(&signer),
                None,
            )
            .await?;
        let entry = DirectoryEntry::parse(&page.entries[0])?;
        ensure!(
            matches!(&entry.change, Change::Approved { device: d, .. } if d.device_id == device),
            "entry {size} is not the approval of {device}"
        );
        size += 1;
    }
    let max = *cosigned.iter().max().expect("at least one run");
    println!(
        "| approval (step 3) to a witness-cosigned checkpoint holding it, ms ({runs} runs) | median {} / max {} |",
        ms(median(&mut cosigned)),
        ms(max)
    );
    println!(
        "| step 3 itself (`approve_device` with the code) returns, ms | median {} |",
        ms(median(&mut approved))
    );
    Ok(())
}

/// How often the approval figure polls the checkpoint.
const POLL: Duration = Duration::from_millis(2);

/// Polls the served checkpoint until it holds at least `size` entries and carries the
/// witness's cosignature; returns its size.
async fn wait_for_checkpoint(
    api: &Api,
    device_id: &str,
    key: &DeviceKey,
    witness: &CosignatureVerifier,
    size: u64,
) -> Result<u64> {
    let signer = Signer { device_id, key };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let served: DirectoryCheckpoint = api
            .call(
                Method::GET,
                "/v1/directory/checkpoint",
                None::<&()>,
                Some(&signer),
                None,
            )
            .await?;
        if let Ok((checkpoint, _)) = witness.verify(&served.note) {
            if checkpoint.size >= size {
                return Ok(checkpoint.size);
            }
        }
        ensure!(
            Instant::now() < deadline,
            "no cosigned checkpoint of {size} entries within a minute"
        );
        tokio::time::sleep(POLL).await;
    }
}
