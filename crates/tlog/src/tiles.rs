//! C2SP tlog-tiles, sans I/O: tile coordinates and paths, tiles computed from leaf hashes,
//! and roots and RFC 6962 proofs computed by reading O(log n) tiles instead of every leaf.
//!
//! A tile at level `L` holds up to 256 consecutive "stored hashes" of that level: level 0 the
//! leaf hashes, level `L + 1` the Merkle root of each full tile of level `L` (a perfect
//! subtree of `256^(L+1)` leaves). Any node of the tree is the root of at most 128 hashes of a
//! single tile, so a proof reads at most two tiles per level.

use crate::merkle::{empty_root, node_hash, root};
use crate::{Error, Hash};

/// Hashes in a full tile.
pub const TILE_WIDTH: u16 = 256;
/// Tree levels covered by one tile level (`256 = 2^8`).
const TILE_HEIGHT: u32 = 8;
/// The spec's largest level.
const MAX_LEVEL: u8 = 63;
/// 3-digit groups in the largest u64 index.
const MAX_GROUPS: usize = 7;

/// One tile: `width` hashes (256 when full) of level `level`, starting at stored hash
/// `index * 256`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tile {
    pub level: u8,
    pub index: u64,
    pub width: u16,
}

fn bad(why: impl Into<String>) -> Error {
    Error::MalformedTile(why.into())
}

/// A decimal number without leading zeros ("0" itself is fine).
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

impl Tile {
    /// A tile, checked: level at most 63, width 1 to 256.
    pub fn new(level: u8, index: u64, width: u16) -> Result<Self, Error> {
        if level > MAX_LEVEL || width == 0 || width > TILE_WIDTH {
            return Err(bad(format!(
                "level {level} width {width}: levels are 0 to 63, widths 1 to 256"
            )));
        }
        Ok(Self {
            level,
            index,
            width,
        })
    }

    pub fn is_partial(&self) -> bool {
        self.width < TILE_WIDTH
    }

    /// The widest tile `(level, index)` of a tree of `size` leaves, if it has any hash yet.
    pub fn at(level: u8, index: u64, size: u64) -> Option<Self> {
        let stored = stored_count(level, size);
        let before = index.checked_mul(u64::from(TILE_WIDTH))?;
        let width = stored.checked_sub(before)?.min(u64::from(TILE_WIDTH));
        (width > 0 && level <= MAX_LEVEL).then_some(Self {
            level,
            index,
            width: width as u16,
        })
    }

    /// Whether a tree of `size` leaves holds every hash of this tile (so it is served for it).
    pub fn is_within(&self, size: u64) -> bool {
        Self::at(self.level, self.index, size).is_some_and(|t| t.width >= self.width)
    }

    /// Every tile a tree of `size` leaves has: the full ones and, per level, the partial one.
    pub fn all(size: u64) -> Vec<Self> {
        let mut out = Vec::new();
        let mut level = 0u8;
        loop {
            let stored = stored_count(level, size);
            if stored == 0 {
                return out;
            }
            let tiles = stored.div_ceil(u64::from(TILE_WIDTH));
            out.extend((0..tiles).filter_map(|index| Self::at(level, index, size)));
            level += 1;
        }
    }

    /// `tile/<L>/<N>[.p/<W>]`, with `N` in 3-digit groups, all but the last prefixed by `x`.
    pub fn path(&self) -> String {
        let mut groups = Vec::new();
        let mut n = self.index;
        loop {
            groups.push(n % 1000);
            n /= 1000;
            if n == 0 {
                break;
            }
        }
        let mut path = format!("tile/{}/", self.level);
        for (i, group) in groups.iter().rev().enumerate() {
            if i + 1 < groups.len() {
                path.push_str(&format!("x{group:03}/"));
            } else {
                path.push_str(&format!("{group:03}"));
            }
        }
        if self.is_partial() {
            path.push_str(&format!(".p/{}", self.width));
        }
        path
    }

