//! Signed HTTP calls to the delivery server: one node of it, or several that share its
//! database, tried in order until one answers.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{engine::general_purpose::STANDARD, Engine};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use vellum_mls::DeviceKey;
use vellum_wire::{codes, request_signing_bytes, ApiError, AuthHeaders, MAX_CLOCK_SKEW_SECS};

use crate::Error;

/// How long a connection attempt to one node may take before the next is tried: a host
/// that is down answers nothing, where a dead process's port is refused at once.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the client waits on a node that accepted a connection but may have hung
/// (SIGSTOP, a frozen VM): past these it counts the node as gone and moves to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// One API call, connection to last byte of the answer. File chunks keep the HTTP
    /// client's own longer limit ([`CHUNK_TIMEOUT`]).
    pub request: Duration,
    /// How often the wake-up WebSocket pings the node (the server pings every 30 s).
    pub ws_ping_every: Duration,
    /// A wake-up WebSocket that received no frame (pong or other) for this long is dead.
    pub ws_silent_for: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            request: Duration::from_secs(15),
            ws_ping_every: Duration::from_secs(10),
            ws_silent_for: Duration::from_secs(25),
        }
    }
}

/// A file chunk (up to a few MiB) may take longer than an API call on a slow link.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(60);

/// One node of the delivery server.
struct Node {
    base: String,
    /// The node's start (Unix seconds) once it refused a timestamp from before it: requests
    /// to it are signed no earlier, whatever this device's clock says. Each node has its own.
    not_before: AtomicI64,
}

pub struct Api {
    nodes: Vec<Node>,
    /// The node that answered last: every call starts there (for this process).
    current: AtomicUsize,
    http: reqwest::Client,
    timeouts: Timeouts,
}

/// Why one attempt at one node got no usable answer.
enum Failure {
    /// The request never reached the node (no connection): any request may go elsewhere.
    NotSent(Error),
    /// The request may have taken effect there (answer lost, or a proxy's 502/503/504):
    /// only an idempotent one may be sent to another node.
    Unconfirmed(Error),
}

/// Whether sending `method path` twice, to any nodes, changes nothing more than once. Reads,
/// PUTs and DELETEs are by HTTP's rules; of the POSTs, those ARCHITECTURE.md "Idempotent
/// writes" names: sends (by client message id), commits (by content), acks (forward only)
/// and key package uploads (each filed once ever). A key package claim is not: a lost
/// answer consumed packages, and claiming again would consume more.
fn idempotent(method: &Method, path: &str) -> bool {
    if *method != Method::POST {
        return true;
    }
    let path = path.split('?').next().unwrap_or_default();
    path == "/v1/ack"
        || path == "/v1/key-packages"
        || path
            .strip_prefix("/v1/groups/")
            .is_some_and(|rest| rest.ends_with("/messages") || rest.ends_with("/commits"))
}

/// A delivery server URL as stored: http(s), a host, no credentials, query or fragment, no
/// trailing slash.
pub fn normalize_server_url(url: &str) -> Result<String, Error> {
    let invalid = |why: &str| Error::Invalid(format!("{url:?} is not a server URL: {why}"));
    if !url.contains("://") {
        // "127.0.0.1:7480" would parse as a URL of scheme "127.0.0.1", or not at all.
        return Err(invalid("it must start with http:// or https://"));
    }
    let parsed = reqwest::Url::parse(url.trim()).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("it must start with http:// or https://"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it names no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Not echoed: the password would end up in an error message.
        return Err(Error::Invalid(
            "a server URL must not carry a user name or password: it is not a server URL".into(),
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("it must not have a query or fragment"));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The identity a request is signed with.
pub struct Signer<'a> {
    pub device_id: &'a str,
    pub key: &'a DeviceKey,
}

fn random_nonce() -> String {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).expect("operating system RNG");
    hex::encode(raw)
}

impl Signer<'_> {
    /// The authentication headers for one request.
    pub fn headers(&self, method: &str, path: &str, body: &[u8]) -> Vec<(&'static str, String)> {
        self.headers_at(method, path, body, now_secs())
    }

    /// The authentication headers for one request signed at `timestamp`. The signature
    /// covers the path, not the host: it is valid at whichever node the request goes to.
    pub fn headers_at(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        timestamp: i64,
    ) -> Vec<(&'static str, String)> {
        let nonce = random_nonce();
        let signed = request_signing_bytes(method, path, self.device_id, timestamp, &nonce, body);
        vec![
            (AuthHeaders::DEVICE, self.device_id.to_owned()),
            (AuthHeaders::TIMESTAMP, timestamp.to_string()),
            (AuthHeaders::NONCE, nonce),
            (
                AuthHeaders::SIGNATURE,
                STANDARD.encode(self.key.sign(&signed)),
            ),
        ]
    }
}

