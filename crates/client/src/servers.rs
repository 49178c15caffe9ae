//! The delivery server's nodes this device knows (issue 13): several `vellum server`
//! processes sharing one database, tried in order.

use reqwest::Method;
use vellum_wire::{DirectoryConfig, KeyPackageCount};

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
        let mut api = Api::with_servers(&servers)?;
        // The timeouts a caller chose outlive a change of the list.
        api.set_timeouts(self.api.timeouts());
        let _held = self.lock.hold()?;
        self.store.set_servers(&servers)?;
        self.api = api;
        Ok(())
    }
}

/// The nodes given at enrollment, checked before the code is redeemed (issue 13).
pub(crate) struct Surveyed {
    /// The nodes that answered as one server, in the order given: the code is redeemed at
    /// the first.
    pub answering: Vec<String>,
    /// The nodes that could not be reached: kept after the others, in the order given.
    pub unanswered: Vec<String>,
}

/// Asks every node for its key directory configuration (public, and the same at every
/// node of one server, as its log key is the deployment's): nodes that answer with another
/// one belong to another server and are refused, as is a URL that answers but not as a
/// Vellum node, before any enrollment code is spent. A node that cannot be reached is
/// kept (it may be down for maintenance), unless none answers.
pub(crate) async fn survey(servers: &[String]) -> Result<Surveyed, Error> {
    let asked = servers.iter().map(|url| async move {
        let node = Api::new(url)?;
        node.call::<DirectoryConfig>(Method::GET, "/v1/directory/config", None::<&()>, None, None)
            .await
    });
    let answers = futures_util::future::join_all(asked).await;
    let mut answering: Vec<(&String, DirectoryConfig)> = Vec::new();
    let mut unanswered = Vec::new();
    let mut unreachable = Vec::new();
    for (url, answer) in servers.iter().zip(answers) {
        match answer {
            Ok(config) => {
                if let Some((first, seen)) = answering.first() {
                    if *seen != config {
                        return Err(Error::Invalid(format!(
                            "{url} and {first} are nodes of different servers (they serve different key \
                             directories): give only the nodes of the server this enrollment \
                             code is from"
                        )));
                    }
                }
                answering.push((url, config));
            }
            Err(Error::Network(e)) => {
                unanswered.push(url.clone());
                unreachable.push(e);
            }
            Err(e) => {
                return Err(Error::Invalid(format!(
                    "{url} does not answer as a Vellum server node ({e})"
                )))
            }
        }
    }
    if answering.is_empty() {
        return Err(Error::Network(unreachable.join("; ")));
    }
    Ok(Surveyed {
        answering: answering.into_iter().map(|(url, _)| url.clone()).collect(),
        unanswered,
    })
}
