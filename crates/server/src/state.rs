use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use vellum_mls::{GroupTracker, OrgIdentityProvider, OrgSigner};
use vellum_store::{SqliteStore, Store};

use crate::config::{init_data_dir, ServerConfig};
use crate::limits::RateLimiter;
use crate::notify::Notifier;

pub struct AppState {
    pub config: ServerConfig,
    pub store: Arc<dyn Store>,
    pub org: OrgSigner,
    pub admin_token_hash: [u8; 32],
    pub tracker: GroupTracker,
    pub limiter: RateLimiter,
    pub notifier: Notifier,
    /// Serialises commits per group on this node; the store's epoch check guards across nodes.
    group_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl AppState {
    /// Opens the data directory and the SQLite store in it.
    pub fn open(config: ServerConfig) -> Result<Self, crate::ServeError> {
        let dir = init_data_dir(&config.data_dir)?;
        let store = SqliteStore::open(&config.data_dir.join("server.db"))?;
        Ok(Self::new(
            config,
            Arc::new(store),
            dir.org,
            dir.admin_token_hash,
        ))
    }

    pub fn new(
        config: ServerConfig,
        store: Arc<dyn Store>,
        org: OrgSigner,
        admin_token_hash: [u8; 32],
    ) -> Self {
        let tracker = GroupTracker::new(OrgIdentityProvider::new(org.public_key()));
        let limiter = RateLimiter::new(config.rate_per_sec, config.rate_burst);
        Self {
            config,
            store,
            org,
            admin_token_hash,
            tracker,
            limiter,
            notifier: Notifier::default(),
            group_locks: Mutex::default(),
        }
    }

    pub fn group_lock(&self, group_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.group_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(group_id.to_owned()).or_default().clone()
    }
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
