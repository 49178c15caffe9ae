//! Single-writer jobs (issue 13): on a shared database exactly one node runs each.

use std::sync::Arc;

use vellum_store::{Job, JobLease, Store};

/// Whether this node may run `job` now: keeps the lease in `lease` and asks for it again
/// when it has none or lost it. An error asking counts as not holding it.
pub(crate) async fn hold(
    store: &Arc<dyn Store>,
    job: Job,
    lease: &mut Option<Box<dyn JobLease>>,
) -> bool {
    if lease.as_ref().is_some_and(|held| held.is_held()) {
        return true;
    }
    if lease.take().is_some() {
        tracing::warn!(job = job.name(), "lost the lease of a single-writer job");
    }
    match store.try_job_lease(job).await {
        Ok(Some(granted)) => {
            tracing::debug!(job = job.name(), "holding the lease of a single-writer job");
            *lease = Some(granted);
            true
        }
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(job = job.name(), error = %e, "cannot ask for a job's lease");
            false
        }
    }
}
