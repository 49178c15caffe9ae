//! The console's secrets: Argon2id password hashes, RFC 6238 TOTP, and the throttle on
//! failed sign-ins.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{phc::PasswordHash, PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use hmac::{KeyInit, Mac};

/// Shorter passwords are refused at setup.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longer ones too: hashing is bounded work.
pub const MAX_PASSWORD_CHARS: usize = 256;

/// RFC 6238 parameters every authenticator app reads: 30 s steps, 6 digits, HMAC-SHA-1.
pub const TOTP_STEP_SECONDS: u64 = 30;
const TOTP_DIGITS: u32 = 6;

/// Failed sign-ins of one account name before it is locked, and for how long.
pub const MAX_FAILURES: u32 = 5;
pub const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Names tracked at most (the map cannot be grown without bound by guessing names).
const TRACKED_NAMES: usize = 10_000;

/// Argon2id with OWASP's recommended parameters (19 MiB, 2 passes, 1 lane).
fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::DEFAULT)
}

/// The PHC string of `password` under a fresh salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let hash: PasswordHash = hasher()
        .hash_password(password.as_bytes())
        .map_err(|e| e.to_string())?;
    Ok(hash.to_string())
}

/// Whether `password` is the one `phc` was made from (parameters are read from `phc`).
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .ok()
        .is_some_and(|hash| hasher().verify_password(password.as_bytes(), &hash).is_ok())
}

/// Why a chosen password is refused, if it is.
pub fn password_problem(password: &str, again: &str) -> Option<String> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Some(format!(
            "a password is at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Some(format!(
            "a password is at most {MAX_PASSWORD_CHARS} characters"
        ));
    }
    if password != again {
        return Some("the two passwords differ".into());
    }
    None
}

/// The TOTP secret the setup page offers the holder of `setup_code`: derived from the code
/// (HMAC-SHA256, 160 bits), so the page and the form's answer agree without the server
/// keeping it, and without the browser choosing it (a form could otherwise bring back any
/// secret, all 'A's included). The code is 128 random bits only its holder knows.
pub fn offered_totp_secret(setup_code: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"vellum console totp offer v1")
        .expect("any key length");
    mac.update(setup_code.trim().as_bytes());
    data_encoding::BASE32_NOPAD.encode(&mac.finalize().into_bytes()[..20])
}

/// The otpauth:// URI an authenticator app reads (from a QR code or pasted).
pub fn otpauth_uri(issuer: &str, account: &str, secret: &str) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!(
        "otpauth://totp/{}:{}?secret={secret}&issuer={}&algorithm=SHA1&digits={TOTP_DIGITS}&period={TOTP_STEP_SECONDS}",
        enc(issuer),
        enc(account),
        enc(issuer)
    )
}

/// `text` as a QR code, an SVG `data:` URI for an `<img>` (the policy allows `data:`
/// images, nothing inline else).
pub fn qr_svg_data_uri(text: &str) -> Option<String> {
    use base64::Engine;
    let qr = qrcodegen::QrCode::encode_text(text, qrcodegen::QrCodeEcc::Medium).ok()?;
    let border = 4;
    let size = qr.size() + 2 * border;
    let mut path = String::new();
    for y in 0..qr.size() {
        for x in 0..qr.size() {
            if qr.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" shape-rendering=\"crispEdges\"><rect width=\"100%\" height=\"100%\" fill=\"#fff\"/><path d=\"{path}\" fill=\"#000\"/></svg>"
    );
    Some(format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(svg)
    ))
}

/// The code of time step `step` (RFC 4226 HOTP over the step counter).
pub fn totp_code(secret: &[u8], step: u64) -> u32 {
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[digest.len() - 1] & 0x0f) as usize;
    let word = u32::from_be_bytes(digest[offset..offset + 4].try_into().expect("4 bytes"));
    (word & 0x7fff_ffff) % 10u32.pow(TOTP_DIGITS)
}