/// What one request carries, whichever node it goes to.
struct Outgoing<'a> {
    method: &'a Method,
    path: &'a str,
    body: Option<&'a [u8]>,
    signer: Option<&'a Signer<'a>>,
    bearer: Option<&'a str>,
}

impl Api {
    /// A server with one node.
    pub fn new(base: &str) -> Result<Self, Error> {
        Self::with_servers(&[base])
    }

    /// A server whose nodes share one database, in the order they are tried.
    pub fn with_servers<S: AsRef<str>>(bases: &[S]) -> Result<Self, Error> {
        if bases.is_empty() {
            return Err(Error::Invalid("no server URL given".into()));
        }
        let mut nodes: Vec<Node> = Vec::with_capacity(bases.len());
        for base in bases {
            let base = normalize_server_url(base.as_ref())?;
            if nodes.iter().any(|n| n.base == base) {
                return Err(Error::Invalid(format!("{base} is given twice")));
            }
            nodes.push(Node {
                base,
                not_before: AtomicI64::new(0),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(CHUNK_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| Error::Network(e.to_string()))?;
        Ok(Self {
            nodes,
            current: AtomicUsize::new(0),
            http,
            timeouts: Timeouts::default(),
        })
    }

    /// The limits this client waits on a node before moving on.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.timeouts = timeouts;
    }

    fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.nodes.len()
    }

    /// The node requests go to now.
    pub fn base(&self) -> &str {
        &self.nodes[self.current()].base
    }

    /// Every node, in the order they are tried.
    pub fn servers(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.base.clone()).collect()
    }

