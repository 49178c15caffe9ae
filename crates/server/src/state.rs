use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use vellum_mls::{GroupTracker, OrgIdentityProvider, OrgSigner, TrackedGroup};
use vellum_store::{SqliteStore, Store};

use crate::clock::{Clock, SystemClock};
use crate::config::{init_data_dir, init_node_dir, write_directory_vkey, ServerConfig};
use crate::directory::{Directory, DirectoryError};
use crate::limits::RateLimiter;
use crate::notify::{BusConfig, NatsConnection, Notifier, WakeTags};
use crate::ApiError;

pub struct AppState {
    pub config: ServerConfig,
    pub store: Arc<dyn Store>,
    pub org: OrgSigner,
    pub admin_token_hash: [u8; 32],
    pub tracker: GroupTracker,
    pub limiter: RateLimiter,
    /// Per claiming device, in key packages handed out.
    pub claim_limiter: RateLimiter,
    pub notifier: Notifier,
    pub clock: Arc<dyn Clock>,
    /// Recently used groups' public state, so a commit need not reload the tree from its
    /// serialised form. Only an optimisation: an entry is used only when its epoch is the one
    /// the store holds, and the store's epoch check decides which commit wins.
    groups: Mutex<LruCache<String, (u64, TrackedGroup)>>,
    /// Serialises commits per group on this node; the store's epoch check guards across nodes.
    group_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The seed of the key directory's checkpoint signing key (`DATA/directory.key`).
    directory_key: [u8; 32],
    /// The key directory, opened (replayed from the store) on first use; `run` opens it
    /// before serving, so a directory that does not replay stops the start.
    directory: tokio::sync::OnceCell<Arc<Directory>>,
    /// The data directory's lock, held for as long as this state serves it.
    _data_dir_lock: Option<std::fs::File>,
    /// A node of a deployment on a shared database (issue 13): other nodes change it too.
    shared: bool,
}

impl AppState {
    /// Opens the data directory and the SQLite store in it.
    pub fn open(config: ServerConfig) -> Result<Self, crate::ServeError> {
        let dir = init_data_dir(&config.data_dir)?;
        let path = config.data_dir.join("server.db");
        let store =
            SqliteStore::open(&path).map_err(|source| crate::ServeError::Store { path, source })?;
        let mut state = Self::new(config, Arc::new(store), dir.org, dir.admin_token_hash)
            .with_directory_key(dir.directory_key);
        let vkey = state.directory_signer()?.verifier_key();
        write_directory_vkey(&state.config.data_dir, &vkey)?;
        state._data_dir_lock = dir.lock;
        Ok(state)
    }

    /// Opens what the configuration names: `DATA/server.db`, or (issue 13) a node of a
    /// deployment on the shared PostgreSQL database, hearing the other nodes through NATS.
    /// Refuses at once what cannot work: an unreachable database or NATS, a database of a
    /// newer schema, a data directory whose org key is not the deployment's.
    pub async fn open_configured(config: ServerConfig) -> Result<Self, crate::ServeError> {
        let Some(url) = config.database_url.clone() else {
            if config.nats_url.is_some() {
                return Err(crate::ServeError::Config(
                    "--nats-url needs --database-url: a server on DATA/server.db is the only \
                     node of its deployment"
                        .into(),
                ));
            }
            return Self::open(config);
        };
        // NATS first: a node that cannot reach it stops before anything is written.
        let nats = match &config.nats_url {
            Some(url) => Some(NatsConnection::connect(url).await?),
            None => None,
        };
        let store = vellum_store_pg::PgStore::connect(&url)
            .await
            .map_err(crate::ServeError::Database)?;
        let deployed = store
            .org_key()
            .await
            .map_err(crate::ServeError::Database)?
            .is_some();
        let dir = init_node_dir(&config.data_dir, deployed)?;
        store
            .bind_org_key(dir.org.public_key().as_bytes())
            .await
            .map_err(crate::ServeError::Database)?;
        let instance_id = store
            .instance_id()
            .await
            .map_err(crate::ServeError::Database)?;
        let notifier = Notifier::with_bus(
            nats,
            BusConfig {
                tags: WakeTags::new(&dir.directory_key),
                instance_id,
                poll_interval: config.poll_interval,
            },
        )
        .await?;
        let mut state = Self::new(config, Arc::new(store), dir.org, dir.admin_token_hash)
            .with_directory_key(dir.directory_key);
        state.notifier = notifier;
        state.shared = true;
        let vkey = state.directory_signer()?.verifier_key();
        write_directory_vkey(&state.config.data_dir, &vkey)?;
        Ok(state)
    }

    pub fn new(
        config: ServerConfig,
        store: Arc<dyn Store>,
        org: OrgSigner,
        admin_token_hash: [u8; 32],
    ) -> Self {
        Self::with_clock(config, store, org, admin_token_hash, Arc::new(SystemClock))
    }

