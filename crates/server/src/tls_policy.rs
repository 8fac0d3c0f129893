//! etcd's extra TLS flags, on top of [`crate::tls`]:
//!
//! - `--cipher-suites`: Go's names of TLS 1.2 cipher suites (comma-separated), mapped to
//!   rustls's. rustls offers only the ECDHE AEAD suites; a Go name of another suite (CBC,
//!   RC4, 3DES, static RSA) is refused naming it, and so is an unknown name. TLS 1.3
//!   suites are not configurable (as in Go) and stay enabled.
//! - `--client-crl-file` / `--peer-crl-file`: a PEM (or DER) certificate revocation list;
//!   a connecting client or peer whose certificate it revokes is refused.
//! - `--peer-cert-allowed-cn`, `--peer-cert-allowed-hostname`,
//!   `--client-cert-allowed-hostname`: a connecting peer (client) must present a
//!   certificate whose subject common name is that CN, or whose subject alternative
//!   names match that host name (Go's `VerifyHostname`).
//! - `--auto-tls` / `--peer-auto-tls`: with `https://` URLs and no certificate files, a
//!   self-signed certificate for the listen URLs' hosts is generated at start into
//!   `<data-dir>/fixtures/client` (`/peer`) as `cert.pem` / `key.pem` (kept and reused on
//!   restart, as etcd does); a member dialing peers with auto TLS does not verify their
//!   certificates (each member's is self-signed), as etcd.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme, SupportedCipherSuite};

use crate::config::ServeArgs;

/// Go cipher-suite names etcd accepts that rustls does not implement.
const GO_SUITES_NOT_OFFERED: &[&str] = &[
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

/// The ring provider restricted to `--cipher-suites` (all suites when empty).
pub fn provider_with_cipher_suites(cipher_suites: &str) -> Result<Arc<CryptoProvider>, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    let names: Vec<&str> = cipher_suites.split(',').map(str::trim).filter(|name| !name.is_empty()).collect();
    if names.is_empty() {
        return Ok(Arc::new(provider));
    }
    let mut selected: Vec<SupportedCipherSuite> = provider
        .cipher_suites
        .iter()
        .copied()
        .filter(|suite| matches!(suite, SupportedCipherSuite::Tls13(_)))
        .collect();
    for name in names {
        // Go's older names of the ChaCha20 suites lack the hash.
        let canonical = match name {
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            other => other,
        };
        let found = provider.cipher_suites.iter().copied().find(|suite| {
            matches!(suite, SupportedCipherSuite::Tls12(_)) && format!("{:?}", suite.suite()) == canonical
        });
        match found {
            Some(suite) => selected.push(suite),
            None if GO_SUITES_NOT_OFFERED.contains(&name) => {
                return Err(format!(
                    "--cipher-suites: {name} is not supported by raftkv's TLS library (rustls offers only ECDHE suites with AES-GCM or ChaCha20-Poly1305)"
                ))
            }
            None => return Err(format!("--cipher-suites: unknown cipher suite '{name}'")),
        }
    }
    provider.cipher_suites = selected;
    Ok(Arc::new(provider))
}

/// The revocation lists of `--client-crl-file` / `--peer-crl-file` (PEM or DER).
pub fn read_crls(flag: &str, path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let bytes = std::fs::read(path).map_err(|error| format!("{flag} {}: cannot read: {error}", path.display()))?;
    let pem: Result<Vec<_>, _> = CertificateRevocationListDer::pem_slice_iter(&bytes).collect();
    match pem {
        Ok(crls) if !crls.is_empty() => Ok(crls),
        _ if bytes.first() == Some(&0x30) => Ok(vec![CertificateRevocationListDer::from(bytes)]),
        _ => Err(format!("{flag} {}: no certificate revocation list in the file", path.display())),
    }
}

