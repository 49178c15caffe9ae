//! Issue 8, item 4: an auditor reads the log without the records token (C2SP tlog-tiles:
//! the checkpoint and hash tiles), and never reads a leaf's content.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use tower::ServiceExt;
use vellum_archive::{Archive, Leaf};

use vellum_archiver::{app, ArchiveHandle, ArchiverState, OwedReceipts, Vault};
use vellum_tlog::tiles::{self, Tile, TileReader};
use vellum_tlog::{
    verify_consistency, verify_inclusion, Checkpoint, Error, Hash, NoteSigner, NoteVerifier,
};

struct Log {
    app: Router,
    vkey: String,
    /// Leaf hashes, as a sender who holds its leaf knows its own.
    hashes: Vec<Hash>,
    /// The first checkpoint's note, as an auditor kept it.
    old_note: String,
    _dir: tempfile::TempDir,
}

fn access(archive: &mut Archive, i: u64) -> Hash {
    let index = archive
        .append(Leaf::Access {
            time: i as i64,
            action: "search".into(),
            detail: format!("query sha256:{i:032x} -> 1 records"),
        })
        .unwrap();
    archive.leaf_hash(index).unwrap()
}

/// 100 leaves, a checkpoint, 200 more, a checkpoint, and 5 leaves no checkpoint covers yet.
fn log() -> Log {
    let dir = tempfile::tempdir().unwrap();
    let signer = NoteSigner::new("records.test/vellum", &[5; 32]).unwrap();
    let vkey = signer.verifier_key();
    let mut archive = Archive::open(dir.path(), signer).unwrap();
    let mut hashes: Vec<Hash> = (0..100).map(|i| access(&mut archive, i)).collect();
    let old_note = archive.checkpoint().unwrap();
    hashes.extend((100..300).map(|i| access(&mut archive, i)));
    archive.checkpoint().unwrap();
    for i in 300..305 {
        access(&mut archive, i);
    }
    let vault = sealed_vault(archive);
    let state = Arc::new(ArchiverState {
        vault,
        settings: Default::default(),
        console: Default::default(),
    });
    Log {
        app: app(state),
        vkey,
        hashes,
        old_note,
        _dir: dir,
    }
}

