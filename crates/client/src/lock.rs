//! One process at a time changes a profile: `vellum watch` may run while `vellum send` does.
//! An advisory lock on `HOME/lock`, re-entrant within the process (operations nest).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::Error;

#[derive(Clone)]
pub struct ProfileLock(Arc<Mutex<(File, u32)>>);

/// Held while alive.
pub struct Held(ProfileLock);

impl ProfileLock {
    pub fn open(home: &Path) -> Result<Self, Error> {
        let path = home.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        Ok(Self(Arc::new(Mutex::new((file, 0)))))
    }

    /// Blocks until no other process holds the profile.
    pub fn hold(&self) -> Result<Held, Error> {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if state.1 == 0 {
            state
                .0
                .lock()
                .map_err(|e| Error::Io(format!("cannot lock the profile: {e}")))?;
        }
        state.1 += 1;
        Ok(Held(self.clone()))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut state = self.0 .0.lock().unwrap_or_else(|p| p.into_inner());
        state.1 -= 1;
        if state.1 == 0 {
            let _ = state.0.unlock();
        }
    }
}
