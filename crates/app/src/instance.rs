//! One `vellum app` per profile. The running one holds `HOME/app.lock` and listens on the
//! Unix socket `HOME/app.sock` (0600, in the 0700 home, removed at exit); a second
//! `vellum app` on the same home finds the lock taken, asks the running one for a fresh
//! launch URL over the socket, opens it and exits. The one process keeps serving, so a
//! window whose tab was closed is reached again by running `vellum app` again.
//!
//! Only the same OS user reaches the socket: the file is the owner's alone (and the home
//! too), and the running app also checks the peer's user id against the socket's owner.
//!
//! The protocol is one line each way: `open` or `open dedicated` (the URL goes to the app's
//! own browser profile), answered by `url URL` or `error MESSAGE`.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

use crate::{AppError, Security};

/// The running app's socket in the profile directory.
pub const SOCKET: &str = "app.sock";
/// Held by the running app for as long as it serves.
const LOCK: &str = "app.lock";
/// How long a second `vellum app` waits for the running one to answer (it may be starting).
const ASK_FOR: Duration = Duration::from_secs(10);
/// How long the running app waits for a request line.
const READ_FOR: Duration = Duration::from_secs(5);
/// The longest request line read.
const MAX_LINE: u64 = 64;

pub fn socket_path(home: &Path) -> PathBuf {
    home.join(SOCKET)
}

/// This process is the profile's app while this is alive.
pub struct InstanceLock(#[allow(dead_code)] File);

/// Takes the profile's app lock: `None` when another `vellum app` holds it.
pub fn claim(home: &Path) -> Result<Option<InstanceLock>, AppError> {
    let path = home.join(LOCK);
    let io = |e| AppError::Io(path.display().to_string(), e);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(InstanceLock(file))),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// Asks the running app of `home` for a fresh launch URL.
pub async fn ask_running(home: &Path, dedicated_browser: bool) -> Result<String, AppError> {
    let path = socket_path(home);
    let deadline = Instant::now() + ASK_FOR;
    // The running app may still be starting (it takes the lock before it listens), or
    // replacing a stale socket.
    let stream = loop {
        match UnixStream::connect(&path).await {
            Ok(stream) => break stream,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "the running app does not answer yet");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                return Err(AppError::Io(
                    format!(
                        "another `vellum app` serves this profile but does not answer on {}",
                        path.display()
                    ),
                    e,
                ))
            }
        }
    };
    let io = |e| AppError::Io(path.display().to_string(), e);
    let (read, mut write) = stream.into_split();
    let request = if dedicated_browser {
        "open dedicated\n"
    } else {
        "open\n"
    };
    write.write_all(request.as_bytes()).await.map_err(io)?;
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(4096));
    tokio::time::timeout(ASK_FOR, reader.read_line(&mut line))
        .await
        .map_err(|_| io(std::io::ErrorKind::TimedOut.into()))?
        .map_err(io)?;
    match line.trim_end().split_once(' ') {
        Some(("url", url)) if url.starts_with("http://") => Ok(url.to_owned()),
        Some(("error", message)) => Err(io(std::io::Error::other(message.to_owned()))),
        _ => Err(io(std::io::Error::other("an answer this version does not know"))),
    }
}

/// The running app's socket: removed when dropped.
pub struct Listening {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listens on `HOME/app.sock` (replacing a stale one: the caller holds the lock, so no
/// other app uses it) and hands out launch URLs of `security`.
pub fn listen(home: &Path, security: Security) -> Result<Listening, AppError> {
    let path = socket_path(home);
    let io = |e| AppError::Io(path.display().to_string(), e);
    match std::fs::remove_file(&path) {
        Ok(()) => tracing::info!("replaced a stale app socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let listener = UnixListener::bind(&path).map_err(io)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    let owner = std::fs::metadata(&path).map_err(io)?.uid();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let security = security.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(stream, owner, &security).await {
                    tracing::debug!(error = %e, "app socket request failed");
                }
            });
        }
    });
    Ok(Listening { path, task })
}

async fn answer(stream: UnixStream, owner: u32, security: &Security) -> std::io::Result<()> {
    // The file's permissions keep others out; the peer's id is checked as well.
    if stream.peer_cred()?.uid() != owner {
        return Err(std::io::Error::other("a peer of another user"));
    }
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(MAX_LINE));
    let mut line = String::new();
    tokio::time::timeout(READ_FOR, reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let reply = match line.trim_end() {
        "open" => format!("url {}\n", security.launch_url(&security.renew_launch())),
        "open dedicated" => format!(
            "url {}\n",
            security.launch_url(&security.renew_launch_for(true))
        ),
        _ => "error unknown request\n".to_owned(),
    };
    write.write_all(reply.as_bytes()).await?;
    write.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12: a second `vellum app` reaches the running one over the socket and gets a
    /// fresh launch URL; the socket is the owner's only and goes when the app stops.
    #[tokio::test]
    async fn issue_12_a_second_app_gets_a_fresh_url_from_the_running_one() {
        let home = tempfile::tempdir().unwrap();
        let lock = claim(home.path()).unwrap().expect("first");
        assert!(claim(home.path()).unwrap().is_none(), "the lock is taken");
        // A stale socket from a killed process is replaced.
        std::fs::write(socket_path(home.path()), b"stale").unwrap();
        let (security, first) = Security::new("127.0.0.1:9", Duration::from_secs(60));
        let listening = listen(home.path(), security.clone()).unwrap();
        let mode = std::fs::metadata(socket_path(home.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let url = ask_running(home.path(), false).await.unwrap();
        assert!(url.starts_with("http://127.0.0.1:9/open?secret="), "{url}");
        assert!(!url.ends_with(&first), "a fresh secret");
        let again = ask_running(home.path(), true).await.unwrap();
        assert_ne!(url, again);
        drop(listening);
        assert!(!socket_path(home.path()).exists(), "removed at exit");
        drop(lock);
        assert!(claim(home.path()).unwrap().is_some(), "free again");
    }
}
