//! TLS for the control API (rustls with the ring provider): the server's
//! certificate and key, re-read on SIGHUP, a listener that hands axum TLS
//! streams, and the operator commands' client side with a CA file.
//!
//! Invariants: a reload that fails leaves the certificate in force as it
//! was; a handshake that fails or takes longer than [`HANDSHAKE`] costs the
//! API nothing but that connection.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How long a client may take to finish its TLS handshake.
pub const HANDSHAKE: Duration = Duration::from_secs(5);

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: String,
        /// What was wrong.
        what: String,
    },
    /// rustls refused the certificate and key.
    #[error("certificate {cert} with key {key}: {error}")]
    Config {
        /// Certificate file.
        cert: String,
        /// Key file.
        key: String,
        /// Why.
        error: rustls::Error,
    },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_err(path: &Path, what: impl std::fmt::Display) -> TlsError {
    TlsError::Pem { path: path.display().to_string(), what: what.to_string() }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(path, e))?;
    if certs.is_empty() {
        return Err(pem_err(path, "no certificate in it"));
    }
    Ok(certs)
}

/// The server side: certificate and key files and the configuration built
/// from them.
pub struct ServerTls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl ServerTls {
    /// Reads the certificate chain and key.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let config = Self::build(cert, key)?;
        Ok(Self { cert: cert.to_path_buf(), key: key.to_path_buf(), current: RwLock::new(Arc::new(config)) })
    }

    fn build(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
        let chain = read_certs(cert)?;
        let k = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e))?;
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(chain, k))
            .map_err(|error| TlsError::Config {
                cert: cert.display().to_string(),
                key: key.display().to_string(),
                error,
            })
    }

    /// Re-reads the files (SIGHUP); on failure the old ones stay in force.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = Self::build(&self.cert, &self.key)?;
        if let Ok(mut c) = self.current.write() {
            *c = Arc::new(config);
        }
        Ok(())
    }

    fn acceptor(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.current.read().ok().map(|c| tokio_rustls::TlsAcceptor::from(Arc::clone(&c)))
    }
}

/// A TCP listener whose connections are TLS: what `axum::serve` takes.
pub struct TlsListener {
    /// The TCP listener.
    pub tcp: tokio::net::TcpListener,
    /// The certificate in force.
    pub tls: Arc<ServerTls>,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, peer) = match self.tcp.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: wait, as axum does.
                    tracing::warn!("control API: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(acceptor) = self.tls.acceptor() else { continue };
            match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                Ok(Ok(s)) => return (s, peer),
                Ok(Err(e)) => tracing::debug!("control API: TLS handshake with {peer}: {e}"),
                Err(_) => tracing::debug!("control API: TLS handshake with {peer} timed out"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// The client side: trusts the CA certificates of one PEM file and checks
/// the server's name (an IP address for an address-only `--api`).
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl ClientTls {
    /// Trusts the certificates in `ca`; expects the server to be `name`.
    pub fn new(ca: &Path, name: &str) -> Result<Self, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for c in read_certs(ca)? {
            roots.add(c).map_err(|e| pem_err(ca, e))?;
        }
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| pem_err(ca, e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name =
            ServerName::try_from(name.to_string()).map_err(|e| pem_err(ca, format!("server name {name}: {e}")))?;
        Ok(Self { config: Arc::new(config), name })
    }

    /// Wraps a connected socket.
    pub fn wrap(
        &self,
        tcp: std::net::TcpStream,
    ) -> Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>, rustls::Error> {
        let conn = rustls::ClientConnection::new(Arc::clone(&self.config), self.name.clone())?;
        Ok(rustls::StreamOwned::new(conn, tcp))
    }
}
