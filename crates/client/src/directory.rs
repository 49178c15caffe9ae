//! The device's verified copy of the org's key directory (issue 9).
//!
//! Skeleton: the signatures other modules call. The implementation fills these in.

use vellum_directory::Mirror;

use crate::{Client, Error};

impl Client {
    /// Pins the server's directory configuration (log key, witnesses, quorum) at enrollment.
    #[allow(dead_code)] // called by enrollment once the directory lands
    pub(crate) async fn pin_directory(&mut self) -> Result<(), Error> {
        unimplemented!("issue 9: directory pinning")
    }

    /// Fetches the newest checkpoint, checks its signatures against the pinned log key and
    /// witness quorum, and catches the verified copy up (all or nothing). Returns the
    /// entries applied.
    pub async fn refresh_directory(
        &mut self,
    ) -> Result<Vec<vellum_directory::DirectoryEntry>, Error> {
        unimplemented!("issue 9: directory refresh")
    }

    /// The verified copy as of the last refresh.
    pub fn directory(&self) -> Result<Mirror, Error> {
        unimplemented!("issue 9: directory copy")
    }
}
