//! What the nodes of one deployment must agree on before serving (issue 13).

use vellum_store::{Error, Result};

use crate::{pg, write_tx, PgStore};

impl PgStore {
    /// The org public key the deployment's first node registered, if one did.
    pub async fn org_key(&self) -> Result<Option<Vec<u8>>> {
        let c = self.client().await?;
        let row = c
            .query_one("SELECT org_public FROM server_instance WHERE id = 1", &[])
            .await
            .map_err(pg)?;
        Ok(row.get(0))
    }

    /// Registers `org_public` as the deployment's org key if none is, and refuses
    /// (`Refused`) a node whose key is another: certificates signed by two org keys would
    /// split the org.
    pub async fn bind_org_key(&self, org_public: &[u8]) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        let on_file: Option<Vec<u8>> = tx
            .query_one("SELECT org_public FROM server_instance WHERE id = 1", &[])
            .await
            .map_err(pg)?
            .get(0);
        match on_file {
            Some(key) if key == org_public => Ok(()),
            Some(_) => Err(Error::Refused(
                "this database belongs to another org key: every node needs a copy of the \
                 first node's data directory (org.key, directory.key, admin-token.sha256)"
                    .into(),
            )),
            None => {
                tx.execute(
                    "UPDATE server_instance SET org_public = $1 WHERE id = 1",
                    &[&org_public],
                )
                .await
                .map_err(pg)?;
                tx.commit().await.map_err(pg)
            }
        }
    }
}