/// The subject common name of a DER certificate, if it has one.
pub fn subject_common_name(certificate: &[u8]) -> Option<String> {
    let (_, certificate, _) = der_element(certificate)?;
    let (_, mut tbs, _) = der_element(certificate)?;
    let (tag, _, rest) = der_element(tbs)?;
    if tag == 0xa0 {
        tbs = rest; // explicit version
    }
    // serial number, signature algorithm, issuer, validity, then the subject.
    for _ in 0..4 {
        tbs = der_element(tbs)?.2;
    }
    let (_, mut subject, _) = der_element(tbs)?;
    let mut common_name = None;
    while !subject.is_empty() {
        let (_, set, rest) = der_element(subject)?;
        subject = rest;
        let (_, attribute, _) = der_element(set)?;
        let (oid_tag, oid, value) = der_element(attribute)?;
        if oid_tag == 0x06 && oid == [0x55, 0x04, 0x03] {
            let (_, text, _) = der_element(value)?;
            common_name = Some(String::from_utf8_lossy(text).into_owned());
        }
    }
    common_name
}

/// One DER element: (tag, contents, the bytes after it).
fn der_element(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *bytes.first()?;
    let first = *bytes.get(1)?;
    let (length, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let length = bytes.get(2..2 + count)?.iter().fold(0usize, |length, byte| (length << 8) | usize::from(*byte));
        (length, 2 + count)
    };
    let end = header.checked_add(length)?;
    Some((tag, bytes.get(header..end)?, bytes.get(end..)?))
}

/// Whether a DER certificate's subject alternative names match `host` (a DNS name,
/// wildcards allowed, or an IP address).
pub fn certificate_matches_host(certificate: &CertificateDer<'_>, host: &str) -> bool {
    let Ok(name) = ServerName::try_from(host.to_string()) else { return false };
    let Ok(end_entity) = webpki::EndEntityCert::try_from(certificate) else { return false };
    end_entity.verify_is_valid_for_subject_name(&name).is_ok()
}

/// A client-certificate verifier that also requires an allowed CN or host name.
#[derive(Debug)]
pub struct AllowedIdentityVerifier {
    /// The chain and revocation checks.
    pub inner: Arc<dyn ClientCertVerifier>,
    /// Required subject common name (empty: any).
    pub allowed_cn: String,
    /// Required subject alternative name (empty: any).
    pub allowed_hostname: String,
    /// The flag names, for the refusal's message.
    pub flags: (String, String),
}

impl ClientCertVerifier for AllowedIdentityVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        if !self.allowed_cn.is_empty() && subject_common_name(end_entity).as_deref() != Some(self.allowed_cn.as_str()) {
            tracing::warn!(flag = %self.flags.0, allowed = %self.allowed_cn, "refused a certificate with another CN");
            return Err(rustls::Error::General(format!("{}: certificate CN is not {}", self.flags.0, self.allowed_cn)));
        }
        if !self.allowed_hostname.is_empty() && !certificate_matches_host(end_entity, &self.allowed_hostname) {
            tracing::warn!(flag = %self.flags.1, allowed = %self.allowed_hostname, "refused a certificate for another host");
            return Err(rustls::Error::General(format!(
                "{}: certificate is not valid for {}",
                self.flags.1, self.allowed_hostname
            )));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, certificate, signature)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, certificate, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts any server certificate (peers with `--peer-auto-tls`, each self-signed),
