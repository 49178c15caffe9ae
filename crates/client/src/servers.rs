//! The delivery server's nodes this device knows (issue 13): several `vellum server`
//! processes sharing one database, tried in order.

use reqwest::Method;
use vellum_wire::KeyPackageCount;

use crate::{normalize_server_url, Api, Client, Error};

impl Client {
    /// The server's nodes, in the order they are tried.
    pub fn servers(&self) -> Vec<String> {
        self.api.servers()
    }

    /// Adds a node at the end of the list, once it answered a request signed by this
    /// device: a mistyped URL or another org's server is refused now, not found out when
    /// the other nodes are down. Returns the URL as stored. Nothing changes on an error.
    pub async fn add_server(&mut self, url: &str) -> Result<String, Error> {
        let url = normalize_server_url(url)?;
        let mut servers = self.api.servers();
        if servers.contains(&url) {
            return Err(Error::Invalid(format!(
                "{url} is already one of this device's servers"
            )));
        }
        let node = Api::new(&url)?;
        let checked: Result<KeyPackageCount, Error> = node
            .call(
                Method::GET,
                "/v1/key-packages/count",
                None::<&()>,
                Some(&self.signer()),
                None,
            )
            .await;
        match checked {
            Ok(_) => {}
            Err(Error::Network(e)) => {
                return Err(Error::Invalid(format!(
                    "{url} was not added: it cannot be reached ({e})"
                )))
            }
            Err(Error::Api { message, code, .. }) => {
                return Err(Error::Invalid(format!(
                    "{url} was not added: it does not serve this device ({message}, {code}); \
                     give a node of the server this device enrolled with"
                )))
            }
            Err(e) => return Err(e),
        }
        servers.push(url.clone());
        self.set_servers(servers)?;
        Ok(url)
    }

    /// Removes a node from the list; the last one stays. Returns the URL as it was stored.
    pub fn remove_server(&mut self, url: &str) -> Result<String, Error> {
        let url = normalize_server_url(url)?;
        let mut servers = self.api.servers();
        let Some(at) = servers.iter().position(|s| *s == url) else {
            return Err(Error::Invalid(format!(
                "{url} is not one of this device's servers ({})",
                servers.join(", ")
            )));
        };
        if servers.len() == 1 {
            return Err(Error::Invalid(format!(
                "{url} is this device's only server: add another before removing it"
            )));
        }
        servers.remove(at);
        self.set_servers(servers)?;
        Ok(url)
    }

    /// Stores the list and talks to its nodes from now on.
    fn set_servers(&mut self, servers: Vec<String>) -> Result<(), Error> {
        let api = Api::with_servers(&servers)?;
        let _held = self.lock.hold()?;
        self.store.set_servers(&servers)?;
        self.api = api;
        Ok(())
    }
}
