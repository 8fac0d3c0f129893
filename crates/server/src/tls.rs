//! TLS on client and peer URLs, with rustls (ring as the crypto provider) and etcd's flags.
//!
//! - Client side (`https://` in `--listen-client-urls`): the server presents `--cert-file`
//!   / `--key-file`; with `--client-cert-auth` every client must present a certificate
//!   signed by `--trusted-ca-file` (without it, a certificate is checked if one is sent).
//! - Peer side (`https://` peer URLs): each member presents `--peer-cert-file` /
//!   `--peer-key-file` both when it accepts and when it dials, and checks the other side
//!   against `--peer-trusted-ca-file`; with `--peer-client-cert-auth` an accepting member
//!   refuses a dialing peer without a certificate signed by that CA.
//!
//! Certificates and keys are re-read when their files change (checked at each
//! handshake), so they can be renewed without a restart; CA files are read at startup.
//! A replacement that cannot be read or does not match is logged and the previous
//! certificate is kept.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::config::ServeArgs;

/// ALPN protocol of gRPC (HTTP/2), offered on client URLs.
pub const ALPN_HTTP2: &[u8] = b"h2";

/// The TLS flags of one side (client or peer).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// `""` for the client flags, `"peer-"` for the peer flags (used in error messages).
    pub flag_prefix: &'static str,
    /// Certificate chain (PEM).
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM) of the certificate.
    pub key_file: Option<PathBuf>,
    /// CA certificates (PEM) the other side's certificate must be signed by.
    pub trusted_ca_file: Option<PathBuf>,
    /// Whether the accepting side requires a certificate from the dialing side.
    pub client_cert_auth: bool,
    /// Revocation list checked against the dialing side's certificate (`--[peer-]crl-file`).
    pub crl_file: Option<PathBuf>,
    /// Required CN of the dialing side's certificate (`--peer-cert-allowed-cn`).
    pub allowed_cn: String,
    /// Required host name of the dialing side's certificate (`--[peer-|client-]cert-allowed-hostname`).
    pub allowed_hostname: String,
    /// `--cipher-suites` (Go names; empty: the library's defaults).
    pub cipher_suites: String,
    /// Dial without verifying the other side's certificate (`--peer-auto-tls`).
    pub accept_self_signed: bool,
}

impl TlsFiles {
    /// `--cert-file`, `--key-file`, `--trusted-ca-file`, `--client-cert-auth`.
    pub fn client(args: &ServeArgs) -> TlsFiles {
        TlsFiles {
            flag_prefix: "",
            cert_file: args.cert_file.clone(),
            key_file: args.key_file.clone(),
            trusted_ca_file: args.trusted_ca_file.clone(),
            client_cert_auth: args.client_cert_auth,
            crl_file: args.client_crl_file.clone(),
            allowed_cn: String::new(),
            allowed_hostname: args.client_cert_allowed_hostname.clone(),
            cipher_suites: args.cipher_suites.clone(),
            accept_self_signed: false,
        }
    }

    /// `--peer-cert-file`, `--peer-key-file`, `--peer-trusted-ca-file`, `--peer-client-cert-auth`.
    pub fn peer(args: &ServeArgs) -> TlsFiles {
        TlsFiles {
            flag_prefix: "peer-",
            cert_file: args.peer_cert_file.clone(),
            key_file: args.peer_key_file.clone(),
            trusted_ca_file: args.peer_trusted_ca_file.clone(),
            client_cert_auth: args.peer_client_cert_auth,
            crl_file: args.peer_crl_file.clone(),
            allowed_cn: args.peer_cert_allowed_cn.clone(),
            allowed_hostname: args.peer_cert_allowed_hostname.clone(),
            cipher_suites: args.cipher_suites.clone(),
            accept_self_signed: crate::tls_policy::dials_self_signed_peers(args),
        }
    }

    fn flag(&self, name: &str) -> String {
        format!("--{}{name}", self.flag_prefix)
    }

    /// The certificate and key flags, both required.
    fn cert_and_key(&self) -> Result<(&Path, &Path), String> {
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Ok((cert, key)),
            _ => Err(format!(
                "https:// {}URLs need both {} and {}",
                if self.flag_prefix.is_empty() { "client " } else { "peer " },
                self.flag("cert-file"),
                self.flag("key-file")
            )),
        }
    }
}

/// The crypto provider of every TLS configuration here (explicit, so the build does not
/// depend on which providers other crates enable).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_file(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|error| format!("{flag} {}: cannot read: {error}", path.display()))
}

/// Every PEM certificate of a file (at least one).
fn read_certificates(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read_file(flag, path)?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("{flag} {}: not a PEM certificate file: {error}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{flag} {}: no PEM certificate in the file", path.display()));
    }
    Ok(certificates)
}

