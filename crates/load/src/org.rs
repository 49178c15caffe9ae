use std::path::{Path, PathBuf};

use reqwest::Method;
use vellum_client::{Api, Client, Signer};
use vellum_directory::{DeviceRef, IdentityKey};
use vellum_mls::mls_rs::storage_provider::in_memory::{
    InMemoryGroupStateStorage, InMemoryKeyPackageStorage,
};
use vellum_mls::mls_rs::ExtensionList;
use vellum_mls::{device_client, DeviceCertificate, DeviceKey, OrgIdentityProvider};
use vellum_wire::{
    CreateUserRequest, DirectoryAppended, EnrollRequest, EnrollResponse, EnrollmentCode,
    PostDirectoryChange, UploadKeyPackages,
};

use crate::{Error, Result};

/// An org on a running server, administered with its admin token.
pub struct Org {
    pub url: String,
    pub api: Api,
    pub token: String,
    /// Where client profiles go.
    pub root: PathBuf,
    _owned: Option<tempfile::TempDir>,
}

/// A device enrolled without a full client: its id and key sign its requests.
pub struct LightDevice {
    pub device_id: String,
    pub key: DeviceKey,
}

impl LightDevice {
    pub fn signer(&self) -> Signer<'_> {
        Signer {
            device_id: &self.device_id,
            key: &self.key,
        }
    }
}

pub(crate) fn mls_error(e: impl std::fmt::Display) -> Error {
    Error::Mls(e.to_string())
}

impl Org {
    /// An org on a server someone else started; client profiles go under `root`.
    pub fn connect(url: &str, token: &str, root: &Path) -> Result<Self> {
        Ok(Self {
            api: Api::new(url)?,
            url: url.to_owned(),
            token: token.to_owned(),
            root: root.to_owned(),
            _owned: None,
        })
    }

    /// Keeps `dir` (the server's and the profiles' directory) alive as long as the org.
    pub fn keeping(mut self, dir: tempfile::TempDir) -> Self {
        self._owned = Some(dir);
        self
    }

    pub async fn code(&self, name: &str) -> Result<String> {
        let code: EnrollmentCode = self
            .api
            .call(
                Method::POST,
                "/v1/admin/users",
                Some(&CreateUserRequest { name: name.into() }),
                None,
                Some(&self.token),
            )
            .await?;
        Ok(code.code)
    }

    /// An enrollment code for another device of `name`.
    pub async fn device_code(&self, name: &str) -> Result<String> {
        let code: EnrollmentCode = self
            .api
            .call(
                Method::POST,
                &format!("/v1/admin/users/{name}/devices"),
                None::<&()>,
                None,
                Some(&self.token),
            )
            .await?;
        Ok(code.code)
    }

    /// A full client with its own SQLite profile.
    pub async fn client(&self, name: &str) -> Result<Client> {
        self.client_on(name, &self.url).await
    }

    /// A full client of this org that talks to the node at `url` (nodes share one database).
    pub async fn client_on(&self, name: &str, url: &str) -> Result<Client> {
        let code = self.code(name).await?;
        Ok(Client::enroll(&self.root.join(name), url, name, &code).await?)
    }

    /// A member that only needs to be addable: enrolled, its identity in the key directory
    /// (since issue 9 a device is vouched for, so addable, only then), with one key package
    /// on the server.
    pub async fn light_device(&self, name: &str) -> Result<LightDevice> {
        self.light_device_with(name, 1).await
    }

    /// [`Org::light_device`] with `key_packages` key packages on the server.
    pub async fn light_device_with(&self, name: &str, key_packages: usize) -> Result<LightDevice> {
        let code = self.code(name).await?;
        let key = DeviceKey::generate();
        let request = EnrollRequest {
            user: name.into(),
            code,
            signature_key: key.public_key().to_vec().into(),
        };
        let enrolled: EnrollResponse = self
            .api
            .call(Method::POST, "/v1/enroll", Some(&request), None, None)
            .await?;
        let device = LightDevice {
            device_id: enrolled.device_id.clone(),
            key,
        };
        // The user's first device: approved at enrollment, it makes the user's identity.
        let identity = IdentityKey::generate();
        let change = identity.identity_change(
            name,
            DeviceRef {
                device_id: enrolled.device_id.clone(),
                signature_key: device.key.public_key(),
            },
            &device.key,
        );
        let _: DirectoryAppended = self
            .api
            .call(
                Method::POST,
                "/v1/directory/changes",
                Some(&PostDirectoryChange {
                    change: serde_json::to_value(change)?,
                }),
                Some(&device.signer()),
                None,
            )
            .await?;
        let org = OrgIdentityProvider::from_bytes(&enrolled.org_key)?;
        let cert = DeviceCertificate::verify(&enrolled.credential, org.org_key())?;
        let mls = device_client(
            &cert,
            &device.key,
            org,
            InMemoryGroupStateStorage::default(),
            InMemoryKeyPackageStorage::default(),
        );
        let key_packages = (0..key_packages)
            .map(|_| {
                let kp = mls
                    .generate_key_package_message(ExtensionList::new(), ExtensionList::new(), None)
                    .map_err(mls_error)?;
                Ok(kp.to_bytes().map_err(mls_error)?.into())
            })
            .collect::<Result<_>>()?;
        let upload = UploadKeyPackages {
            key_packages,
            last_resort: None,
        };
        let _: () = self
            .api
            .call(
                Method::POST,
                "/v1/key-packages",
                Some(&upload),
                Some(&device.signer()),
                None,
            )
            .await?;
        Ok(device)
    }
}

impl LightDevice {
    /// Opens this device's signed wake-up WebSocket on the server at `http_url`, from
    /// `source` when given (several 127.0.0.x sources get past the ephemeral-port limit).
    /// `timestamp` signs it: `Api::timestamp` of a client that has talked to this server
    /// (never before the server's start).
    pub async fn connect_ws(
        &self,
        http_url: &str,
        timestamp: i64,
        source: Option<std::net::IpAddr>,
    ) -> Result<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    > {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let ws_url = format!("{}/v1/ws", http_url.replacen("http", "ws", 1));
        let mut request = ws_url.as_str().into_client_request()?;
        for (name, value) in self.signer().headers_at("GET", "/v1/ws", b"", timestamp) {
            let value = value
                .parse()
                .map_err(|_| Error::Invalid(format!("unusable {name} header")))?;
            request.headers_mut().insert(name, value);
        }
        let Some(source) = source else {
            return Ok(tokio_tungstenite::connect_async(request).await?.0);
        };
        let authority = http_url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default();
        let server: std::net::SocketAddr = authority
            .parse()
            .map_err(|_| Error::Invalid(format!("{http_url} is not an http://IP:PORT address")))?;
        let socket = match source {
            std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.bind(std::net::SocketAddr::new(source, 0))?;
        let stream = socket.connect(server).await?;
        let (socket, _) = tokio_tungstenite::client_async(
            request,
            tokio_tungstenite::MaybeTlsStream::Plain(stream),
        )
        .await?;
        Ok(socket)
    }
}
