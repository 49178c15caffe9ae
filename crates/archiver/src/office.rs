//! The records office's accounts (`DATA/office.db`, 0600): who may call the records API and
//! sign in to the console, in which role. The file is owned by the archive's actor, like
//! the archive itself, so no SQLite call runs on the async executor.
//!
//! The records token of earlier versions becomes the API token of the first officer,
//! `officer`, so existing scripts keep working.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use vellum_record::api::office::{AccountInfo, CreatedAccount, Role};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// How long a setup code works.
pub const SETUP_CODE_LIFETIME_MS: i64 = 72 * 3600 * 1000;

/// The name the records token's account gets.
pub const FIRST_OFFICER: &str = "officer";

#[derive(Debug, thiserror::Error)]
pub enum OfficeError {
    #[error("office database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("office database: {0}")]
    Schema(#[from] vellum_store::SchemaError),
    #[error("an account named {0:?} exists already")]
    Exists(String),
    #[error("no account named {0:?}")]
    NoSuchAccount(String),
    #[error("an account name is 1 to 64 characters: lowercase letters, digits, '.', '_' and '-'")]
    BadName,
    #[error("{0}")]
    Refused(String),
}

/// Who made a request: the account and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

pub struct Office {
    conn: Connection,
}

pub fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.trim().as_bytes()).into()
}

pub fn valid_account_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

impl Office {
    /// Opens (creating, 0600) the office database at `path`.
    pub fn open(path: &Path) -> Result<Self, OfficeError> {
        let runner = embedded::migrations::runner();
        vellum_store::schema::check_existing(path, &runner)?;
        if !path.exists() {
            // Created empty with its mode first, so no moment exists where it is readable.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| OfficeError::Refused(format!("{}: {e}", path.display())))?;
        }
        let mut conn = Connection::open(path)?;
        vellum_store::schema::quick_check(&conn)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
             PRAGMA secure_delete = ON;",
        )?;
        vellum_store::schema::migrate(&mut conn, runner)?;
        Ok(Self { conn })
    }

    /// An office in memory (the actor's unit tests).
    pub fn in_memory() -> Self {
        let mut conn = Connection::open_in_memory().expect("in-memory SQLite");
        conn.execute_batch("PRAGMA foreign_keys = ON;")
            .expect("pragma");
        vellum_store::schema::migrate(&mut conn, embedded::migrations::runner())
            .expect("office migrations");
        Self { conn }
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Makes `token_hash` (the records token's) the API token of the first officer, when no
    /// account has it yet: the upgrade from a single records token, and every fresh archiver.
    pub fn ensure_first_officer(&self, token_hash: &[u8; 32], now: i64) -> Result<(), OfficeError> {
        let known: Option<String> = self
            .conn
            .query_row(
                "SELECT name FROM accounts WHERE api_token_hash = ?1",
                [&token_hash[..]],
                |r| r.get(0),
            )
            .optional()?;
        if known.is_some() {
            return Ok(());
        }
        let exists: bool = self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM accounts WHERE name = ?1)",
            [FIRST_OFFICER],
            |r| r.get(0),
        )?;
        if exists {
            // The records token was replaced by hand: the officer account follows it.
            self.conn.execute(
                "UPDATE accounts SET api_token_hash = ?1 WHERE name = ?2",
                params![&token_hash[..], FIRST_OFFICER],
            )?;
        } else {
            self.conn.execute(
                "INSERT INTO accounts (name, role, api_token_hash, created_at, created_by)
                 VALUES (?1, 'officer', ?2, ?3, 'records-token')",
                params![FIRST_OFFICER, &token_hash[..], now],
            )?;
        }
        Ok(())
    }

    /// The account whose API token hashes to `token_hash`, if it is not disabled.
    pub fn caller_by_token(&self, token_hash: &[u8; 32]) -> Result<Option<Caller>, OfficeError> {
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT name, role FROM accounts WHERE api_token_hash = ?1 AND disabled = 0",
                [&token_hash[..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.and_then(|(name, role)| Role::parse(&role).map(|role| Caller { name, role })))
    }

    /// A new account with a one-time setup code (only its hash is stored).
    pub fn create(
        &self,
        name: &str,
        role: Role,
        created_by: &str,
        now: i64,
    ) -> Result<CreatedAccount, OfficeError> {
        if !valid_account_name(name) {
            return Err(OfficeError::BadName);
        }
        let code = random_code();
        let expires = now + SETUP_CODE_LIFETIME_MS;
        let inserted = self.conn.execute(
            "INSERT INTO accounts (name, role, setup_hash, setup_expires_at, created_at, created_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (name) DO NOTHING",
            params![name, role.as_str(), &sha256(&code)[..], expires, now, created_by],
        )?;
        if inserted == 0 {
            return Err(OfficeError::Exists(name.into()));
        }
        Ok(CreatedAccount {
            name: name.into(),
            role,
            setup_path: format!("/console/setup?code={code}"),
            setup_code: code,
            setup_expires_at: expires,
        })
    }

    pub fn list(&self) -> Result<Vec<AccountInfo>, OfficeError> {
        let mut stmt = self.conn.prepare(
            "SELECT name, role, password_hash IS NOT NULL AND totp_secret IS NOT NULL, disabled,
                    created_at, created_by
             FROM accounts ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, role, active, disabled, created_at, created_by) = row?;
            let Some(role) = Role::parse(&role) else {
                continue;
            };
            out.push(AccountInfo {
                name,
                role,
                active,
                disabled,
                created_at,
                created_by,
            });
        }
        Ok(out)
    }

    /// Disables an account and ends its sessions; its name stays taken, so the audit trail
    /// keeps meaning one person.
    pub fn disable(&self, name: &str) -> Result<(), OfficeError> {
        let changed = self.conn.execute(
            "UPDATE accounts SET disabled = 1, setup_hash = NULL WHERE name = ?1",
            [name],
        )?;
        if changed == 0 {
            return Err(OfficeError::NoSuchAccount(name.into()));
        }
        self.conn
            .execute("DELETE FROM sessions WHERE account = ?1", [name])?;
        Ok(())
    }
}