    /// Parses a hash tile path. Only the canonical spelling is accepted, so that each tile has
    /// one name (and one cache entry). Entry bundles (`tile/entries/…`) are not hash tiles.
    pub fn parse_path(path: &str) -> Result<Self, Error> {
        let malformed = || bad(format!("{path:?} is not a tile path tile/<L>/<N>[.p/<W>]"));
        let rest = path.strip_prefix("tile/").ok_or_else(malformed)?;
        let mut elements: Vec<&str> = rest.split('/').collect();
        if elements.len() < 2 {
            return Err(malformed());
        }
        let level = decimal(elements[0])
            .filter(|l| *l <= u64::from(MAX_LEVEL))
            .ok_or_else(|| bad(format!("{path:?}: the level is a number from 0 to 63")))?
            as u8;
        let mut width = TILE_WIDTH;
        let last = elements.len() - 1;
        if let Some(group) = elements[last - 1].strip_suffix(".p") {
            width = decimal(elements[last])
                .filter(|w| (1..u64::from(TILE_WIDTH)).contains(w))
                .ok_or_else(|| bad(format!("{path:?}: a partial width is 1 to 255")))?
                as u16;
            elements[last - 1] = group;
            elements.pop();
        }
        let groups = &elements[1..];
        if groups.is_empty() || groups.len() > MAX_GROUPS {
            return Err(malformed());
        }
        let mut index = 0u64;
        for (i, group) in groups.iter().enumerate() {
            let digits = if i + 1 < groups.len() {
                group.strip_prefix('x').ok_or_else(malformed)?
            } else {
                group
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed());
            }
            let value: u64 = digits.parse().map_err(|_| malformed())?;
            index = index
                .checked_mul(1000)
                .and_then(|n| n.checked_add(value))
                .ok_or_else(malformed)?;
        }
        let tile = Self::new(level, index, width)?;
        // Rejects zero-padded groups ("x000/001"), which would name tile 1 a second time.
        if tile.path() != path {
            return Err(bad(format!(
                "{path:?} is not canonical: the tile's path is {}",
                tile.path()
            )));
        }
        Ok(tile)
    }
}

/// How many stored hashes level `level` has in a tree of `size` leaves: `floor(size / 256^L)`.
fn stored_count(level: u8, size: u64) -> u64 {
    let shift = u32::from(level) * TILE_HEIGHT;
    if shift >= 64 {
        0
    } else {
        size >> shift
    }
}

/// The tile's bytes as served: its hashes, concatenated.
pub fn encode_tile(hashes: &[Hash]) -> Vec<u8> {
    hashes.concat()
}

/// A served tile's bytes back into hashes; refuses any length but `tile.width` hashes.
pub fn decode_tile(tile: Tile, bytes: &[u8]) -> Result<Vec<Hash>, Error> {
    if bytes.len() != usize::from(tile.width) * 32 {
        return Err(bad(format!(
            "{} must be {} bytes, not {}",
            tile.path(),
            usize::from(tile.width) * 32,
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|c| c.try_into().expect("32 bytes"))
        .collect())
}

/// Where proofs get their tiles: a directory, an HTTP server, memory.
pub trait TileReader {
    type Error: From<Error>;

    /// The `width` hashes of tile `index` of level `level`.
    fn read_tile(&self, level: u8, index: u64, width: u16) -> Result<Vec<Hash>, Self::Error>;
}

/// The stored hashes of levels 1 and up (the root of every full tile below), kept beside the
/// leaf hashes that their owner already holds: `1/255` of their size.
#[derive(Debug, Clone, Default)]
pub struct TileIndex {
    /// `upper[i]` holds level `i + 1`.
    upper: Vec<Vec<Hash>>,
    /// Leaves already folded in.
    leaves: u64,
}

impl TileIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds in the full tiles of `leaves` not seen yet; `leaves` must extend the leaves of
    /// earlier calls (an append-only log). Amortised cost: one hash per leaf.
    pub fn extend(&mut self, leaves: &[Hash]) {
        let full = (leaves.len() as u64 / 256) * 256;
        if full <= self.leaves {
            return;
        }
        let mut new: Vec<Hash> = leaves[self.leaves as usize..full as usize]
            .chunks_exact(256)
            .map(root)
            .collect();
        self.leaves = full;
        let mut level = 0;
        while !new.is_empty() {
            if self.upper.len() == level {
                self.upper.push(Vec::new());
            }
            let stored = &mut self.upper[level];
            let from = stored.len();
            stored.extend_from_slice(&new);
            // Hashes for the next level: each newly completed full tile of this one.
            let done_before = from / 256;
            let done_now = stored.len() / 256;
            new = (done_before..done_now)
                .map(|t| root(&stored[t * 256..(t + 1) * 256]))
                .collect();
            level += 1;
        }
    }

    /// Leaves folded in so far (a multiple of 256).
    pub fn leaves(&self) -> u64 {
        self.leaves
    }

    /// A tile reader over `leaves` (level 0) and this index (levels 1 and up).
    pub fn reader<'a>(&'a self, leaves: &'a [Hash]) -> IndexReader<'a> {
        IndexReader {
            index: self,
            leaves,
        }
    }
}

/// [`TileIndex::reader`]: tiles of a tree held in memory.
pub struct IndexReader<'a> {
    index: &'a TileIndex,
    leaves: &'a [Hash],
}

