//! The accept loop: timeouts on headers (which also close idle keep-alive connections), a cap
//! on concurrent connections below the open-files limit, and a clear refusal past it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::ServerConfig;

/// File descriptors kept back from connections: the database and its journal, the listener,
/// logs, and the sockets being refused.
const RESERVED_FDS: u64 = 64;

/// Connections over the cap answered with a 503 at the same time; later ones are closed.
const REFUSALS_AT_ONCE: usize = 32;

/// The connection cap derived from the process's open-files limit (the soft limit).
pub fn connection_cap_from_rlimit() -> usize {
    let soft = rlimit::Resource::NOFILE
        .get()
        .map(|(soft, _hard)| soft)
        .unwrap_or(1024);
    soft.saturating_sub(RESERVED_FDS).max(1) as usize
}

/// A connection's socket with its slot under the cap: the slot is released when the socket
/// closes, including after an upgrade to a WebSocket, which outlives the HTTP connection.
struct Counted {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Answers a connection over the cap with a 503 `{code, message}` and closes it.
async fn refuse(mut stream: TcpStream) {
    let body = serde_json::to_string(&vellum_wire::ApiError {
        code: vellum_wire::codes::UNAVAILABLE.into(),
        message: "the server has too many connections; retry later".into(),
    })
    .expect("error body serialises");
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let refused = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Drain what the client sent, so closing does not reset the connection before it
        // has read the answer.
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), refused).await;
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let cap = config
        .max_connections
        .unwrap_or_else(connection_cap_from_rlimit);
    tracing::info!(max_connections = cap, "accepting connections");
    let slots = Arc::new(Semaphore::new(cap));
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(config.header_read_timeout));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // EMFILE and friends: retrying at once would spin; wait for closes.
                    tracing::warn!(error = %e, "cannot accept a connection; backing off");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(max_connections = cap, "refusing a connection over the cap");
            // Answering takes a socket for up to two seconds; a flood of them must not use up
            // the descriptors kept in reserve, so past a few at a time the socket just closes.
            if let Ok(answering) = refusals.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream).await;
                    drop(answering);
                });
            }
            continue;
        };
        let first_bytes = config.header_read_timeout;
        let service = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // hyper's header timeout starts with the first byte; a client that connects and
            // says nothing would otherwise hold its slot for ever.
            let mut first = [0u8; 1];
            match tokio::time::timeout(first_bytes, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let io = TokioIo::new(Counted {
                stream,
                _slot: slot,
            });
            let connection = builder.serve_connection_with_upgrades(io, service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