/// How long a console session lasts without a request.
pub const SESSION_IDLE_MS: i64 = 30 * 60 * 1000;
/// How long a console session lasts at most, however busy.
pub const SESSION_ABSOLUTE_MS: i64 = 12 * 3600 * 1000;

/// What signing in checks, for an account whose setup is complete and which is not disabled.
pub struct Credentials {
    pub role: Role,
    pub password_hash: String,
    pub totp_secret: String,
}

/// A console session: whose it is and the token its forms carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    pub csrf: String,
}

impl Office {
    /// The account a setup code belongs to, if the code is unused, unexpired and its account
    /// not disabled.
    pub fn setup_account(&self, code: &str, now: i64) -> Result<Option<Caller>, OfficeError> {
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT name, role FROM accounts
                 WHERE setup_hash = ?1 AND setup_expires_at > ?2 AND disabled = 0",
                params![&sha256(code)[..], now],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.and_then(|(name, role)| Role::parse(&role).map(|role| Caller { name, role })))
    }

    /// Sets the password and second factor of the account whose setup code `code` is, and
    /// uses the code up, in one statement: a code works once.
    pub fn complete_setup(
        &self,
        code: &str,
        password_hash: &str,
        totp_secret: &str,
        totp_step: u64,
        now: i64,
    ) -> Result<Option<String>, OfficeError> {
        Ok(self
            .conn
            .query_row(
                "UPDATE accounts SET password_hash = ?1, totp_secret = ?2, totp_last_step = ?3,
                    setup_hash = NULL, setup_expires_at = NULL
                 WHERE setup_hash = ?4 AND setup_expires_at > ?5 AND disabled = 0
                 RETURNING name",
                params![
                    password_hash,
                    totp_secret,
                    totp_step as i64,
                    &sha256(code)[..],
                    now
                ],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The credentials of `name`, if it may sign in.
    pub fn credentials(&self, name: &str) -> Result<Option<Credentials>, OfficeError> {
        let row: Option<(String, String, String)> = self
            .conn
            .query_row(
                "SELECT role, password_hash, totp_secret FROM accounts
                 WHERE name = ?1 AND disabled = 0
                   AND password_hash IS NOT NULL AND totp_secret IS NOT NULL",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        Ok(row.and_then(|(role, password_hash, totp_secret)| {
            Role::parse(&role).map(|role| Credentials {
                role,
                password_hash,
                totp_secret,
            })
        }))
    }

    /// Records that `name` used the TOTP code of `step`, if no code of that step or a later
    /// one was accepted before: false means a replay.
    pub fn accept_totp_step(&self, name: &str, step: u64) -> Result<bool, OfficeError> {
        let changed = self.conn.execute(
            "UPDATE accounts SET totp_last_step = ?1 WHERE name = ?2 AND totp_last_step < ?1",
            params![step as i64, name],
        )?;
        Ok(changed == 1)
    }

    /// A new console session for `name`: the cookie's token (only its hash is kept) and the
    /// session's CSRF token.
    pub fn create_session(&self, name: &str, now: i64) -> Result<(String, String), OfficeError> {
        self.conn.execute(
            "DELETE FROM sessions WHERE expires_at <= ?1 OR created_at <= ?2",
            params![now, now - SESSION_ABSOLUTE_MS],
        )?;
        let token = random_code();
        let csrf = random_code();
        self.conn.execute(
            "INSERT INTO sessions (token_hash, account, csrf_token, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![&sha256(&token)[..], name, csrf, now, now + SESSION_IDLE_MS],
        )?;
        Ok((token, csrf))
    }

    /// The live session whose cookie holds `token`; each use moves its idle expiry on, never
    /// past its absolute one. A session of a disabled account is never live.
    pub fn session(&self, token: &str, now: i64) -> Result<Option<Session>, OfficeError> {
        let hash = sha256(token);
        let row: Option<(String, String, String)> = self
            .conn
            .query_row(
                "SELECT a.name, a.role, s.csrf_token FROM sessions s
                 JOIN accounts a ON a.name = s.account
                 WHERE s.token_hash = ?1 AND s.expires_at > ?2 AND s.created_at > ?3
                   AND a.disabled = 0",
                params![&hash[..], now, now - SESSION_ABSOLUTE_MS],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((name, role, csrf)) = row else {
            return Ok(None);
        };
        let Some(role) = Role::parse(&role) else {
            return Ok(None);
        };
        self.conn.execute(
            "UPDATE sessions SET expires_at = ?1 WHERE token_hash = ?2",
            params![now + SESSION_IDLE_MS, &hash[..]],
        )?;
        Ok(Some(Session {
            caller: Caller { name, role },
            csrf,
        }))
    }

    /// Ends the session whose cookie holds `token`.
    pub fn end_session(&self, token: &str) -> Result<(), OfficeError> {
        self.conn.execute(
            "DELETE FROM sessions WHERE token_hash = ?1",
            [&sha256(token)[..]],
        )?;
        Ok(())
    }

    /// A new API token for `name` (for the CLI), replacing any earlier one; shown once, only
    /// its hash is kept.
    pub fn new_api_token(&self, name: &str) -> Result<String, OfficeError> {
        let token = format!("{}{}", random_code(), random_code());
        let changed = self.conn.execute(
            "UPDATE accounts SET api_token_hash = ?1 WHERE name = ?2 AND disabled = 0",
            params![&sha256(&token)[..], name],
        )?;
        if changed == 0 {
            return Err(OfficeError::NoSuchAccount(name.into()));
        }
        Ok(token)
    }
}

/// 128 random bits as lowercase hex: setup codes, API tokens and session tokens.
pub fn random_code() -> String {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).expect("operating system RNG");
    hex::encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_records_token_becomes_the_first_officer() {
        let office = Office::in_memory();
        let token = sha256("the records token");
        office.ensure_first_officer(&token, 1).unwrap();
        office.ensure_first_officer(&token, 2).unwrap();
        let caller = office.caller_by_token(&token).unwrap().unwrap();
        assert_eq!(
            caller,
            Caller {
                name: "officer".into(),
                role: Role::Officer
            }
        );
        assert_eq!(office.list().unwrap().len(), 1);
        assert!(office
            .caller_by_token(&sha256("another"))
            .unwrap()
            .is_none());
        // A replaced records token moves with the officer; the old one stops working.
        let replaced = sha256("a new records token");
        office.ensure_first_officer(&replaced, 3).unwrap();
        assert!(office.caller_by_token(&token).unwrap().is_none());
        assert_eq!(
            office.caller_by_token(&replaced).unwrap().unwrap().name,
            "officer"
        );
    }

    #[test]
    fn accounts_are_created_once_with_a_valid_name_and_disabled_for_good() {
        let office = Office::in_memory();
        let created = office
            .create("kim", Role::Keyholder, "officer", 10)
            .unwrap();
        assert_eq!(created.setup_code.len(), 32);
        assert!(created.setup_path.ends_with(&created.setup_code));
        assert!(matches!(
            office.create("kim", Role::Analyst, "officer", 11),
            Err(OfficeError::Exists(_))
        ));
        for bad in ["", "Kim", "a b", "x/y", &"a".repeat(65)] {
            assert!(matches!(
                office.create(bad, Role::Analyst, "o", 1),
                Err(OfficeError::BadName)
            ));
        }
        let listed = office.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert!(!listed[0].active, "no password or second factor yet");
        office.disable("kim").unwrap();
        assert!(office.list().unwrap()[0].disabled);
        assert!(matches!(
            office.disable("nobody"),
            Err(OfficeError::NoSuchAccount(_))
        ));
    }

    #[test]
    fn roles_allow_what_the_issue_says() {
        use vellum_record::api::office::Permission::*;
        assert!(!Role::Analyst.allows(Unseal));
        assert!(!Role::Analyst.allows(ManageAccounts));
        assert!(!Role::Keyholder.allows(ReadContent));
        assert!(Role::Keyholder.allows(Unseal));
        assert!(!Role::Auditor.allows(ReadContent));
        assert!(Role::Auditor.allows(ReadAudit));
        assert!(Role::Officer.allows(ManageAccounts));
    }
}
