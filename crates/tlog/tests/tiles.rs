//! Tiled proofs against the O(n) proofs of the same crate, hash for hash, and the
//! certificate-transparency reference roots computed from tiles.

use std::cell::Cell;

use vellum_tlog::tiles::{self, Tile, TileIndex, TileReader};
use vellum_tlog::*;

fn h(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn leaves(n: u32) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

/// Counts reads, so tests can hold proofs to O(log n) tiles.
struct Counting<R>(R, Cell<usize>);

impl<R: TileReader> TileReader for Counting<R> {
    type Error = R::Error;
    fn read_tile(&self, level: u8, index: u64, width: u16) -> Result<Vec<Hash>, R::Error> {
        self.1.set(self.1.get() + 1);
        self.0.read_tile(level, index, width)
    }
}

#[test]
fn ct_reference_roots_from_tiles() {
    let leaves: Vec<Hash> = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|d| leaf_hash(&hex::decode(d).unwrap()))
    .collect();
    let roots = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    let mut index = TileIndex::new();
    index.extend(&leaves);
    for (size, want) in roots.iter().enumerate() {
        let reader = index.reader(&leaves[..size]);
        assert_eq!(
            tiles::tree_root(&reader, size as u64).unwrap(),
            h(want),
            "size {size}"
        );
        // The one tile such a tree has is the partial level-0 tile of its leaf hashes.
        if size > 0 {
            let tile = Tile::at(0, 0, size as u64).unwrap();
            assert_eq!(tile.path(), format!("tile/0/000.p/{size}"));
            let bytes = tiles::encode_tile(
                &reader
                    .read_tile(tile.level, tile.index, tile.width)
                    .unwrap(),
            );
            assert_eq!(bytes, leaves[..size].concat());
            assert_eq!(
                tiles::decode_tile(tile, &bytes).unwrap(),
                leaves[..size].to_vec()
            );
            assert!(tiles::decode_tile(tile, &bytes[1..]).is_err());
        }
    }
}

fn check_size(all: &[Hash], index: &TileIndex, size: u64, positions: &[u64]) {
    let reader = Counting(index.reader(&all[..size as usize]), Cell::new(0));
    let levels = (64 - size.leading_zeros()).div_ceil(8) as usize;
    assert_eq!(
        tiles::tree_root(&reader, size).unwrap(),
        root(&all[..size as usize]),
        "root {size}"
    );
    for &i in positions.iter().filter(|i| **i < size) {
        reader.1.set(0);
        let want = inclusion_proof(all, i, size).unwrap();
        assert_eq!(
            tiles::inclusion_proof(&reader, i, size).unwrap(),
            want,
            "inclusion {i}/{size}"
        );
        // At most two tiles per level: the leaf's own and the tree's right edge.
        assert!(reader.1.get() <= 2 * levels, "{} reads", reader.1.get());
        assert_eq!(
            tiles::inclusion_tiles(i, size).unwrap().len(),
            reader.1.get()
        );
    }
    for &old in positions.iter().filter(|o| **o <= size) {
        reader.1.set(0);
        let want = consistency_proof(all, old, size).unwrap();
        assert_eq!(
            tiles::consistency_proof(&reader, old, size).unwrap(),
            want,
            "consistency {old}/{size}"
        );
        assert!(reader.1.get() <= 2 * levels, "{} reads", reader.1.get());
    }
}

#[test]
fn tiled_proofs_equal_the_linear_ones_for_every_size_to_600() {
    let all = leaves(600);
    let mut index = TileIndex::new();
    index.extend(&all);
    for size in 1..=600u64 {
        let mut positions: Vec<u64> = vec![0, 1, 2, 127, 128, 255, 256, 257, 511, 512];
        positions.extend([size / 3, size / 2, size.saturating_sub(2), size - 1, size]);
        positions.extend((0..size).step_by(41));
        check_size(&all, &index, size, &positions);
    }
}

#[test]
fn tiled_proofs_equal_the_linear_ones_around_65536() {
    let all = leaves(65_536 + 256 * 3 + 5);
    let mut index = TileIndex::new();
    index.extend(&all);
    let positions = [
        0, 1, 255, 256, 4_097, 32_768, 65_279, 65_280, 65_535, 65_536, 65_537, 65_792,
    ];
    for size in [65_535, 65_536, 65_537, 65_536 + 256, 65_536 + 256 * 3 + 5] {
        check_size(&all, &index, size, &positions);
    }
    // The tiles a proof needs are known, by path, before fetching them: leaf 0 of 65,537
    // needs its own tile, the level-1 tile above it and the one leaf at the right edge.
    let mut paths: Vec<String> = tiles::inclusion_tiles(0, 65_537)
        .unwrap()
        .iter()
        .map(Tile::path)
        .collect();
    paths.sort();
    assert_eq!(paths, ["tile/0/000", "tile/0/256.p/1", "tile/1/000"]);
    assert!(tiles::root_tiles(65_536)
        .iter()
        .all(|t| t.level == 2 && t.width == 1));
}

#[test]
fn a_reader_that_lies_about_widths_or_sizes_is_an_error_not_a_panic() {
    struct Short;
    impl TileReader for Short {
        type Error = Error;
        fn read_tile(&self, _: u8, _: u64, width: u16) -> Result<Vec<Hash>, Error> {
            Ok(vec![[1; 32]; usize::from(width) - 1])
        }
    }
    assert!(matches!(
        tiles::inclusion_proof(&Short, 3, 10),
        Err(Error::MalformedTile(_))
    ));
    assert!(matches!(
        tiles::inclusion_proof(&Short, 10, 10),
        Err(Error::OutOfRange { .. })
    ));
    assert!(tiles::consistency_proof(&Short, 11, 10).is_err());
    let all = leaves(300);
    let mut index = TileIndex::new();
    index.extend(&all);
    // A tree smaller than the proof's size has no such tile.
    assert!(tiles::inclusion_proof(&index.reader(&all[..200]), 3, 300).is_err());
}
