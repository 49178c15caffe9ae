//! C2SP tlog-tiles over the archive, and proofs from tiles.
//!
//! Why in memory and not in `tiles/` files: the archive already holds every leaf hash in
//! memory (32 bytes a leaf, read and checked from log.bin at open), which is level 0. Levels
//! 1 and up are 1/255 of that (125 KiB at a million leaves) and are derived from it in one
//! hash per leaf, so keeping them beside it costs nothing at open and nothing per append.
//! Files of tiles would be a second copy of what log.bin already commits to, with crash states
//! of their own to check at every open, and no faster to read. The index catches up lazily
//! when a tile or proof is asked for (amortised one hash per new leaf), so the append path is
//! untouched. A tile is then a slice copy, and a proof reads O(log n) tiles instead of
//! hashing all n leaves.

use std::sync::PoisonError;

use vellum_tlog::tiles::{self, IndexReader, Tile};
use vellum_tlog::Hash;

use crate::{Archive, Error};

impl Archive {
    fn with_tiles<T>(&self, f: impl FnOnce(&IndexReader<'_>) -> T) -> T {
        // The index only ever grows by whole tiles, so a panic mid-extend leaves it usable.
        let mut index = self.tiles.lock().unwrap_or_else(PoisonError::into_inner);
        index.extend(&self.leaf_hashes);
        f(&index.reader(&self.leaf_hashes))
    }

    fn check_size(&self, index: u64, size: u64) -> Result<(), Error> {
        if size > self.size() {
            return Err(vellum_tlog::Error::OutOfRange { index, size }.into());
        }
        Ok(())
    }

    /// The hashes of `tile`, if the log holds them all.
    pub fn tile(&self, tile: Tile) -> Result<Vec<Hash>, Error> {
        if !tile.is_within(self.size()) {
            return Err(Error::Invalid(format!(
                "{} is not in a log of {} leaves",
                tile.path(),
                self.size()
            )));
        }
        Ok(self.with_tiles(|r| {
            use vellum_tlog::tiles::TileReader;
            r.read_tile(tile.level, tile.index, tile.width)
        })?)
    }

    /// The root of the first `size` leaves, from O(log n) tiles.
    pub fn tree_root(&self, size: u64) -> Result<Hash, Error> {
        self.check_size(size, size)?;
        Ok(self.with_tiles(|r| tiles::tree_root(r, size))?)
    }

    pub(crate) fn tiled_inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, Error> {
        self.check_size(index, size)?;
        Ok(self.with_tiles(|r| tiles::inclusion_proof(r, index, size))?)
    }

    pub(crate) fn tiled_consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, Error> {
        self.check_size(old, new)?;
        Ok(self.with_tiles(|r| tiles::consistency_proof(r, old, new))?)
    }
}

#[cfg(test)]
mod tests {
    use vellum_tlog::{NoteSigner, RootBuilder};

    use super::*;
    use crate::Leaf;

    fn access(archive: &mut Archive, i: u64) {
        archive
            .append(Leaf::Access {
                time: i as i64,
                action: "test".into(),
                detail: format!("{i}"),
            })
            .unwrap();
    }

    #[test]
    fn tiles_and_proofs_follow_the_log_as_it_grows_and_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let signer = || NoteSigner::new("records.test/vellum", &[7; 32]).unwrap();
        let mut archive = Archive::open(dir.path(), signer()).unwrap();
        let mut hashes = Vec::new();
        for i in 0..300u64 {
            access(&mut archive, i);
            hashes.push(archive.leaf_hash(i).unwrap());
            let size = i + 1;
            // Proofs before and after the first full tile, asked for as the log grows.
            if [1, 2, 255, 256, 257, 300].contains(&size) {
                let mut builder = RootBuilder::new();
                hashes.iter().for_each(|h| builder.push(*h));
                assert_eq!(archive.tree_root(size).unwrap(), builder.root());
                for index in [0, size / 2, size - 1] {
                    assert_eq!(
                        archive.inclusion_proof(index, size).unwrap(),
                        vellum_tlog::inclusion_proof(&hashes, index, size).unwrap()
                    );
                }
                for old in [1, size / 3, size - 1] {
                    assert_eq!(
                        archive.consistency_proof(old, size).unwrap(),
                        vellum_tlog::consistency_proof(&hashes, old, size).unwrap()
                    );
                }
            }
        }
        let full = Tile::new(0, 0, 256).unwrap();
        assert_eq!(archive.tile(full).unwrap(), hashes[..256].to_vec());
        let partial = Tile::new(0, 1, 44).unwrap();
        assert_eq!(archive.tile(partial).unwrap(), hashes[256..].to_vec());
        let above = Tile::new(1, 0, 1).unwrap();
        assert_eq!(
            archive.tile(above).unwrap(),
            vec![vellum_tlog::root(&hashes[..256])]
        );
        // What the log does not hold yet is refused, not invented.
        for absent in [
            Tile::new(0, 1, 45).unwrap(),
            Tile::new(0, 1, 256).unwrap(),
            Tile::new(1, 0, 2).unwrap(),
        ] {
            assert!(archive.tile(absent).is_err(), "{}", absent.path());
        }
        assert!(archive.inclusion_proof(0, 301).is_err());
        assert!(archive.consistency_proof(2, 301).is_err());
        assert!(archive.tree_root(301).is_err());
        drop(archive);
        let archive = Archive::open(dir.path(), signer()).unwrap();
        assert_eq!(archive.tile(partial).unwrap(), hashes[256..].to_vec());
        assert_eq!(
            archive.inclusion_proof(299, 300).unwrap(),
            vellum_tlog::inclusion_proof(&hashes, 299, 300).unwrap()
        );
    }
}