    /// Moves on to the next node if `base` is still the current one: a connection to it
    /// failed outside [`Api::call`] (the wake-up WebSocket, a file chunk).
    pub fn failed(&self, base: &str) {
        let current = self.current();
        if self.nodes[current].base == base {
            let next = (current + 1) % self.nodes.len();
            let _ =
                self.current
                    .compare_exchange(current, next, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// The HTTP client, for the raw (non-JSON) bodies of file chunks (`files.rs`).
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The timestamp to sign a request to the current node with now: this device's clock,
    /// but never before the start of that node if it refused an earlier one.
    pub fn timestamp(&self) -> i64 {
        self.timestamp_at(self.current())
    }

    fn timestamp_at(&self, node: usize) -> i64 {
        now_secs().max(self.nodes[node].not_before.load(Ordering::Relaxed))
    }

    /// One request. `signer` adds device authentication; `bearer` admin authentication.
    /// It goes to the current node; when that one cannot be reached (or a proxy before it
    /// answers 502, 503 or 504) to the next, in order, and the one that answers becomes the
    /// current one. A request that may have taken effect goes on only if it is idempotent.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        signer: Option<&Signer<'_>>,
        bearer: Option<&str>,
    ) -> Result<T, Error> {
        let bytes = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| Error::Invalid(e.to_string()))?),
            None => None,
        };
        let request = Outgoing {
            method: &method,
            path,
            body: bytes.as_deref(),
            signer,
            bearer,
        };
        let first = self.current();
        let count = self.nodes.len();
        let mut failed = None;
        let mut answer = None;
        for step in 0..count {
            let node = (first + step) % count;
            match self.attempt(node, &request).await {
                Ok(answered) => {
                    self.current.store(node, Ordering::Relaxed);
                    answer = Some((node, answered));
                    break;
                }
                Err(Failure::NotSent(e)) => failed = Some(e),
                Err(Failure::Unconfirmed(e)) if idempotent(&method, path) => failed = Some(e),
                Err(Failure::Unconfirmed(e)) => return Err(e),
            }
            if step + 1 < count {
                tracing::debug!(
                    from = %self.nodes[node].base,
                    to = %self.nodes[(node + 1) % count].base,
                    "server unreachable; trying the next"
                );
            }
        }
        let Some((node, (status, text))) = answer else {
            return Err(failed.unwrap_or_else(|| Error::Network("no server".into())));
        };
        // A timeout or server error says nothing about whether the request took effect:
        // callers treat it like a lost connection and retry (every write is idempotent).
        if status == StatusCode::REQUEST_TIMEOUT || status.is_server_error() {
            return Err(Error::Network(format!(
                "{}{path}: the server did not confirm the request (HTTP {status})",
                self.nodes[node].base
            )));
        }
        if !status.is_success() {
            let body: ApiError = serde_json::from_slice(&text).unwrap_or_else(|_| ApiError {
                code: "http_error".into(),
                message: format!("HTTP {status}"),
            });
            // Named: with several nodes "unknown device" alone would not say whose answer
            // it was (a node of another server in the list, issue 13).
            return Err(Error::Api {
                status: status.as_u16(),
                code: body.code,
                message: format!("{}: {}", self.nodes[node].base, body.message),
            });
        }
        if status == StatusCode::NO_CONTENT || text.is_empty() {
            return serde_json::from_slice(b"null")
                .map_err(|e| Error::Invalid(format!("unexpected empty response: {e}")));
        }
        serde_json::from_slice(&text)
            .map_err(|e| Error::Network(format!("unexpected response from the server: {e}")))
    }

    /// Sends `request` to one node: its status and body, unless no usable answer came.
    async fn attempt(
        &self,
        node: usize,
        request: &Outgoing<'_>,
    ) -> Result<(StatusCode, Vec<u8>), Failure> {
        let Outgoing {
            method,
            path,
            body,
            signer,
            bearer,
        } = *request;
        let base = &self.nodes[node].base;
        let url = format!("{base}{path}");
        // A node that restarted forgot the nonces it saw and refuses timestamps from before
        // its start: such a request is signed again (fresh nonce) from the start it reports.
        // Signing at that second needs no wait: it is no later than the node's clock and no
        // earlier than this device's timestamp, which the node found inside its window.
        let mut retried = false;
        loop {
            let mut outgoing = self
                .http
                .request(method.clone(), &url)
                .timeout(self.timeouts.request);
            if let Some(signer) = signer {
                let timestamp = self.timestamp_at(node);
                for (name, value) in
                    signer.headers_at(method.as_str(), path, body.unwrap_or_default(), timestamp)
                {
                    outgoing = outgoing.header(name, value);
                }
            }
            if let Some(token) = bearer {
                outgoing = outgoing.bearer_auth(token);
            }
            if let Some(body) = body {
                outgoing = outgoing
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_vec());
            }
            let response = outgoing.send().await.map_err(|e| match e.is_connect() {
                true => Failure::NotSent(network(&url, e)),
                false => Failure::Unconfirmed(network(&url, e)),
            })?;
            let status = response.status();
            let started = response
                .headers()
                .get(AuthHeaders::SERVER_START)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i64>().ok());
            let text = response
                .bytes()
                .await
                .map_err(|e| Failure::Unconfirmed(network(&url, e)))?;
            if matches!(
                status,
                StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            ) {
                return Err(Failure::Unconfirmed(Error::Network(format!(
                    "{url}: the server did not confirm the request (HTTP {status})"
                ))));
            }
            let refused_as_early = status == StatusCode::UNAUTHORIZED
                && serde_json::from_slice::<ApiError>(&text)
                    .is_ok_and(|e| e.code == codes::BEFORE_SERVER_START);
            match started {
                // The header is not authenticated: a start further ahead than the window
                // the node itself accepts is not believed.
                Some(started)
                    if refused_as_early
                        && signer.is_some()
                        && !retried
                        && started <= now_secs() + MAX_CLOCK_SKEW_SECS =>
                {
                    self.nodes[node]
                        .not_before
                        .fetch_max(started, Ordering::Relaxed);
                    retried = true;
                }
                _ => return Ok((status, text.to_vec())),
            }
        }
    }
}

