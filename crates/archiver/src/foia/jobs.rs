//! Production jobs: a case's production is built on a thread of its own (it can take
//! minutes), into a private temporary directory outside DATA that is zipped into memory and
//! removed at once. The zip waits in memory until it is downloaded, or the archive seals.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use vellum_production::{Formats, ProductionInput};
use vellum_record::api::foia::{JobState, ProductionJob, StartProduction};

use super::FoiaError;
use crate::api::{log_access, now_ms};
use crate::office::Caller;
use crate::production::Selection;
use crate::settings::OfficeSettings;
use crate::{ArchiveHandle, Vault};

/// One job: its progress, and the zip once built.
pub struct Job {
    pub view: ProductionJob,
    zip: Option<Vec<u8>>,
}

/// The jobs the actor knows, by id. Cleared when the archive seals.
#[derive(Default)]
pub struct Productions {
    jobs: HashMap<String, Arc<Mutex<Job>>>,
}

impl Productions {
    /// Forgets every job and its zip (the archive sealed).
    pub fn clear(&mut self) {
        self.jobs.clear();
    }
}

/// What the job's thread needs.
pub struct Plan {
    job: Arc<Mutex<Job>>,
    selection: Vec<Selection>,
    input: ProductionInput,
}

fn bates_prefix(req: &StartProduction, case_id: &str) -> Result<String, FoiaError> {
    let prefix = req
        .bates_prefix
        .clone()
        .unwrap_or_else(|| case_id.to_owned());
    if prefix.is_empty()
        || prefix.len() > 20
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    {
        return Err(FoiaError::Invalid(
            "a Bates prefix is 1 to 20 characters: letters, digits, '-' and '_'".into(),
        ));
    }
    Ok(prefix)
}

fn formats(names: &[String]) -> Result<Formats, FoiaError> {
    if names.is_empty() {
        return Ok(Formats::default());
    }
    let mut formats = Formats {
        rsmf: false,
        pdf: false,
        csv: false,
    };
    for name in names.iter().flat_map(|n| n.split(',')) {
        match name.trim() {
            "rsmf" => formats.rsmf = true,
            "pdf" => formats.pdf = true,
            "csv" => formats.csv = true,
            other => {
                return Err(FoiaError::Invalid(format!(
                    "unknown format {other:?}: rsmf, pdf or csv"
                )))
            }
        }
    }
    Ok(formats)
}

/// `POST /v1/foia/cases/{id}/productions`: checks the request and the case, registers a
/// running job and returns it with what its thread needs ([`run`]).
pub fn start(
    vault: &mut Vault,
    caller: &Caller,
    settings: &OfficeSettings,
    id: &str,
    req: &StartProduction,
) -> Result<(ProductionJob, Plan), FoiaError> {
    let (case, selection) = super::selection(vault, caller, id)?;
    let formats = formats(&req.formats)?;
    let bates_prefix = bates_prefix(req, &case.id)?;
    let view = ProductionJob {
        job: crate::office::random_code(),
        case_id: case.id.clone(),
        state: JobState::Running,
        done: 0,
        total: selection.len() as u64,
        error: None,
        summary: None,
    };
    let job = Arc::new(Mutex::new(Job {
        view: view.clone(),
        zip: None,
    }));
    vault.productions.jobs.insert(view.job.clone(), job.clone());
    log_access(
        vault,
        "foia",
        &format!(
            "{} started production {} of case {} ({} records)",
            caller.name,
            view.job,
            case.id,
            selection.len()
        ),
    );
    let input = ProductionInput {
        case_id: case.id,
        requester: case.requester,
        description: case.description,
        produced_at: now_ms(),
        time_zone: settings.time_zone.clone(),
        bates_prefix,
        bates_start: case.bates_next.unwrap_or(1),
        formats,
        origin: String::new(),
        verifier_key: String::new(),
        checkpoint: String::new(),
        checkpoint_size: 0,
        binding: None,
        items: Vec::new(),
    };
    Ok((
        view,
        Plan {
            job,
            selection,
            input,
        },
    ))
}