/// still checking the handshake signatures.
#[derive(Debug)]
pub struct SelfSignedPeers {
    /// Signature algorithms.
    pub provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for SelfSignedPeers {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, certificate, signature, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, certificate, signature, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Generates (or reuses) a self-signed certificate for `urls`' hosts under `directory`;
/// returns the certificate and key paths.
fn self_signed(directory: &Path, urls: &str) -> Result<(PathBuf, PathBuf), String> {
    let cert_path = directory.join("cert.pem");
    let key_path = directory.join("key.pem");
    if cert_path.is_file() && key_path.is_file() {
        return Ok((cert_path, key_path));
    }
    let mut hosts: Vec<String> = crate::config::split_urls(urls)
        .iter()
        .filter_map(|url| crate::config::parse_url(url).ok())
        .filter_map(|address| address.rsplit_once(':').map(|(host, _)| host.trim_matches(['[', ']']).to_string()))
        .collect();
    hosts.sort();
    hosts.dedup();
    let generated = rcgen::generate_simple_self_signed(hosts)
        .map_err(|error| format!("cannot generate a self-signed certificate: {error}"))?;
    std::fs::create_dir_all(directory).map_err(|error| format!("{}: {error}", directory.display()))?;
    let write = |path: &Path, text: String| {
        std::fs::write(path, text).map_err(|error| format!("{}: cannot write: {error}", path.display()))
    };
    write(&key_path, generated.key_pair.serialize_pem())?;
    write(&cert_path, generated.cert.pem())?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed certificate (auto TLS)");
    Ok((cert_path, key_path))
}

/// Applies `--auto-tls` / `--peer-auto-tls`: where the URLs are `https://` and no
/// certificate files are given, fills them in with generated self-signed ones.
pub fn apply_auto_tls(args: &mut ServeArgs) -> Result<(), String> {
    let data_dir = args.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.raftkv", args.name)));
    let client_https =
        crate::config::split_urls(&args.listen_client_urls).iter().any(|url| crate::config::is_https(url));
    if args.auto_tls && client_https && args.cert_file.is_none() && args.key_file.is_none() {
        let (cert, key) = self_signed(&data_dir.join("fixtures").join("client"), &args.listen_client_urls)?;
        args.cert_file = Some(cert);
        args.key_file = Some(key);
    }
    let peer_https = crate::config::split_urls(&args.listen_peer_urls).iter().any(|url| crate::config::is_https(url));
    if args.peer_auto_tls && peer_https && args.peer_cert_file.is_none() && args.peer_key_file.is_none() {
        let (cert, key) = self_signed(&data_dir.join("fixtures").join("peer"), &args.listen_peer_urls)?;
        args.peer_cert_file = Some(cert);
        args.peer_key_file = Some(key);
        if args.peer_client_cert_auth {
            tracing::warn!("--peer-auto-tls: ignoring --peer-client-cert-auth (self-signed peers cannot be verified)");
            args.peer_client_cert_auth = false;
        }
    }
    Ok(())
}

/// Whether this member dials peers with auto TLS (no CA to check their certificates).
pub fn dials_self_signed_peers(args: &ServeArgs) -> bool {
    args.peer_auto_tls && args.peer_trusted_ca_file.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_suites_map_go_names_and_refuse_others() {
        let provider = provider_with_cipher_suites(
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        )
        .expect("known suites");
        let tls12: Vec<String> = provider
            .cipher_suites
            .iter()
            .filter(|suite| matches!(suite, SupportedCipherSuite::Tls12(_)))
            .map(|suite| format!("{:?}", suite.suite()))
            .collect();
        assert_eq!(tls12, ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"]);
        assert!(provider.cipher_suites.iter().any(|suite| matches!(suite, SupportedCipherSuite::Tls13(_))));
        let unsupported = provider_with_cipher_suites("TLS_RSA_WITH_AES_128_CBC_SHA").expect_err("CBC");
        assert!(
            unsupported.contains("--cipher-suites: TLS_RSA_WITH_AES_128_CBC_SHA is not supported"),
            "{unsupported}"
        );
        let unknown = provider_with_cipher_suites("TLS_NOPE").expect_err("unknown");
        assert_eq!(unknown, "--cipher-suites: unknown cipher suite 'TLS_NOPE'");
        assert_eq!(provider_with_cipher_suites("").expect("default").cipher_suites.len(), 9);
    }

    #[test]
    fn reads_common_names_and_host_names() {
        let mut params = rcgen::CertificateParams::new(vec!["member.example".into(), "127.0.0.1".into()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "raftkv");
        params.distinguished_name.push(rcgen::DnType::CommonName, "etcd-peer");
        let key = rcgen::KeyPair::generate().expect("key");
        let certificate = params.self_signed(&key).expect("certificate");
        let der = certificate.der();
        assert_eq!(subject_common_name(der).as_deref(), Some("etcd-peer"));
        assert!(certificate_matches_host(der, "member.example"));
        assert!(certificate_matches_host(der, "127.0.0.1"));
        assert!(!certificate_matches_host(der, "other.example"));
        assert_eq!(subject_common_name(&[0x30, 0x01]), None, "garbage is no certificate");
    }
}
