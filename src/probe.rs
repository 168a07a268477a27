//! `verify_endpoint`: after a reload, a TLS handshake at `HOST:PORT` must present the leaf that
//! was just installed.
//!
//! Trust is not the question here (the chain was verified before installing), so any chain is
//! accepted; but the handshake signature is still verified against the presented leaf, which
//! proves the server holds the matching private key. Then the leaf is compared byte for byte.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

/// Why the endpoint check failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot connect to {endpoint}: {detail}")]
    Connect { endpoint: String, detail: String },
    #[error("TLS handshake with {endpoint} failed: {detail}")]
    Handshake { endpoint: String, detail: String },
    #[error("{endpoint} still presents another certificate ({detail}) after {waited:?}")]
    OldCertificate {
        endpoint: String,
        detail: String,
        waited: Duration,
    },
}

/// The leaf certificate (DER) a TLS server at `host:port` presents for `sni`.
pub async fn served_leaf(
    host: &str,
    port: u16,
    sni: &str,
    timeout: Duration,
) -> Result<Vec<u8>, Error> {
    let endpoint = format!("{host}:{port}");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Handshake {
            endpoint: endpoint.clone(),
            detail: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyLeaf(provider)))
        .with_no_client_auth();
    let name = ServerName::try_from(sni.to_owned()).map_err(|e| Error::Handshake {
        endpoint: endpoint.clone(),
        detail: format!("invalid server name {sni:?}: {e}"),
    })?;
    let connect = async {
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| Error::Connect {
                endpoint: endpoint.clone(),
                detail: e.to_string(),
            })?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| Error::Handshake {
                endpoint: endpoint.clone(),
                detail: e.to_string(),
            })?;
        tls.get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
            .ok_or_else(|| Error::Handshake {
                endpoint: endpoint.clone(),
                detail: "no certificate presented".into(),
            })
    };
    tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| Error::Connect {
            endpoint: endpoint.clone(),
            detail: format!("no answer within {timeout:?}"),
        })?
}

/// Retries for up to `patience` until the server presents `expected` (servers that reload
/// gracefully switch over within moments).
pub async fn wait_for_leaf(
    host: &str,
    port: u16,
    sni: &str,
    expected: &[u8],
    patience: Duration,
) -> Result<(), Error> {
    let started = Instant::now();
    loop {
        let attempt = served_leaf(host, port, sni, Duration::from_secs(5)).await;
        let err = match attempt {
            Ok(der) if der == expected => return Ok(()),
            Ok(der) => Error::OldCertificate {
                endpoint: format!("{host}:{port}"),
                detail: describe(&der),
                waited: started.elapsed(),
            },
            Err(e) => e,
        };
        if started.elapsed() >= patience {
            return Err(err);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn describe(der: &[u8]) -> String {
    use x509_parser::prelude::FromDer;
    match x509_parser::certificate::X509Certificate::from_der(der) {
        Ok((_, c)) => format!(
            "serial {}",
            c.raw_serial_as_string()
                .replace(':', "")
                .to_ascii_uppercase()
        ),
        Err(_) => "an unparsable certificate".into(),
    }
}

/// Accepts any chain, but checks the handshake signature with the presented leaf's key.
#[derive(Debug)]
struct AnyLeaf(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyLeaf {
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
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
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