/// Builds the production on a thread of its own: gathers the records on the actor, writes
/// the production into a private directory, zips it into memory and removes the directory.
pub fn run(handle: ArchiveHandle, plan: Plan) {
    let Plan {
        job,
        selection,
        mut input,
    } = plan;
    // What the case selected: the progress's own total counts the production's steps.
    let records = selection.len() as u64;
    std::thread::spawn(move || {
        let progress_job = job.clone();
        let result = (|| -> Result<(Vec<u8>, serde_json::Value), String> {
            let gathered = handle
                .call_blocking(move |v| crate::production::checkpoint_and_gather(v, &selection))
                .map_err(|e| e.to_string())??;
            input.items = gathered.items;
            input.checkpoint = gathered.checkpoint;
            input.checkpoint_size = gathered.checkpoint_size;
            input.origin = gathered.origin;
            input.verifier_key = gathered.verifier_key;
            input.binding = gathered.binding;
            let dir = PrivateDir::new()?;
            let summary = vellum_production::produce(&input, dir.path(), &mut |p| {
                let mut job = progress_job.lock().expect("job lock");
                job.view.done = p.done;
                job.view.total = p.total;
            })
            .map_err(|e| e.to_string())?;
            let zip = zip_dir(dir.path())?;
            Ok((zip, serde_json::to_value(&summary).unwrap_or_default()))
        })();
        if let Ok((_, summary)) = &result {
            let (case, id) = {
                let view = &job.lock().expect("job lock").view;
                (view.case_id.clone(), view.job.clone())
            };
            let bates_last = summary["bates_last"].as_str().and_then(bates_counter);
            // Sealed in the meantime, the case cannot be marked: the production stands, and
            // its status waits for a hand.
            match handle.call_blocking(move |v| super::produced(v, &case, &id, records, bates_last))
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "a finished production left its case as it was")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a finished production left its case as it was")
                }
            }
        }
        let mut job = job.lock().expect("job lock");
        match result {
            Ok((zip, summary)) => {
                job.view.state = JobState::Done;
                job.view.done = job.view.total;
                job.view.summary = Some(summary);
                job.zip = Some(zip);
            }
            Err(why) => {
                job.view.state = JobState::Failed;
                job.view.error = Some(why);
            }
        }
    });
}

fn job_of(vault: &Vault, case: &str, job: &str) -> Result<Arc<Mutex<Job>>, FoiaError> {
    if vault.secret.is_none() {
        return Err(FoiaError::Sealed);
    }
    vault
        .productions
        .jobs
        .get(job)
        .filter(|j| j.lock().expect("job lock").view.case_id == case)
        .cloned()
        .ok_or_else(|| FoiaError::NoSuchJob {
            case: case.to_owned(),
            job: job.to_owned(),
        })
}

/// `GET /v1/foia/cases/{id}/productions/{job}`.
pub fn status(
    vault: &mut Vault,
    caller: &Caller,
    case: &str,
    job: &str,
) -> Result<ProductionJob, FoiaError> {
    super::allowed(caller, vellum_record::api::office::Permission::Produce)?;
    let view = job_of(vault, case, job)?
        .lock()
        .expect("job lock")
        .view
        .clone();
    Ok(view)
}