/// The CA certificates of a file, as a root store.
fn read_roots(flag: &str, path: &Path) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(flag, path)? {
        roots
            .add(certificate)
            .map_err(|error| format!("{flag} {}: not a usable CA certificate: {error}", path.display()))?;
    }
    Ok(Arc::new(roots))
}

/// A certificate chain and its key, checked to belong together.
fn read_certified_key(files: &TlsFiles) -> Result<Arc<CertifiedKey>, String> {
    let (cert_path, key_path) = files.cert_and_key()?;
    let chain = read_certificates(&files.flag("cert-file"), cert_path)?;
    let key_flag = files.flag("key-file");
    let key_bytes = read_file(&key_flag, key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes)
        .map_err(|error| format!("{key_flag} {}: no PEM private key in the file: {error}", key_path.display()))?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|error| format!("{key_flag} {}: unusable private key: {error}", key_path.display()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|error| {
        format!(
            "{key_flag} {} does not belong to {} {}: {error}",
            key_path.display(),
            files.flag("cert-file"),
            cert_path.display()
        )
    })?;
    Ok(Arc::new(certified))
}

fn modification_times(files: &TlsFiles) -> [Option<SystemTime>; 2] {
    let modified = |path: &Option<PathBuf>| {
        path.as_ref().and_then(|path| std::fs::metadata(path).ok()).and_then(|metadata| metadata.modified().ok())
    };
    [modified(&files.cert_file), modified(&files.key_file)]
}

/// A certificate and key read from files, read again when either file changes.
#[derive(Debug)]
pub struct ReloadingCertificate {
    files: TlsFiles,
    loaded: Mutex<([Option<SystemTime>; 2], Arc<CertifiedKey>)>,
}

impl ReloadingCertificate {
    /// Reads the certificate and key; errors name the flag and file.
    pub fn load(files: &TlsFiles) -> Result<Arc<ReloadingCertificate>, String> {
        let times = modification_times(files);
        let key = read_certified_key(files)?;
        Ok(Arc::new(ReloadingCertificate { files: files.clone(), loaded: Mutex::new((times, key)) }))
    }

