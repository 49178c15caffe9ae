//! Safety numbers, as Signal computes them (`NumericFingerprintGenerator`, version 0, 5200
//! iterations of SHA-512): 30 digits per user over the user's identity key and name, and a
//! pair's number is both users' digits, smaller first, so both sides print the same 60
//! digits. A device added under the same identity leaves it unchanged; a reset changes it.

use sha2::{Digest, Sha512};

use crate::entry::Key32;

const ITERATIONS: usize = 5200;

/// A user's 30 digits, in six groups of five.
pub fn user_digits(user: &str, identity_key: &Key32) -> String {
    let mut hash = {
        let mut h = Sha512::new();
        h.update(0u16.to_be_bytes());
        h.update(identity_key);
        h.update(user.as_bytes());
        h.finalize()
    };
    for _ in 0..ITERATIONS {
        let mut h = Sha512::new();
        h.update(hash);
        h.update(identity_key);
        hash = h.finalize();
    }
    hash[..30]
        .chunks(5)
        .map(|chunk| {
            let value = chunk.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
            format!("{:05}", value % 100_000)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The safety number of two users (12 groups of five digits), the same from either side.
pub fn safety_number(a: (&str, &Key32), b: (&str, &Key32)) -> String {
    let (a, b) = (user_digits(a.0, a.1), user_digits(b.0, b.1));
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    format!("{first} {second}")
}