/// `GET /v1/foia/cases/{id}/productions/{job}/download`: the zip, once; the job is then
/// forgotten.
pub fn download(
    vault: &mut Vault,
    caller: &Caller,
    case: &str,
    job: &str,
) -> Result<Vec<u8>, FoiaError> {
    super::allowed(caller, vellum_record::api::office::Permission::Produce)?;
    let slot = job_of(vault, case, job)?;
    let mut slot = slot.lock().expect("job lock");
    match slot.view.state {
        JobState::Running => {
            return Err(FoiaError::Conflict(format!(
                "production {job} is still running ({} of {} records)",
                slot.view.done, slot.view.total
            )))
        }
        JobState::Failed => {
            return Err(FoiaError::Conflict(format!(
                "production {job} failed: {}",
                slot.view.error.as_deref().unwrap_or("unknown error")
            )))
        }
        JobState::Done | JobState::Gone => {}
    }
    let zip = slot
        .zip
        .take()
        .ok_or_else(|| FoiaError::Conflict(format!("production {job} was downloaded already")))?;
    slot.view.state = JobState::Gone;
    drop(slot);
    vault.productions.jobs.remove(job);
    log_access(
        vault,
        "foia",
        &format!(
            "{} downloaded production {job} of case {case} ({} bytes)",
            caller.name,
            zip.len()
        ),
    );
    Ok(zip)
}

/// The counter of a formatted Bates number (`CREW-000042` is 42): its trailing digits, which
/// a separator always parts from a prefix ending in a digit.
fn bates_counter(bates: &str) -> Option<u64> {
    let digits = bates.len() - bates.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    bates[bates.len() - digits..].parse().ok()
}

/// The name every production's staging directory starts with.
pub const STAGING_PREFIX: &str = "vellum-production-";

/// Removes the staging directories of archivers that no longer run: a production killed
/// mid-way (SIGKILL, power loss) leaves released text there, which nothing else would ever
/// delete. Run at start (on the system's temporary directory), before any production of this
/// process.
pub fn remove_stale_staging(temp_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(temp_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(STAGING_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove a stale production");
            }
        }
    }
}

/// A directory only this process's user can enter, under the system's temporary directory
/// (never DATA), removed with everything in it when dropped.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn new() -> Result<Self, String> {
        use std::os::unix::fs::DirBuilderExt;
        // The process id in the name lets a restarted archiver find what a killed one left.
        let path = std::env::temp_dir().join(format!(
            "{STAGING_PREFIX}{}-{}",
            std::process::id(),
            crate::office::random_code()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| format!("cannot create a private directory for the production: {e}"))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::error!(error = %e, "a production's temporary directory was not removed");
        }
    }
}

/// Every file under `dir`, zipped (stored: the PDF and rsmf.zip are compressed already).
pub fn zip_dir(dir: &Path) -> Result<Vec<u8>, String> {
    use zip::write::SimpleFileOptions;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .unix_permissions(0o644);
    let mut pending = vec![dir.to_owned()];
    let mut files = Vec::new();
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).map_err(|e| e.to_string())? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    for path in files {
        let name = path
            .strip_prefix(dir)
            .expect("under the directory")
            .to_string_lossy()
            .into_owned();
        zip.start_file(name, options).map_err(|e| e.to_string())?;
        let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
        zip.write_all(&bytes).map_err(|e| e.to_string())?;
    }
    Ok(zip.finish().map_err(|e| e.to_string())?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_11_a_killed_archivers_staging_is_removed_at_start_and_a_live_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dead = tmp.path().join(format!("{STAGING_PREFIX}4000000000-abc"));
        let live = tmp.path().join(format!(
            "{STAGING_PREFIX}{}-def",
            std::os::unix::process::parent_id()
        ));
        let other = tmp.path().join("vellum-something-else");
        for dir in [&dead, &live, &other] {
            std::fs::create_dir(dir).unwrap();
            std::fs::write(dir.join("transcript.pdf"), b"released text").unwrap();
        }
        remove_stale_staging(tmp.path());
        assert!(!dead.exists(), "a dead archiver's production is removed");
        assert!(live.exists(), "a running archiver's is left alone");
        assert!(other.exists());
    }

    #[test]
    fn issue_11_the_next_production_continues_the_bates_numbers() {
        assert_eq!(bates_counter("CREW-000042"), Some(42));
        assert_eq!(bates_counter("FOIA-2026-0001-000007"), Some(7));
        assert_eq!(bates_counter("AGY2-1234567"), Some(1_234_567));
        assert_eq!(bates_counter("CREW-"), None);
    }
}