impl TileReader for IndexReader<'_> {
    type Error = Error;

    fn read_tile(&self, level: u8, index: u64, width: u16) -> Result<Vec<Hash>, Error> {
        let tile = Tile::new(level, index, width)?;
        let stored: &[Hash] = if level == 0 {
            self.leaves
        } else {
            self.index
                .upper
                .get(usize::from(level) - 1)
                .map_or(&[], Vec::as_slice)
        };
        let start = index.saturating_mul(256);
        let end = start.saturating_add(u64::from(width));
        if end > stored.len() as u64 {
            return Err(bad(format!("{} is not in this tree", tile.path())));
        }
        Ok(stored[start as usize..end as usize].to_vec())
    }
}

/// The largest power of two smaller than `n` (n > 1), as RFC 6962 splits.
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Node hashes of a tree of `size` leaves, from tiles; each tile is read once.
struct Nodes<'r, R: TileReader> {
    reader: &'r R,
    size: u64,
    read: Vec<(Tile, Vec<Hash>)>,
}

impl<R: TileReader> Nodes<'_, R> {
    fn tile(&mut self, tile: Tile) -> Result<&[Hash], R::Error> {
        let at = match self.read.iter().position(|(t, _)| *t == tile) {
            Some(at) => at,
            None => {
                let hashes = self.reader.read_tile(tile.level, tile.index, tile.width)?;
                if hashes.len() != usize::from(tile.width) {
                    return Err(bad(format!(
                        "{} has {} hashes, not {}",
                        tile.path(),
                        hashes.len(),
                        tile.width
                    ))
                    .into());
                }
                self.read.push((tile, hashes));
                self.read.len() - 1
            }
        };
        Ok(&self.read[at].1)
    }

    /// The root of the perfect subtree of height `height` at position `k`:
    /// `MTH(D[k * 2^height : (k + 1) * 2^height])`, from at most 128 hashes of one tile.
    fn perfect(&mut self, height: u32, k: u64) -> Result<Hash, R::Error> {
        let level = (height / TILE_HEIGHT) as u8;
        let within = height % TILE_HEIGHT;
        let first = k << within;
        let tile = Tile::at(level, first / 256, self.size)
            .ok_or_else(|| bad(format!("no level-{level} tile covers node {k}")))?;
        let offset = (first % 256) as usize;
        let hashes = self.tile(tile)?;
        let span = hashes
            .get(offset..offset + (1 << within))
            .ok_or_else(|| bad("a node reaches past its tile"))?;
        Ok(root(span))
    }

    /// `MTH(D[start:end])`, splitting as RFC 6962 does into perfect subtrees.
    fn range(&mut self, start: u64, end: u64) -> Result<Hash, R::Error> {
        let n = end - start;
        if n.is_power_of_two() && start.is_multiple_of(n) {
            return self.perfect(n.trailing_zeros(), start / n);
        }
        let k = split(n);
        let left = self.range(start, start + k)?;
        let right = self.range(start + k, end)?;
        Ok(node_hash(&left, &right))
    }
}

fn nodes<R: TileReader>(reader: &R, size: u64) -> Nodes<'_, R> {
    Nodes {
        reader,
        size,
        read: Vec::new(),
    }
}

