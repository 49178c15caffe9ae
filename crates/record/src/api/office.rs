//! The records office's people: named accounts, their roles and what each role may do.

use serde::{Deserialize, Serialize};

/// What an account is for. Roles are exclusive: a keyholder who also reviews requests holds
/// two accounts, so that the audit trail says in which capacity each action was taken.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Holds one share of the records key: unseals with it, sees status, never content.
    Keyholder,
    /// Runs the records office: everything, including accounts, holds and schedules.
    Officer,
    /// Answers requests: searches, builds FOIA cases, reviews, redacts and produces.
    Analyst,
    /// Oversees: reads the audit trail, holds and schedules, never content.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Keyholder, Role::Officer, Role::Analyst, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Keyholder => "keyholder",
            Role::Officer => "officer",
            Role::Analyst => "analyst",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The one statement of who may do what; every API route and console page asks it.
    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Officer => true,
            Role::Keyholder => matches!(permission, Status | Unseal | Seal),
            Role::Analyst => matches!(
                permission,
                Status | Seal | ReadContent | ViewPolicy | Cases | Produce
            ),
            Role::Auditor => matches!(permission, Status | ViewPolicy | ReadAudit),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request needs its caller's role to allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Sealed or not, sizes, checkpoints.
    Status,
    /// Hand in a share of the records key.
    Unseal,
    /// Seal the archive again (anyone who may touch it may close it).
    Seal,
    /// Decrypted records: search, record views, context.
    ReadContent,
    /// Holds, schedules and which chats are transitory, without content.
    ViewPolicy,
    /// Place and release holds.
    ManageHolds,
    /// Define and assign retention schedules; run disposition.
    ManageRetention,
    /// FOIA cases: create, add, review, redact.
    Cases,
    /// Build productions of a case.
    Produce,
    /// The audit trail (the log's access, hold and disposition leaves).
    ReadAudit,
    /// Create and disable accounts.
    ManageAccounts,
}

/// `POST /v1/accounts`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// 1-64 characters: lowercase letters, digits, '.', '_' and '-'.
    pub name: String,
    pub role: Role,
}

/// The answer to `POST /v1/accounts`: a one-time setup code (shown once; only its hash is
/// kept) with which the person sets a password and a second factor in the console.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedAccount {
    pub name: String,
    pub role: Role,
    pub setup_code: String,
    /// The console's setup page with the code, relative to the archiver's URL.
    pub setup_path: String,
    /// Unix ms after which the code no longer works.
    pub setup_expires_at: i64,
}

/// One account as listed (`GET /v1/accounts`): never a secret, never a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountInfo {
    pub name: String,
    pub role: Role,
    /// Password and second factor set.
    pub active: bool,
    pub disabled: bool,
    pub created_at: i64,
    pub created_by: String,
}

/// `GET /v1/whoami`: the caller's account.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WhoAmI {
    pub name: String,
    pub role: Role,
}
