//! The device's one thread: it owns the profile (`Client`), and every request's device work
//! runs there in turn. MLS, crypto and SQLite's fsyncs so never run on the executor that
//! serves the window, and two requests never interleave inside one profile transaction.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use axum::http::StatusCode;
use tokio::sync::{mpsc, oneshot};
use vellum_client::Client;
use vellum_http::ApiError;

use crate::error::{client_error, REVOKED};

/// The profile as the window sees it: enrolled, or waiting for its first enrollment.
pub enum Device {
    Unenrolled { home: PathBuf },
    Enrolled(Box<Client>),
}

impl Device {
    pub fn open(home: &Path) -> Result<Self, vellum_client::Error> {
        if home.join("vellum.db").exists() {
            Ok(Device::Enrolled(Box::new(Client::open(home)?)))
        } else {
            Ok(Device::Unenrolled {
                home: home.to_owned(),
            })
        }
    }

    /// The enrolled client, or 409 `not_enrolled` for the enrollment screen to handle.
    pub fn client(&mut self) -> Result<&mut Client, ApiError> {
        match self {
            Device::Enrolled(client) => Ok(client),
            Device::Unenrolled { .. } => Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_enrolled",
                "this device is not enrolled yet",
            )),
        }
    }

    /// After the server said this device is revoked (the client wiped the profile): the
    /// window has no device any more, and plaintext staged for sending goes too.
    fn forget_revoked(&mut self) {
        if let Device::Enrolled(client) = self {
            let home = client.home().to_owned();
            crate::api::files::clear_staging(&home, None);
            *self = Device::Unenrolled { home };
        }
    }

    /// Runs a client operation and maps its error to the window's error.
    pub async fn with_client<T>(
        &mut self,
        op: impl AsyncFnOnce(&mut Client) -> Result<T, vellum_client::Error>,
    ) -> Result<T, ApiError> {
        let client = self.client()?;
        op(client).await.map_err(client_error)
    }
}

type Job = Box<dyn for<'a> FnOnce(&'a mut Device) -> Pin<Box<dyn Future<Output = ()> + 'a>> + Send>;

/// A handle to the device thread. Cheap to clone.
#[derive(Clone)]
pub struct DeviceHandle {
    jobs: mpsc::UnboundedSender<Job>,
}

impl DeviceHandle {
    /// Starts the device thread over `device`. It ends when every handle is dropped.
    pub fn spawn(device: Device) -> std::io::Result<Self> {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("vellum-device".into())
            .spawn(move || {
                let mut device = device;
                runtime.block_on(async move {
                    while let Some(job) = queue.recv().await {
                        job(&mut device).await;
                    }
                });
            })?;
        Ok(Self { jobs })
    }

    /// Runs `op` on the device thread with the profile to itself, and returns its result.
    pub async fn run<T, F>(&self, op: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: AsyncFnOnce(&mut Device) -> Result<T, ApiError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |device: &mut Device| {
            Box::pin(async move {
                let result = op(device).await;
                if matches!(&result, Err(e) if e.code == REVOKED) {
                    device.forget_revoked();
                }
                let _ = answer.send(result);
            })
        });
        self.jobs.send(job).map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "stopped",
                "the device has stopped",
            )
        })?;
        answered.await.map_err(|_| ApiError::internal())?
    }
}