/// MTH of the tree of `size` leaves: what an auditor checks a checkpoint's root against.
pub fn tree_root<R: TileReader>(reader: &R, size: u64) -> Result<Hash, R::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    nodes(reader, size).range(0, size)
}

/// PATH(m, D[n]) from tiles, equal to [`crate::inclusion_proof`] hash for hash.
pub fn inclusion_proof<R: TileReader>(
    reader: &R,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, R::Error> {
    if index >= size {
        return Err(Error::OutOfRange { index, size }.into());
    }
    fn path<R: TileReader>(
        t: &mut Nodes<'_, R>,
        m: u64,
        start: u64,
        n: u64,
    ) -> Result<Vec<Hash>, R::Error> {
        if n <= 1 {
            return Ok(Vec::new());
        }
        let k = split(n);
        if m < k {
            let mut p = path(t, m, start, k)?;
            p.push(t.range(start + k, start + n)?);
            Ok(p)
        } else {
            let mut p = path(t, m - k, start + k, n - k)?;
            p.push(t.range(start, start + k)?);
            Ok(p)
        }
    }
    path(&mut nodes(reader, size), index, 0, size)
}

/// PROOF(m, D[n]) from tiles, equal to [`crate::consistency_proof`] hash for hash.
pub fn consistency_proof<R: TileReader>(
    reader: &R,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, R::Error> {
    if old_size > new_size {
        return Err(Error::OutOfRange {
            index: old_size,
            size: new_size,
        }
        .into());
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    fn subproof<R: TileReader>(
        t: &mut Nodes<'_, R>,
        m: u64,
        start: u64,
        n: u64,
        complete: bool,
    ) -> Result<Vec<Hash>, R::Error> {
        if m == n {
            return Ok(if complete {
                Vec::new()
            } else {
                vec![t.range(start, start + n)?]
            });
        }
        let k = split(n);
        if m <= k {
            let mut p = subproof(t, m, start, k, complete)?;
            p.push(t.range(start + k, start + n)?);
            Ok(p)
        } else {
            let mut p = subproof(t, m - k, start + k, n - k, false)?;
            p.push(t.range(start, start + k)?);
            Ok(p)
        }
    }
    subproof(&mut nodes(reader, new_size), old_size, 0, new_size, true)
}

/// Answers every read with zeros and notes the tile: which tiles a computation needs
/// depends only on the sizes and indexes, never on the hashes.
struct Recorder(std::cell::RefCell<Vec<Tile>>);

impl TileReader for Recorder {
    type Error = Error;

    fn read_tile(&self, level: u8, index: u64, width: u16) -> Result<Vec<Hash>, Error> {
        self.0.borrow_mut().push(Tile::new(level, index, width)?);
        Ok(vec![[0; 32]; usize::from(width)])
    }
}

fn recorded(f: impl FnOnce(&Recorder) -> Result<(), Error>) -> Result<Vec<Tile>, Error> {
    let recorder = Recorder(Default::default());
    f(&recorder)?;
    Ok(recorder.0.into_inner())
}

/// The tiles [`tree_root`] reads, for a client to fetch them all at once.
pub fn root_tiles(size: u64) -> Vec<Tile> {
    recorded(|r| tree_root(r, size).map(drop)).expect("a recorder never fails")
}

/// The tiles [`inclusion_proof`] reads.
pub fn inclusion_tiles(index: u64, size: u64) -> Result<Vec<Tile>, Error> {
    recorded(|r| inclusion_proof(r, index, size).map(drop))
}

/// The tiles [`consistency_proof`] reads.
pub fn consistency_tiles(old_size: u64, new_size: u64) -> Result<Vec<Tile>, Error> {
    recorded(|r| consistency_proof(r, old_size, new_size).map(drop))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaf_hash;

    #[test]
    fn paths_encode_as_the_spec_shows_and_parse_back() {
        for (tile, path) in [
            (Tile::new(0, 1234067, 256), "tile/0/x001/x234/067"),
            (Tile::new(0, 0, 256), "tile/0/000"),
            (Tile::new(1, 1000, 256), "tile/1/x001/000"),
            (Tile::new(2, 5, 17), "tile/2/005.p/17"),
            (
                Tile::new(63, u64::MAX, 1),
                "tile/63/x018/x446/x744/x073/x709/x551/615.p/1",
            ),
        ] {
            let tile = tile.unwrap();
            assert_eq!(tile.path(), path);
            assert_eq!(Tile::parse_path(path).unwrap(), tile);
        }
        for bad in [
            "",
            "tile",
            "tile/0",
            "tile/0/",
            "tile/0/1234",
            "tile/0/01",
            "tile/0/0001",
            "tile/0/abc",
            "tile/00/000",
            "tile/64/000",
            "tile/-1/000",
            "tile/+1/000",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/007",
            "tile/0/000.p",
            "tile/0/000.p/",
            "tile/0/x000/001",
            "tile/0/001/x234",
            "tile/0/x1234/000",
            "tile/0/000/",
            "tile/0/x018/x446/x744/x073/x709/x551/616",
            "tile/0/x000/x018/x446/x744/x073/x709/x551/615",
            "tile/entries/000",
            "tile/entries/000.p/5",
            "/tile/0/000",
            "tiles/0/000",
        ] {
            assert!(Tile::parse_path(bad).is_err(), "{bad:?}");
        }
        assert!(Tile::new(64, 0, 256).is_err());
        assert!(Tile::new(0, 0, 0).is_err());
        assert!(Tile::new(0, 0, 257).is_err());
    }

    #[test]
    fn the_spec_examples_of_which_tiles_a_tree_has() {
        let summary = |size| {
            let mut levels: Vec<(u8, usize, Option<u16>)> = Vec::new();
            for t in Tile::all(size) {
                if levels.last().is_none_or(|l| l.0 != t.level) {
                    levels.push((t.level, 0, None));
                }
                let l = levels.last_mut().unwrap();
                if t.is_partial() {
                    l.2 = Some(t.width);
                } else {
                    l.1 += 1;
                }
            }
            levels
        };
        assert_eq!(
            summary(70_000),
            vec![(0, 273, Some(112)), (1, 1, Some(17)), (2, 0, Some(1))]
        );
        assert_eq!(summary(256), vec![(0, 1, None), (1, 0, Some(1))]);
        assert!(Tile::all(0).is_empty());
        let t = Tile::at(1, 1, 70_000).unwrap();
        assert_eq!((t.width, t.path()), (17, "tile/1/001.p/17".into()));
        assert!(t.is_within(70_000));
        assert!(!Tile::new(1, 1, 18).unwrap().is_within(70_000));
        assert!(Tile::new(1, 1, 17).unwrap().is_within(65_536 + 17 * 256));
        assert!(!Tile::new(1, 1, 17)
            .unwrap()
            .is_within(65_536 + 17 * 256 - 1));
        assert!(Tile::at(0, u64::MAX, u64::MAX).is_none());
    }

    #[test]
    fn index_levels_are_the_roots_of_full_tiles_whatever_the_batches() {
        let leaves: Vec<Hash> = (0u32..70_000)
            .map(|i| leaf_hash(&i.to_be_bytes()))
            .collect();
        let mut whole = TileIndex::new();
        whole.extend(&leaves);
        let mut step = TileIndex::new();
        for end in [0, 1, 255, 256, 257, 9_000, 65_535, 65_536, 69_999, 70_000] {
            step.extend(&leaves[..end]);
            assert_eq!(step.leaves(), end as u64 / 256 * 256);
        }
        assert_eq!(whole.upper, step.upper);
        assert_eq!(whole.upper.len(), 2);
        assert_eq!(whole.upper[0].len(), 273);
        assert_eq!(whole.upper[0][3], root(&leaves[768..1024]));
        assert_eq!(whole.upper[1], vec![root(&leaves[..65_536])]);
        let r = whole.reader(&leaves);
        assert_eq!(
            r.read_tile(1, 1, 17).unwrap(),
            whole.upper[0][256..].to_vec()
        );
        assert!(r.read_tile(1, 1, 18).is_err());
        assert!(r.read_tile(3, 0, 1).is_err());
    }
}