/// A failed request as an error that names the URL and the cause underneath reqwest's
/// summary ("error sending request": connection refused, DNS, TLS), so a user can act on it.
fn network(url: &str, e: reqwest::Error) -> Error {
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let text = cause.to_string();
        // hyper and std repeat one cause at several levels.
        if !causes.contains(&text) {
            causes.push(text);
        }
        source = cause.source();
    }
    let summary = e.without_url().to_string();
    match causes.is_empty() {
        true => Error::Network(format!("{url}: {summary}")),
        false => Error::Network(format!("{url}: {summary}: {}", causes.join(": "))),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Status, extra headers and body of one canned response.
    type Canned = (u16, Vec<(&'static str, String)>, String);

    /// A loopback HTTP server answering each request with the next of `responses` (status,
    /// extra headers, body); returns the `x-vellum-timestamp` of each request it got.
    async fn serve(responses: Vec<Canned>) -> (String, tokio::task::JoinHandle<Vec<i64>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut timestamps = Vec::new();
            for (status, headers, body) in responses {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                while !request.ends_with(b"\r\n\r\n") {
                    let mut byte = [0u8; 1];
                    socket.read_exact(&mut byte).await.unwrap();
                    request.push(byte[0]);
                }
                let request = String::from_utf8(request).unwrap();
                let timestamp = request
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{}: ", AuthHeaders::TIMESTAMP)))
                    .unwrap()
                    .parse()
                    .unwrap();
                timestamps.push(timestamp);
                let mut response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n",
                    body.len()
                );
                for (name, value) in headers {
                    response.push_str(&format!("{name}: {value}\r\n"));
                }
                response.push_str("\r\n");
                response.push_str(&body);
                socket.write_all(response.as_bytes()).await.unwrap();
                socket.shutdown().await.unwrap();
            }
            timestamps
        });
        (base, task)
    }

    fn early(started: i64) -> Canned {
        (
            401,
            vec![(AuthHeaders::SERVER_START, started.to_string())],
            format!(
                r#"{{"code":"{}","message":"m"}}"#,
                codes::BEFORE_SERVER_START
            ),
        )
    }

    /// A server that restarted after this device signed (or whose clock is ahead) refuses
    /// the timestamp; the request is signed again, once, from the start it reports, and
    /// later requests are signed no earlier either.
    #[tokio::test]
    async fn a_request_from_before_a_server_restart_is_signed_again_from_its_start() {
        let started = now_secs() + 100;
        let ok = (200, vec![], "{}".to_string());
        let (base, server) = serve(vec![early(started), ok.clone(), ok]).await;
        let api = Api::new(&base).unwrap();
        let key = DeviceKey::generate();
        let signer = Signer {
            device_id: "d",
            key: &key,
        };
        for _ in 0..2 {
            let _: serde_json::Value = api
                .call(Method::GET, "/v1/sync", None::<&()>, Some(&signer), None)
                .await
                .unwrap();
        }
        let timestamps = server.await.unwrap();
        assert!(timestamps[0] < started);
        assert_eq!(&timestamps[1..], &[started, started]);
    }

    /// Issue 10: a network error names the URL and why (here: nothing listens there).
    #[tokio::test]
    async fn issue_10_network_errors_name_the_url_and_the_cause() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let api = Api::new(&base).unwrap();
        let err = api
            .call::<serde_json::Value>(Method::GET, "/v1/sync", None::<&()>, None, None)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Network(_)), "{text}");
        assert!(text.contains(&format!("{base}/v1/sync")), "{text}");
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }

    #[tokio::test]
    async fn a_second_refusal_is_an_error_not_a_loop() {
        let started = now_secs() + 100;
        let (base, server) = serve(vec![early(started), early(started + 1)]).await;
        let api = Api::new(&base).unwrap();
        let key = DeviceKey::generate();
        let signer = Signer {
            device_id: "d",
            key: &key,
        };
        let err = api
            .call::<serde_json::Value>(Method::GET, "/v1/sync", None::<&()>, Some(&signer), None)
            .await
            .unwrap_err();
        assert!(err.is_code(codes::BEFORE_SERVER_START), "{err}");
        assert_eq!(server.await.unwrap().len(), 2);
    }

    /// A loopback address nothing listens on: connections to it are refused.
    fn dead_base() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        base
    }

    /// Issue 13: a node that refuses connections is skipped; the one that answered is
    /// tried first from then on.
    #[tokio::test]
    async fn issue_13_a_dead_node_is_skipped_and_the_live_one_kept() {
        let ok = (200, vec![], "{}".to_string());
        let (live, server) = serve(vec![ok.clone(), ok]).await;
        let dead = dead_base();
        let api = Api::with_servers(&[dead.clone(), live.clone()]).unwrap();
        assert_eq!(api.base(), dead);
        let key = DeviceKey::generate();
        let signer = Signer {
            device_id: "d",
            key: &key,
        };
        for _ in 0..2 {
            let _: serde_json::Value = api
                .call(Method::GET, "/v1/sync", None::<&()>, Some(&signer), None)
                .await
                .unwrap();
            assert_eq!(api.base(), live);
        }
        assert_eq!(
            server.await.unwrap().len(),
            2,
            "both calls reached the live node"
        );
        assert_eq!(api.servers(), vec![dead, live], "the order is kept");
    }

    /// Issue 13: a write whose answer was lost (here a proxy's 502) goes on to the next node
    /// only if sending it twice is harmless: a message send is, a key package claim is not.
    #[tokio::test]
    async fn issue_13_an_unconfirmed_write_goes_to_the_next_node_only_if_idempotent() {
        let gateway = (502, vec![], "bad gateway".to_string());
        let ok = (200, vec![], r#"{"seq":1}"#.to_string());
        let (first, first_served) = serve(vec![gateway.clone(), gateway]).await;
        let (second, second_served) = serve(vec![ok]).await;
        let api = Api::with_servers(&[first.clone(), second.clone()]).unwrap();
        let key = DeviceKey::generate();
        let signer = Signer {
            device_id: "d",
            key: &key,
        };
        let body = serde_json::json!({});
        let err = api
            .call::<serde_json::Value>(
                Method::POST,
                "/v1/key-packages/claim",
                Some(&body),
                Some(&signer),
                None,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Network(_)), "{err}");
        assert!(err.to_string().contains("502"), "{err}");
        assert_eq!(api.base(), first, "a claim is not sent again elsewhere");
        let sent: serde_json::Value = api
            .call(
                Method::POST,
                "/v1/groups/ab/messages",
                Some(&body),
                Some(&signer),
                None,
            )
            .await
            .unwrap();
        assert_eq!(sent["seq"], 1);
        assert_eq!(api.base(), second);
        assert_eq!(first_served.await.unwrap().len(), 2);
        assert_eq!(
            second_served.await.unwrap().len(),
            1,
            "only the send went on"
        );
    }

    /// Issue 13: each node has its own start; a request to another node is not signed from
    /// the start of the one that refused.
    #[tokio::test]
    async fn issue_13_each_node_has_its_own_start() {
        let started = now_secs() + 100;
        let ok = (200, vec![], "{}".to_string());
        let (restarted, restarted_served) = serve(vec![early(started), ok.clone()]).await;
        let (other, other_served) = serve(vec![ok]).await;
        let api = Api::with_servers(&[restarted.clone(), other.clone()]).unwrap();
        let key = DeviceKey::generate();
        let signer = Signer {
            device_id: "d",
            key: &key,
        };
        let _: serde_json::Value = api
            .call(Method::GET, "/v1/sync", None::<&()>, Some(&signer), None)
            .await
            .unwrap();
        api.failed(&restarted);
        assert_eq!(api.base(), other);
        let _: serde_json::Value = api
            .call(Method::GET, "/v1/sync", None::<&()>, Some(&signer), None)
            .await
            .unwrap();
        assert_eq!(restarted_served.await.unwrap()[1], started);
        assert!(other_served.await.unwrap()[0] < started);
    }

    /// A node that accepts connections and never answers, as a hung (SIGSTOPped) process's
    /// does: the kernel completes the handshake from the listen backlog.
    fn hung_node() -> (String, std::net::TcpListener) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        (
            format!("http://{}", listener.local_addr().unwrap()),
            listener,
        )
    }

    fn short_timeouts() -> Timeouts {
        Timeouts {
            request: Duration::from_millis(300),
            ..Timeouts::default()
        }
    }

    /// Issue 13: a hung node is given up after the request timeout, not the HTTP client's
    /// long one: a read goes on to the next node, which stays the current one; a claim
    /// (not idempotent) fails with an error naming the hung node.
    #[tokio::test]
    async fn issue_13_a_hung_node_is_given_up_after_the_request_timeout() {
        let (hung, _listener) = hung_node();
        let ok = (200, vec![], "{}".to_string());
        let (live, served) = serve(vec![ok]).await;
        let mut api = Api::with_servers(&[hung.clone(), live.clone()]).unwrap();
        assert_eq!(api.timeouts().request, Duration::from_secs(15));
        api.set_timeouts(short_timeouts());
        let key = DeviceKey::generate();
        let signer = Signer {
            device_id: "d",
            key: &key,
        };
        let _: serde_json::Value = api
            .call(Method::GET, "/v1/sync", None::<&()>, Some(&signer), None)
            .await
            .unwrap();
        assert_eq!(api.base(), live);
        assert_eq!(served.await.unwrap().len(), 1);

        let mut api = Api::with_servers(&[hung.clone(), live]).unwrap();
        api.set_timeouts(short_timeouts());
        let err = api
            .call::<serde_json::Value>(
                Method::POST,
                "/v1/key-packages/claim",
                Some(&serde_json::json!({})),
                Some(&signer),
                None,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Network(_)), "{err}");
        assert!(err.to_string().contains(&hung), "{err}");
    }

    /// Issue 13: what a server URL may be.
    #[test]
    fn issue_13_server_urls_are_checked_and_normalized() {
        assert_eq!(
            normalize_server_url(" https://Node.Example:8443/ ").unwrap(),
            "https://node.example:8443"
        );
        for bad in [
            "",
            "node.example",
            "ftp://node.example",
            "http://",
            "https://user:secret@node.example",
            "https://node.example/?x=1",
            "https://node.example/#top",
        ] {
            let err = normalize_server_url(bad).unwrap_err().to_string();
            assert!(err.contains("is not a server URL"), "{bad:?}: {err}");
            assert!(!err.contains("secret"), "{err}");
        }
        let err = Api::with_servers(&["http://a.example", "http://a.example/"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("given twice"), "{err}");
    }
}
