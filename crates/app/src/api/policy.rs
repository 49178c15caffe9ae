//! The org's policy as the page sees it (`OrgPolicyView`): the bounds of timers and files.
//! Fetched from the delivery server (`GET /v1/policy`) and kept a while per device, so that
//! the session and chat screens do not ask the server each time; `None` while offline and
//! never fetched.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use vellum_client::Client;
use vellum_wire::OrgPolicy;

/// How long a fetched policy is used before it is asked for again.
const POLICY_TTL: Duration = Duration::from_secs(60);
/// How long the device thread waits for the policy: a server that does not answer must not
/// hold up every other request of the window (the client's own timeout is a minute).
const POLICY_WAIT: Duration = Duration::from_secs(5);

/// The policy the page needs: `null` is "no bound".
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OrgPolicyView {
    pub max_expire_secs: Option<u64>,
    /// The org sets no lower bound; kept for the page's contract.
    pub min_expire_secs: Option<u64>,
    pub max_burn_secs: Option<u64>,
    /// Whether a chat may have no expiration timer.
    pub allow_no_expiry: bool,
    /// Whether files may be sent in some chats.
    pub files: bool,
    pub files_in_record: bool,
    pub files_in_transitory: bool,
    pub max_file_bytes: Option<u64>,
    pub allow_read_receipts: bool,
    pub allow_transitory: bool,
    pub default_record: bool,
    /// Whether records are configured (record chats exist).
    pub records: bool,
}

impl From<&OrgPolicy> for OrgPolicyView {
    fn from(p: &OrgPolicy) -> Self {
        Self {
            max_expire_secs: p.max_expire_secs,
            min_expire_secs: None,
            max_burn_secs: p.max_burn_secs,
            allow_no_expiry: p.allow_no_expiry,
            files: p.files_in_record || p.files_in_transitory,
            files_in_record: p.files_in_record,
            files_in_transitory: p.files_in_transitory,
            max_file_bytes: Some(p.max_file_bytes),
            allow_read_receipts: p.allow_read_receipts,
            allow_transitory: p.allow_transitory,
            default_record: p.default_record,
            records: p.records_public.is_some(),
        }
    }
}

/// Policies by device id, with when each was fetched.
static CACHE: Mutex<Option<HashMap<String, (Instant, OrgPolicy)>>> = Mutex::new(None);

fn cached(device: &str) -> Option<(Instant, OrgPolicy)> {
    let cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    cache.as_ref()?.get(device).cloned()
}

/// The org's policy: fresh from the server when the kept one is old, else the kept one;
/// `None` if the server cannot be reached and none was ever fetched.
pub(crate) async fn org_policy(client: &Client) -> Option<OrgPolicy> {
    let device = client.device_id().to_owned();
    let kept = cached(&device);
    if let Some((at, policy)) = &kept {
        if at.elapsed() < POLICY_TTL {
            return Some(policy.clone());
        }
    }
    match tokio::time::timeout(POLICY_WAIT, client.org_policy()).await {
        Ok(Ok(policy)) => {
            let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
            cache
                .get_or_insert_with(HashMap::new)
                .insert(device, (Instant::now(), policy.clone()));
            Some(policy)
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "the org's policy could not be fetched");
            kept.map(|(_, p)| p)
        }
        Err(_) => {
            tracing::debug!("the org's policy did not come in time");
            kept.map(|(_, p)| p)
        }
    }
}

/// [`org_policy`] as the page sees it.
pub(crate) async fn view(client: &Client) -> Option<OrgPolicyView> {
    org_policy(client).await.as_ref().map(OrgPolicyView::from)
}
