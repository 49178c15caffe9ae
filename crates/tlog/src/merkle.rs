//! RFC 6962 §2.1 Merkle tree hashing (0x00 leaf, 0x01 node prefixes) and the RFC 9162 §2.1.3
//! and §2.1.4 proof verification algorithms.

use sha2::{Digest, Sha256};

use crate::Error;

pub type Hash = [u8; 32];

pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two smaller than `n` (n > 1).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// MTH(D[n]) over leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// PATH(m, D[n]): the audit path of leaf `index` in the tree of the first `size` leaves.
pub fn inclusion_proof(leaves: &[Hash], index: u64, size: u64) -> Result<Vec<Hash>, Error> {
    if index >= size || size > leaves.len() as u64 {
        return Err(Error::OutOfRange { index, size });
    }
    fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
        if d.len() <= 1 {
            return Vec::new();
        }
        let k = split(d.len());
        if m < k {
            let mut p = path(m, &d[..k]);
            p.push(root(&d[k..]));
            p
        } else {
            let mut p = path(m - k, &d[k..]);
            p.push(root(&d[..k]));
            p
        }
    }
    Ok(path(index as usize, &leaves[..size as usize]))
}

/// PROOF(m, D[n]): that the tree of `old_size` leaves is a prefix of the one of `new_size`.
pub fn consistency_proof(
    leaves: &[Hash],
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, Error> {
    if old_size > new_size || new_size > leaves.len() as u64 {
        return Err(Error::OutOfRange {
            index: old_size,
            size: new_size,
        });
    }
    fn subproof(m: usize, d: &[Hash], complete: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if complete { Vec::new() } else { vec![root(d)] };
        }
        let k = split(n);
        if m <= k {
            let mut p = subproof(m, &d[..k], complete);
            p.push(root(&d[k..]));
            p
        } else {
            let mut p = subproof(m - k, &d[k..], false);
            p.push(root(&d[..k]));
            p
        }
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    Ok(subproof(
        old_size as usize,
        &leaves[..new_size as usize],
        true,
    ))
}

/// RFC 9162 §2.1.3.2.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), Error> {
    if index >= size {
        return Err(Error::OutOfRange { index, size });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(Error::BadProof);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn == 0 && &r == root {
        Ok(())
    } else {
        Err(Error::BadProof)
    }
}

/// RFC 9162 §2.1.4.2. Sizes 0 and equal sizes have empty proofs.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), Error> {
    if old_size > new_size {
        return Err(Error::OutOfRange {
            index: old_size,
            size: new_size,
        });
    }
    if old_size == new_size {
        return if proof.is_empty() && old_root == new_root {
            Ok(())
        } else {
            Err(Error::BadProof)
        };
    }
    if old_size == 0 {
        return if proof.is_empty() && old_root == &empty_root() {
            Ok(())
        } else {
            Err(Error::BadProof)
        };
    }
    if proof.is_empty() {
        return Err(Error::BadProof);
    }
    // If old_size is a power of two, the old root itself is the first node of the path.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return Err(Error::BadProof);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn == 0 && &fr == old_root && &sr == new_root {
        Ok(())
    } else {
        Err(Error::BadProof)
    }
}

/// Roots of every prefix of a growing log in O(log n) each: the stack of perfect subtree
/// roots (a compact range from 0), as used to verify a log against many checkpoints.
#[derive(Debug, Clone, Default)]
pub struct RootBuilder {
    size: u64,
    /// Roots of perfect subtrees, largest first; their sizes are the set bits of `size`.
    stack: Vec<Hash>,
}

impl RootBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut node = leaf;
        let mut size = self.size;
        // Merge with equal-sized subtrees: one per trailing set bit of the old size.
        while size & 1 == 1 {
            let left = self.stack.pop().expect("a subtree per set bit");
            node = node_hash(&left, &node);
            size >>= 1;
        }
        self.stack.push(node);
        self.size += 1;
    }

    /// The roots of the perfect subtrees of the leaves pushed so far, largest first: all a
    /// verifier must keep to go on from here.
    pub fn frontier(&self) -> &[Hash] {
        &self.stack
    }

    /// Resumes from a [`RootBuilder::frontier`] of `size` leaves; `None` if the number of
    /// roots is not the number of set bits of `size`.
    pub fn from_frontier(size: u64, frontier: Vec<Hash>) -> Option<Self> {
        (frontier.len() == size.count_ones() as usize).then_some(Self {
            size,
            stack: frontier,
        })
    }

    /// MTH of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut nodes = self.stack.iter().rev();
        match nodes.next() {
            None => empty_root(),
            Some(first) => nodes.fold(*first, |right, left| node_hash(left, &right)),
        }
    }
}