    /// The current certificate: re-read if a file changed since it was read; the previous
    /// one is kept (and the problem logged) when the new files are not usable.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let times = modification_times(&self.files);
        let mut loaded = match self.loaded.lock() {
            Ok(loaded) => loaded,
            Err(poisoned) => poisoned.into_inner(),
        };
        if loaded.0 != times {
            loaded.0 = times;
            match read_certified_key(&self.files) {
                Ok(key) => {
                    tracing::info!(flag = %self.files.flag("cert-file"), "reloaded the TLS certificate");
                    loaded.1 = key;
                }
                Err(error) => tracing::warn!(%error, "keeping the previous TLS certificate"),
            }
        }
        loaded.1.clone()
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for ReloadingCertificate {
    fn resolve(&self, _root_hint_subjects: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The accepting side's configuration: our certificate, and the client check that the
/// flags ask for.
pub fn server_config(files: &TlsFiles, alpn_protocols: &[&[u8]]) -> Result<Arc<ServerConfig>, String> {
    let certificate = ReloadingCertificate::load(files)?;
    let roots = match &files.trusted_ca_file {
        Some(path) => Some(read_roots(&files.flag("trusted-ca-file"), path)?),
        None if files.client_cert_auth => {
            return Err(format!("{} needs {}", files.flag("client-cert-auth"), files.flag("trusted-ca-file")))
        }
        None => None,
    };
    let suites = crate::tls_policy::provider_with_cipher_suites(&files.cipher_suites)?;
    let builder = ServerConfig::builder_with_provider(suites)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS setup: {error}"))?;
    let builder = match roots {
        Some(roots) => builder.with_client_cert_verifier(client_verifier(files, roots)?),
        None if files.crl_file.is_some() || !files.allowed_cn.is_empty() || !files.allowed_hostname.is_empty() => {
            return Err(format!(
                "{}, {} and {} need {}",
                files.flag("crl-file"),
                files.flag("cert-allowed-cn"),
                files.flag("cert-allowed-hostname"),
                files.flag("trusted-ca-file")
            ))
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(certificate);
    config.alpn_protocols = alpn_protocols.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The check of the dialing side's certificate: the trusted CA, the revocation list and
/// the allowed CN / host name of the flags.
fn client_verifier(
    files: &TlsFiles,
    roots: Arc<RootCertStore>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let mut verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
    if let Some(path) = &files.crl_file {
        let crls = crate::tls_policy::read_crls(&files.flag("crl-file"), path)?;
        verifier = verifier.with_crls(crls).allow_unknown_revocation_status();
    }
    let verifier = if files.client_cert_auth { verifier } else { verifier.allow_unauthenticated() };
    let verifier = verifier.build().map_err(|error| format!("{}: {error}", files.flag("trusted-ca-file")))?;
    if files.allowed_cn.is_empty() && files.allowed_hostname.is_empty() {
        return Ok(verifier);
    }
    let hostname_flag = if files.flag_prefix.is_empty() {
        "--client-cert-allowed-hostname".into()
    } else {
        files.flag("cert-allowed-hostname")
    };
    Ok(Arc::new(crate::tls_policy::AllowedIdentityVerifier {
        inner: verifier,
        allowed_cn: files.allowed_cn.clone(),
        allowed_hostname: files.allowed_hostname.clone(),
        flags: (files.flag("cert-allowed-cn"), hostname_flag),
    }))
}

/// The dialing side's configuration: servers are checked against the trusted CA file
/// (required: there is no system root store here), and our certificate is presented
/// when the flags name one.
pub fn client_config(files: &TlsFiles, alpn_protocols: &[&[u8]]) -> Result<Arc<ClientConfig>, String> {
    let ca_flag = files.flag("trusted-ca-file");
    let suites = crate::tls_policy::provider_with_cipher_suites(&files.cipher_suites)?;
    let builder = ClientConfig::builder_with_provider(suites.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS setup: {error}"))?;
    let builder = if files.accept_self_signed && files.trusted_ca_file.is_none() {
        let verifier = Arc::new(crate::tls_policy::SelfSignedPeers { provider: suites });
        builder.dangerous().with_custom_certificate_verifier(verifier)
    } else {
        let path = files.trusted_ca_file.as_ref().ok_or_else(|| format!("https:// URLs to dial need {ca_flag}"))?;
        builder.with_root_certificates(read_roots(&ca_flag, path)?)
    };
    let mut config = if files.cert_file.is_some() || files.key_file.is_some() {
        builder.with_client_cert_resolver(ReloadingCertificate::load(files)?)
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = alpn_protocols.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(Arc::new(config))
}

/// TLS of the peer transport: an acceptor when the peer URLs this member listens on are
/// `https://`, a connector when the peer URLs are `https://` (every member of a cluster
/// uses the same scheme).
#[derive(Clone, Default)]
pub struct PeerTls {
    /// Wraps accepted peer connections.
    pub acceptor: Option<tokio_rustls::TlsAcceptor>,
    /// Wraps dialed peer connections.
    pub connector: Option<tokio_rustls::TlsConnector>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PeerTls")
            .field("accepts_tls", &self.acceptor.is_some())
            .field("dials_tls", &self.connector.is_some())
            .finish()
    }
}

impl PeerTls {
    /// From the flags: TLS where the peer URLs say `https://`; an error when they are
    /// mixed or the files are missing or unusable.
    pub fn from_args(args: &ServeArgs) -> Result<PeerTls, String> {
        let files = TlsFiles::peer(args);
        let listen = crate::config::split_urls(&args.listen_peer_urls);
        let advertised = crate::config::split_urls(&args.initial_advertise_peer_urls);
        let listens_tls = uniform_scheme("--listen-peer-urls", &listen)?;
        let dials_tls = uniform_scheme("--initial-advertise-peer-urls", &advertised)?;
        let acceptor =
            if listens_tls { Some(tokio_rustls::TlsAcceptor::from(server_config(&files, &[])?)) } else { None };
        let connector =
            if dials_tls { Some(tokio_rustls::TlsConnector::from(client_config(&files, &[])?)) } else { None };
        Ok(PeerTls { acceptor, connector })
    }
}

/// Whether every URL is `https://` (false when none is); an error when they are mixed.
pub fn uniform_scheme(flag: &str, urls: &[String]) -> Result<bool, String> {
    let https = urls.iter().filter(|url| crate::config::is_https(url)).count();
    if https != 0 && https != urls.len() {
        return Err(format!("{flag}: mixing http:// and https:// URLs is not supported"));
    }
    Ok(https != 0 && https == urls.len())
}

/// The host part of `host:port` as a TLS server name (a DNS name or an IP address).
pub fn server_name(address: &str) -> std::io::Result<ServerName<'static>> {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{host}: {error}")))
}

/// A TCP connection, plain or inside TLS (either side).
pub enum MaybeTlsStream {
    /// No TLS.
    Plain(TcpStream),
    /// TLS, accepted by this node.
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// TLS, dialed by this node.
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl MaybeTlsStream {
    /// The underlying TCP connection.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTlsStream::Plain(stream) => stream,
            MaybeTlsStream::Server(stream) => stream.get_ref().0,
            MaybeTlsStream::Client(stream) => stream.get_ref().0,
        }
    }

    /// Accepts TLS on `stream` if `acceptor` is set.
    pub async fn accept(
        stream: TcpStream,
        acceptor: Option<&tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<MaybeTlsStream> {
        match acceptor {
            Some(acceptor) => Ok(MaybeTlsStream::Server(Box::new(acceptor.accept(stream).await?))),
            None => Ok(MaybeTlsStream::Plain(stream)),
        }
    }

    /// Starts TLS to `address` (`host:port`, whose host the server certificate must
    /// name) on `stream` if `connector` is set.
    pub async fn connect(
        stream: TcpStream,
        address: &str,
        connector: Option<&tokio_rustls::TlsConnector>,
    ) -> std::io::Result<MaybeTlsStream> {
        match connector {
            Some(connector) => {
                Ok(MaybeTlsStream::Client(Box::new(connector.connect(server_name(address)?, stream).await?)))
            }
            None => Ok(MaybeTlsStream::Plain(stream)),
        }
    }
}

impl AsyncRead for MaybeTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(stream) => Pin::new(stream).poll_read(context, buffer),
            MaybeTlsStream::Server(stream) => Pin::new(stream.as_mut()).poll_read(context, buffer),
            MaybeTlsStream::Client(stream) => Pin::new(stream.as_mut()).poll_read(context, buffer),
        }
    }
}

impl AsyncWrite for MaybeTlsStream {
    fn poll_write(self: Pin<&mut Self>, context: &mut Context<'_>, bytes: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(stream) => Pin::new(stream).poll_write(context, bytes),
            MaybeTlsStream::Server(stream) => Pin::new(stream.as_mut()).poll_write(context, bytes),
            MaybeTlsStream::Client(stream) => Pin::new(stream.as_mut()).poll_write(context, bytes),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(stream) => Pin::new(stream).poll_write_vectored(context, buffers),
            MaybeTlsStream::Server(stream) => Pin::new(stream.as_mut()).poll_write_vectored(context, buffers),
            MaybeTlsStream::Client(stream) => Pin::new(stream.as_mut()).poll_write_vectored(context, buffers),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTlsStream::Plain(stream) => stream.is_write_vectored(),
            MaybeTlsStream::Server(stream) => stream.is_write_vectored(),
            MaybeTlsStream::Client(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(stream) => Pin::new(stream).poll_flush(context),
            MaybeTlsStream::Server(stream) => Pin::new(stream.as_mut()).poll_flush(context),
            MaybeTlsStream::Client(stream) => Pin::new(stream.as_mut()).poll_flush(context),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(stream) => Pin::new(stream).poll_shutdown(context),
            MaybeTlsStream::Server(stream) => Pin::new(stream.as_mut()).poll_shutdown(context),
            MaybeTlsStream::Client(stream) => Pin::new(stream.as_mut()).poll_shutdown(context),
        }
    }
}

/// The acceptor of `https://` client URLs (`None` when every client URL is `http://`);
/// an error names the flag when the files are missing or unusable.
pub fn client_acceptor(args: &ServeArgs) -> Result<Option<tokio_rustls::TlsAcceptor>, String> {
    let urls = crate::config::split_urls(&args.listen_client_urls);
    if !urls.iter().any(|url| crate::config::is_https(url)) {
        return Ok(None);
    }
    // HTTP/1.1 too: the JSON gateway's clients (curl --http1.1, most HTTP libraries).
    let config = server_config(&TlsFiles::client(args), &[ALPN_HTTP2, b"http/1.1"])?;
    Ok(Some(tokio_rustls::TlsAcceptor::from(config)))
}

/// TLS for a member's calls to another member's `https://` client URL (lease keep-alives
/// forwarded to the leader), as etcd does: `--trusted-ca-file` checks the other member,
/// `--cert-file`/`--key-file` identify this one. `None` when the client URLs are plain,
/// or (logged) without a trusted CA file to check the other member with.
pub fn forward_client_tls(args: &ServeArgs) -> Result<Option<tonic::transport::ClientTlsConfig>, String> {
    let urls = crate::config::split_urls(&args.advertise_client_urls);
    if !urls.iter().any(|url| crate::config::is_https(url)) {
        return Ok(None);
    }
    let files = TlsFiles::client(args);
    let Some(ca_file) = &files.trusted_ca_file else {
        tracing::warn!("without --trusted-ca-file, lease keep-alives cannot be forwarded over https:// client URLs");
        return Ok(None);
    };
    let ca = read_file("--trusted-ca-file", ca_file)?;
    let mut config =
        tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(ca));
    if let (Some(cert_file), Some(key_file)) = (&files.cert_file, &files.key_file) {
        let identity = tonic::transport::Identity::from_pem(
            read_file("--cert-file", cert_file)?,
            read_file("--key-file", key_file)?,
        );
        config = config.identity(identity);
    }
    Ok(Some(config))
}
