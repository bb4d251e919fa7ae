//! TLS client settings shared by the network sinks (and the crypto provider the webhook
//! source's server uses too): a custom CA, an optional client
//! certificate, all through rustls with the one crypto provider tripline installs at start-up.

use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// `tls:` of a sink.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA certificates that sign the server's certificate. Default: the
    /// Mozilla roots bundled with tripline.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Skip verification of the server's certificate (testing only; logged as a warning).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Installs rustls's `ring` provider as the process default. Called once at start-up, before
/// any TLS client or server is built; later calls are harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Why TLS client settings could not be used; each names the key it concerns.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key} {}: {source}", path.display())]
    Read {
        key: &'static str,
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{key} {}: no PEM certificate in it", path.display())]
    NoCertificate { key: &'static str, path: PathBuf },
    #[error("{key} {}: {source}", path.display())]
    Rejected {
        key: &'static str,
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("tls: `cert` and `key` go together")]
    CertWithoutKey,
    #[error("tls.cert/tls.key: {0}")]
    ClientAuth(rustls::Error),
}

impl TlsConfig {
    /// Problems found without reading the files, each `key: message` relative to `tls`.
    pub fn validate(&self) -> Vec<String> {
        match (&self.cert, &self.key) {
            (Some(_), None) | (None, Some(_)) => vec!["`cert` and `key` go together".to_string()],
            _ => Vec::new(),
        }
    }

    /// Checks the settings and reads the files: every problem is one message naming the key.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        install_crypto_provider();
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca {
            Some(ca) => {
                let certs = read_certs(ca, "tls.ca")?;
                for c in certs {
                    roots.add(c).map_err(|source| TlsError::Rejected {
                        key: "tls.ca",
                        path: ca.clone(),
                        source,
                    })?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let mut config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert, "tls.cert")?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Read {
                    key: "tls.key",
                    path: key.clone(),
                    source,
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(TlsError::ClientAuth)?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(TlsError::CertWithoutKey),
        };
        if self.insecure_skip_verify {
            tracing::warn!("tls.insecure_skip_verify: the server's certificate is not verified");
            config
                .dangerous()
                .set_certificate_verifier(Arc::new(NoVerify(
                    rustls::crypto::ring::default_provider(),
                )));
        }
        Ok(config)
    }
}

fn read_certs(
    path: &std::path::Path,
    key: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |source| TlsError::Read {
        key,
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            key,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Accepts any server certificate (only with `insecure_skip_verify`). Signatures are still
/// checked, so the session is encrypted to whoever holds the key, just not authenticated.
#[derive(Debug)]
struct NoVerify(rustls::crypto::CryptoProvider);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