    pub fn with_clock(
        config: ServerConfig,
        store: Arc<dyn Store>,
        org: OrgSigner,
        admin_token_hash: [u8; 32],
        clock: Arc<dyn Clock>,
    ) -> Self {
        let tracker = GroupTracker::new(OrgIdentityProvider::new(org.public_key()));
        let limiter = RateLimiter::new(config.rate_per_sec, config.rate_burst, clock.clone());
        let claim_limiter = RateLimiter::new(
            config.claims_per_hour / 3600.0,
            config.claim_burst,
            clock.clone(),
        );
        let cached = NonZeroUsize::new(config.cached_groups).unwrap_or(NonZeroUsize::MIN);
        Self {
            config,
            store,
            org,
            admin_token_hash,
            tracker,
            limiter,
            claim_limiter,
            notifier: Notifier::default(),
            clock,
            groups: Mutex::new(LruCache::new(cached)),
            group_locks: Mutex::default(),
            directory_key: random_seed(),
            directory: tokio::sync::OnceCell::new(),
            _data_dir_lock: None,
            shared: false,
        }
    }

    /// Signs the key directory's checkpoints with this seed (a state made with [`AppState::new`]
    /// has a fresh one; [`AppState::open`] reads `DATA/directory.key`).
    pub fn with_directory_key(mut self, seed: [u8; 32]) -> Self {
        self.directory_key = seed;
        self
    }

    /// The key directory's signer: named by its origin (`--directory-origin`, or one derived
    /// from the org key).
    pub fn directory_signer(&self) -> Result<vellum_tlog::NoteSigner, DirectoryError> {
        let origin = match &self.config.directory_origin {
            Some(origin) => origin.clone(),
            None => vellum_directory::default_origin(&self.org.public_key().to_bytes()),
        };
        vellum_tlog::NoteSigner::new(&origin, &self.directory_key).map_err(|e| {
            DirectoryError::Config(format!("the origin {origin:?} cannot name a log: {e}"))
        })
    }

    /// Opens the key directory if it is not open yet (see [`Directory::open`]).
    pub async fn open_directory(&self) -> Result<&Arc<Directory>, DirectoryError> {
        self.directory
            .get_or_try_init(|| async {
                let directory = Directory::open(
                    &self.store,
                    self.directory_signer()?,
                    self.config.directory_witnesses.clone(),
                    self.config.directory_witness_quorum,
                    self.config.min_reset_wait_secs,
                    self.now_secs(),
                )
                .await?;
                Ok(Arc::new(directory))
            })
            .await
    }

    /// The key directory, for a request: one that cannot be opened is a 500 (and logged).
    pub async fn directory(&self) -> Result<&Arc<Directory>, ApiError> {
        self.open_directory().await.map_err(|e| {
            tracing::error!(error = %e, "the key directory cannot be opened");
            ApiError::internal()
        })
    }

    /// The key directory, at least as new as the store: for what is served from its memory
    /// (its size, its checkpoint), since other nodes append to it too. A node alone on its
    /// store made every append itself, so its memory is current without a look.
    pub async fn current_directory(&self) -> Result<&Arc<Directory>, ApiError> {
        let directory = self.directory().await?;
        if !self.shared {
            return Ok(directory);
        }
        directory
            .catch_up_with(&self.store)
            .await
            .map_err(|e| match e {
                DirectoryError::Store(e) => ApiError::from(e),
                e => {
                    tracing::error!(error = %e, "the key directory cannot catch up with the store");
                    ApiError::internal()
                }
            })?;
        Ok(directory)
    }

    pub fn now_secs(&self) -> i64 {
        self.clock.now_secs()
    }

    pub fn now_millis(&self) -> i64 {
        self.clock.now_millis()
    }

    pub fn group_lock(&self, group_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.group_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(group_id.to_owned()).or_default().clone()
    }

    /// Takes a group's cached public state out of the cache if it is at `state_version`
    /// ([`vellum_store::GroupState::state_version`]: every commit and leave, through any
    /// node, bumps it). The caller owns it while applying a change and puts it back only
    /// once the store accepted it.
    pub fn take_cached_group(&self, group_id: &str, state_version: u64) -> Option<TrackedGroup> {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        match groups.pop(group_id) {
            Some((cached_version, tracked)) if cached_version == state_version => Some(tracked),
            _ => None,
        }
    }

    pub fn cache_group(&self, group_id: String, state_version: u64, tracked: TrackedGroup) {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups.put(group_id, (state_version, tracked));
    }

    /// Runs MLS work (signature checks, tree hashing) on the blocking pool, off the executor.
    pub async fn blocking<T, F>(self: &Arc<Self>, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&AppState) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let state = self.clone();
        tokio::task::spawn_blocking(move || work(&state))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "MLS work panicked");
                ApiError::internal()
            })?
    }
}

fn random_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("operating system RNG");
    seed
}
