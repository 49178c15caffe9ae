//! Signed HTTP calls to the delivery server.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::{engine::general_purpose::STANDARD, Engine};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use vellum_mls::DeviceKey;
use vellum_wire::{codes, request_signing_bytes, ApiError, AuthHeaders, MAX_CLOCK_SKEW_SECS};

use crate::Error;

pub struct Api {
    base: String,
    http: reqwest::Client,
    /// The server's start (Unix seconds) once it refused a timestamp from before it:
    /// requests are signed no earlier, whatever this device's clock says.
    not_before: AtomicI64,
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

    /// The authentication headers for one request signed at `timestamp`.
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

impl Api {
    pub fn new(base: &str) -> Result<Self, Error> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Invalid(format!(
                "server URL must start with http:// or https://, got {base:?}"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Network(e.to_string()))?;
        Ok(Self {
            base,
            http,
            not_before: AtomicI64::new(0),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The HTTP client, for the raw (non-JSON) bodies of file chunks (`files.rs`).
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The timestamp to sign a request with now: this device's clock, but never before the
    /// start of a server that refused an earlier one.
    pub fn timestamp(&self) -> i64 {
        now_secs().max(self.not_before.load(Ordering::Relaxed))
    }

    /// One request. `signer` adds device authentication; `bearer` admin authentication.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        signer: Option<&Signer<'_>>,
        bearer: Option<&str>,
    ) -> Result<T, Error> {
        let bytes = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| Error::Invalid(e.to_string()))?,
            None => Vec::new(),
        };
        // A server that restarted forgot the nonces it saw and refuses timestamps from before
        // its start: such a request is signed again (fresh nonce) from the start it reports.
        // Signing at that second needs no wait: it is no later than the server's clock and no
        // earlier than this device's timestamp, which the server found inside its window.
        let mut retried = false;
        let (status, text) = loop {
            let mut request = self
                .http
                .request(method.clone(), format!("{}{}", self.base, path));
            if let Some(signer) = signer {
                for (name, value) in
                    signer.headers_at(method.as_str(), path, &bytes, self.timestamp())
                {
                    request = request.header(name, value);
                }
            }
            if let Some(token) = bearer {
                request = request.bearer_auth(token);
            }
            if body.is_some() {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(bytes.clone());
            }
            let url = format!("{}{}", self.base, path);
            let response = request.send().await.map_err(|e| network(&url, e))?;
            let status = response.status();
            let headers = response.headers().clone();
            let text = response.bytes().await.map_err(|e| network(&url, e))?;
            let started = headers
                .get(AuthHeaders::SERVER_START)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i64>().ok());
            let refused_as_early = status == StatusCode::UNAUTHORIZED
                && serde_json::from_slice::<ApiError>(&text)
                    .is_ok_and(|e| e.code == codes::BEFORE_SERVER_START);
            match started {
                // The header is not authenticated: a start further ahead than the window
                // the server itself accepts is not believed.
                Some(started)
                    if refused_as_early
                        && signer.is_some()
                        && !retried
                        && started <= now_secs() + MAX_CLOCK_SKEW_SECS =>
                {
                    self.not_before.fetch_max(started, Ordering::Relaxed);
                    retried = true;
                }
                _ => break (status, text),
            }
        };
        // A timeout or server error says nothing about whether the request took effect:
        // callers treat it like a lost connection and retry (every write is idempotent).
        if status == StatusCode::REQUEST_TIMEOUT || status.is_server_error() {
            return Err(Error::Network(format!(
                "{}{path}: the server did not confirm the request (HTTP {status})",
                self.base
            )));
        }
        if !status.is_success() {
            let body: ApiError = serde_json::from_slice(&text).unwrap_or_else(|_| ApiError {
                code: "http_error".into(),
                message: format!("HTTP {status}"),
            });
            return Err(Error::Api {
                status: status.as_u16(),
                code: body.code,
                message: body.message,
            });
        }
        if status == StatusCode::NO_CONTENT || text.is_empty() {
            return serde_json::from_slice(b"null")
                .map_err(|e| Error::Invalid(format!("unexpected empty response: {e}")));
        }
        serde_json::from_slice(&text)
            .map_err(|e| Error::Network(format!("unexpected response from the server: {e}")))
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
}
