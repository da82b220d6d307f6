//! TLS for the stores that talk to a server (PostgreSQL, MySQL, the callback service): rustls with the
//! aws-lc-rs provider that russh already builds, so gdprd links no system TLS library.
//!
//! Trust follows the `tls` setting of a database store: `verify-full` checks the server's certificate against
//! the platform's root certificates (the CA bundle under `/etc/ssl`, or `SSL_CERT_FILE` / `SSL_CERT_DIR`) plus
//! the store's `ca_file`, and its host name; `prefer` and `require` encrypt without checking who answers, as
//! libpq's `sslmode` does (the handshake's signatures are still checked, so the session key is the server's).

use super::{MappingError, StoreError, Unreachable};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The crypto provider every TLS connection uses, also made the process default so that libraries building
/// their own rustls configuration (the mysql crate) use it too.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| {
        // Err only when a default is already installed, which is then the one rustls uses.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }))
}

/// The platform's root certificates, read once. An empty list (no CA bundle on the machine) makes every
/// `verify-full` connection fail with an unknown issuer unless `ca_file` names the issuer.
pub(crate) fn platform_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!("platform root certificates: {e}");
        }
        found.certs
    })
}

/// The platform's CA bundle file, for libraries that take roots as a path (`SSL_CERT_FILE` when set).
pub(crate) fn platform_bundle() -> Option<PathBuf> {
    openssl_probe::probe().cert_file
}

/// The certificates of a PEM file named by a store's `ca_file`.
///
/// # Errors
/// [`StoreError::Unavailable`] when the file cannot be read, [`StoreError::Mapping`] when it holds no
/// readable certificate.
pub(crate) fn ca_file_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, StoreError> {
    let pem = std::fs::read(path).map_err(|source| Unreachable::CaFile {
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| MappingError::CaFilePem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(MappingError::CaFileEmpty {
            path: path.to_owned(),
        }
        .into());
    }
    Ok(certs)
}

/// A client configuration that checks the server's certificate chain against the platform's roots and
/// `ca_file`, and its name against the host connected to (`verify-full`).
///
/// # Errors
/// As [`ca_file_certs`]; [`StoreError::Mapping`] when a `ca_file` certificate is not a usable root.
pub(crate) fn verifying(ca_file: Option<&Path>) -> Result<ClientConfig, StoreError> {
    let mut roots = RootCertStore::empty();
    // A platform certificate that webpki cannot use is skipped, as every TLS client does with the bundle.
    roots.add_parsable_certificates(platform_roots().iter().cloned());
    if let Some(path) = ca_file {
        for cert in ca_file_certs(path)? {
            roots.add(cert).map_err(|source| MappingError::CaFileRoot {
                path: path.to_owned(),
                source: Box::new(source),
            })?;
        }
    }
    Ok(builder()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A client configuration that encrypts without checking who answers (`prefer`, `require`).
///
/// # Errors
/// [`StoreError::Unavailable`] when the provider offers no protocol version (not with aws-lc-rs).
pub(crate) fn unverified() -> Result<ClientConfig, StoreError> {
    Ok(builder()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
        .with_no_client_auth())
}

fn builder() -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, StoreError> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Unreachable::Tls(e).into())
}

/// Accepts any certificate, but checks that the handshake is signed by the key in it.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_a_certificate_is_a_mapping_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let err = verifying(Some(&path)).expect_err("no certificate");
        assert!(matches!(err, StoreError::Mapping(_)), "{err}");
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let err = verifying(Some(Path::new("/nonexistent/ca.pem"))).expect_err("missing");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