/// The time step `code` belongs to, if it is the code of the step of `unix_seconds` or of
/// the step before or after (clock drift).
pub fn check_totp(secret_b32: &str, code: &str, unix_seconds: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != TOTP_DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code: u32 = code.parse().ok()?;
    let secret = data_encoding::BASE32_NOPAD
        .decode(secret_b32.as_bytes())
        .ok()?;
    let now = unix_seconds / TOTP_STEP_SECONDS;
    [now.saturating_sub(1), now, now + 1]
        .into_iter()
        .find(|&step| {
            // Constant time, so a timing does not tell how many digits were right.
            use subtle::ConstantTimeEq;
            totp_code(&secret, step)
                .to_be_bytes()
                .ct_eq(&code.to_be_bytes())
                .into()
        })
}

#[derive(Default)]
struct Failures {
    count: u32,
    locked_until: Option<Instant>,
}

/// Failed sign-ins per account name, in memory: after `MAX_FAILURES` the name is locked for
/// `LOCKOUT`, whatever is typed (a restart forgets the count).
#[derive(Default)]
pub struct Throttle {
    names: Mutex<HashMap<String, Failures>>,
}

impl Throttle {
    /// Whether `name` is locked now.
    pub fn locked(&self, name: &str) -> bool {
        let names = self.names.lock().expect("throttle lock");
        names
            .get(name)
            .and_then(|f| f.locked_until)
            .is_some_and(|until| until > Instant::now())
    }

    pub fn failed(&self, name: &str) {
        let mut names = self.names.lock().expect("throttle lock");
        if names.len() >= TRACKED_NAMES && !names.contains_key(name) {
            let now = Instant::now();
            names.retain(|_, f| f.locked_until.is_some_and(|u| u > now));
        }
        let entry = names.entry(name.to_owned()).or_default();
        if entry.locked_until.is_some_and(|u| u <= Instant::now()) {
            *entry = Failures::default();
        }
        entry.count += 1;
        if entry.count >= MAX_FAILURES {
            entry.locked_until = Some(Instant::now() + LOCKOUT);
        }
    }

    pub fn succeeded(&self, name: &str) {
        self.names.lock().expect("throttle lock").remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_matches_the_rfc_6238_sha1_vectors() {
        // RFC 6238 appendix B, SHA-1 seed "12345678901234567890", last 6 digits.
        let seed = b"12345678901234567890";
        for (time, expected) in [
            (59u64, 287082u32),
            (1111111109, 81804),
            (1111111111, 50471),
            (1234567890, 5924),
            (2000000000, 279037),
            (20000000000, 353130),
        ] {
            assert_eq!(totp_code(seed, time / 30), expected, "at {time}");
        }
        let b32 = data_encoding::BASE32_NOPAD.encode(seed);
        assert_eq!(check_totp(&b32, "287082", 59), Some(1));
        assert_eq!(
            check_totp(&b32, "287082", 59 + 30),
            Some(1),
            "one step of drift"
        );
        assert_eq!(check_totp(&b32, "287082", 59 + 90), None, "too late");
        assert_eq!(check_totp(&b32, "28708", 59), None);
        assert_eq!(check_totp(&b32, "28708x", 59), None);
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let phc = hash_password("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("correct horse battery", &phc));
        assert!(!verify_password("correct horse batterx", &phc));
        assert!(!verify_password("anything", "not a phc string"));
        assert!(password_problem("short", "short").is_some());
        assert!(password_problem("long enough pass", "long enough pasz").is_some());
        assert!(password_problem("long enough pass", "long enough pass").is_none());
    }

    #[test]
    fn five_failures_lock_a_name_and_a_success_clears_it() {
        let t = Throttle::default();
        for _ in 0..MAX_FAILURES - 1 {
            t.failed("kim");
        }
        assert!(!t.locked("kim"));
        t.succeeded("kim");
        for _ in 0..MAX_FAILURES {
            t.failed("kim");
        }
        assert!(t.locked("kim"));
        assert!(!t.locked("lee"));
    }
}