async fn get(app: &Router, path: &str) -> (StatusCode, header::HeaderMap, Vec<u8>) {
    let request = Request::get(path).body(Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (parts.status, parts.headers, body.to_vec())
}

/// The tiles an auditor fetched, by path, with nothing but HTTP GETs.
struct Fetched(HashMap<Tile, Vec<Hash>>);

impl Fetched {
    async fn fetch(app: &Router, wanted: Vec<Tile>) -> Self {
        let mut got = HashMap::new();
        for tile in wanted {
            let (status, headers, body) = get(app, &format!("/{}", tile.path())).await;
            assert_eq!(status, StatusCode::OK, "{}", tile.path());
            assert_eq!(headers[header::CONTENT_TYPE], "application/octet-stream");
            assert!(headers[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable"));
            got.insert(tile, tiles::decode_tile(tile, &body).unwrap());
        }
        Self(got)
    }
}

impl TileReader for Fetched {
    type Error = Error;
    fn read_tile(&self, level: u8, index: u64, width: u16) -> Result<Vec<Hash>, Error> {
        let tile = Tile::new(level, index, width)?;
        self.0
            .get(&tile)
            .cloned()
            .ok_or_else(|| Error::MalformedTile(format!("{} was not fetched", tile.path())))
    }
}

fn open(note: &str, vkey: &str) -> Checkpoint {
    let verifier = NoteVerifier::parse(vkey).unwrap();
    Checkpoint::parse(NoteVerifier::open(note, &[verifier]).unwrap()).unwrap()
}

#[tokio::test]
async fn an_auditor_with_only_the_checkpoint_and_tiles_checks_root_inclusion_and_consistency() {
    let log = log();
    // The records-office API still wants its token...
    let (status, _, _) = get(&log.app, "/v1/status").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // ...the checkpoint does not.
    let (status, headers, body) = get(&log.app, "/checkpoint").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/plain; charset=utf-8");
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    let checkpoint = open(std::str::from_utf8(&body).unwrap(), &log.vkey);
    assert_eq!(checkpoint.size, 300);

    let fetched = Fetched::fetch(&log.app, tiles::root_tiles(300)).await;
    assert_eq!(tiles::tree_root(&fetched, 300).unwrap(), checkpoint.root);

    for index in [0, 7, 255, 256, 299] {
        let fetched = Fetched::fetch(&log.app, tiles::inclusion_tiles(index, 300).unwrap()).await;
        let proof = tiles::inclusion_proof(&fetched, index, 300).unwrap();
        let leaf = &log.hashes[index as usize];
        verify_inclusion(leaf, index, 300, &proof, &checkpoint.root).unwrap();
        // A leaf hash the log does not hold at that index does not verify.
        let other = &log.hashes[(index as usize + 1) % 300];
        assert!(verify_inclusion(other, index, 300, &proof, &checkpoint.root).is_err());
    }

    let old = open(&log.old_note, &log.vkey);
    let fetched = Fetched::fetch(&log.app, tiles::consistency_tiles(old.size, 300).unwrap()).await;
    let proof = tiles::consistency_proof(&fetched, old.size, 300).unwrap();
    verify_consistency(old.size, 300, &old.root, &checkpoint.root, &proof).unwrap();
}

#[tokio::test]
async fn only_hashes_a_checkpoint_covers_are_served_and_never_an_entry() {
    let log = log();
    let (status, _, body) = get(&log.app, "/tile/0/000").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, log.hashes[..256].concat());
    let (status, _, body) = get(&log.app, "/tile/0/001.p/44").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, log.hashes[256..300].concat());
    let (status, _, body) = get(&log.app, "/tile/0/001.p/10").await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, log.hashes[256..266].concat())
    );
    let (status, _, body) = get(&log.app, "/tile/1/000.p/1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, vellum_tlog::root(&log.hashes[..256]).to_vec());

    let json_error = |status: StatusCode, body: &[u8], want: StatusCode, code: &str| {
        assert_eq!(status, want);
        let error: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(error["code"], code, "{error}");
    };
    // Leaves 300..305 are in the log but no checkpoint covers them yet.
    for absent in [
        "/tile/0/001.p/45",
        "/tile/0/001",
        "/tile/1/000",
        "/tile/2/000.p/1",
        "/tile/0/x001/000",
    ] {
        let (status, _, body) = get(&log.app, absent).await;
        json_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    }
    for entries in [
        "/tile/entries/000",
        "/tile/entries/001.p/44",
        "/tile/entries/000.p/1",
        "/tile/entries",
        "/tile/entries/",
        "/tile/entries/x001/234",
        "/tile/entries/nonsense",
    ] {
        let (status, _, body) = get(&log.app, entries).await;
        json_error(status, &body, StatusCode::NOT_FOUND, "not_found");
        assert!(!body.windows(6).any(|w| w == b"search"), "{entries}");
    }
    for malformed in [
        "/tile/0/1",
        "/tile/0/0000",
        "/tile/00/000",
        "/tile/64/000",
        "/tile/abc/000",
        "/tile/0/000.p/0",
        "/tile/0/000.p/256",
        "/tile/0/000.p/044",
        "/tile/0/x000/001",
        "/tile/0/001/x000",
        "/tile/0/000.p/44/more",
        "/tile/0",
        "/tile/8/data/000",
    ] {
        let (status, _, body) = get(&log.app, malformed).await;
        json_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    }
    let (status, _, body) = get(&log.app, "/tile/").await;
    json_error(status, &body, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn before_any_checkpoint_there_is_nothing_to_serve() {
    let dir = tempfile::tempdir().unwrap();
    let signer = NoteSigner::new("records.test/vellum", &[5; 32]).unwrap();
    let mut archive = Archive::open(dir.path(), signer).unwrap();
    access(&mut archive, 0);
    let state = Arc::new(ArchiverState {
        vault: sealed_vault(archive),
        settings: Default::default(),
        console: Default::default(),
    });
    let app = app(state);
    for path in ["/checkpoint", "/tile/0/000.p/1"] {
        let (status, _, body) = get(&app, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(error["code"], "not_found");
    }
}

/// The archiver's actor over `archive`, sealed, owing nothing.
fn sealed_vault(archive: Archive) -> ArchiveHandle {
    let public = vellum_records::generate(3, 2, "records.test/vellum")
        .unwrap()
        .public;
    ArchiveHandle::spawn(Vault::sealed(archive, public, OwedReceipts::in_memory()).unwrap())
        .unwrap()
}
