//! TLS towards the broker: rustls with the system roots or a private CA,
//! optional client certificate, and error messages that say what is wrong.
//! Verification is never disabled.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{CertificateError, ClientConfig, RootCertStore};

/// The TLS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM CA certificates to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain (mutual TLS), with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key_file: Option<PathBuf>,
}

impl TlsFiles {
    /// What we trust, for error messages.
    pub fn trust(&self) -> String {
        match &self.ca_file {
            Some(p) => format!("CA file {}", p.display()),
            None => "the system's trusted CAs".to_owned(),
        }
    }
}

/// Build the rustls client configuration, failing with a message that names
/// the file at fault.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    match &files.ca_file {
        Some(path) => {
            let certs = read_certs(path, "CA file")?;
            for c in certs {
                roots.add(c).with_context(|| {
                    format!("CA file {} holds an invalid certificate", path.display())
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                // Skip the odd broken system certificate, like browsers do.
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                bail!("no trusted CA certificates found on this system; use --ca-file");
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS setup failed")?
        .with_root_certificates(roots);
    let config = match (&files.cert_file, &files.key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert, "client certificate file")?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
                rustls::pki_types::pem::Error::NoItemsFound => anyhow::anyhow!(
                    "no private key (PKCS#8, PKCS#1 or SEC1 PEM) in key file {}",
                    key.display()
                ),
                e => anyhow::anyhow!("cannot read key file {}: {e}", key.display()),
            })?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                anyhow::anyhow!(
                    "client certificate {} and key {} cannot be used together: {e}",
                    cert.display(),
                    key.display()
                )
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => bail!("a client certificate needs its key: add --key-file"),
        (None, Some(_)) => bail!("a client key needs its certificate: add --cert-file"),
    };
    Ok(Arc::new(config))
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    std::fs::metadata(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("cannot read {what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        bail!("no PEM certificates in {what} {}", path.display());
    }
    Ok(certs)
}

/// A one-line explanation of a TLS failure, if `e` holds one.
pub fn explain(e: &(dyn std::error::Error + 'static), host: &str, trust: &str) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(describe(r, host, trust));
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(r) = inner.downcast_ref::<rustls::Error>() {
                    return Some(describe(r, host, trust));
                }
            }
        }
        cur = err.source();
    }
    None
}

fn describe(e: &rustls::Error, host: &str, trust: &str) -> String {
    use rustls::AlertDescription as A;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                format!("TLS: the broker's certificate is not signed by {trust}")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "TLS: the broker's certificate has expired".to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "TLS: the broker's certificate is not valid yet".to_owned()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("TLS: the broker's certificate is not valid for host name '{host}'")
            }
            CertificateError::Revoked => "TLS: the broker's certificate is revoked".to_owned(),
            other => format!("TLS: the broker's certificate is invalid: {other:?}"),
        },
        rustls::Error::AlertReceived(A::CertificateRequired) => {
            "TLS: the broker requires a client certificate (--cert-file/--key-file)".to_owned()
        }
        rustls::Error::AlertReceived(
            A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::AccessDenied,
        ) => "TLS: the broker rejected our client certificate".to_owned(),
        other => format!("TLS: {other}"),
    }
}
