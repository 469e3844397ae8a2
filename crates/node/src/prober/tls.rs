//! TLS for `httpGet` probes and hooks with `scheme: HTTPS`.
//!
//! The kubelet probes HTTPS endpoints with `InsecureSkipVerify`: a pod's certificate is usually for
//! its Service name, not the pod IP the probe dials, and may be self-signed, so the chain and the
//! name are not checked. The handshake itself still is: the server's signatures over the handshake
//! are verified with the provider's algorithms, so a peer that does not hold the key of the
//! certificate it shows cannot complete it. rustls with the `ring` provider (the one kube already
//! compiles); the client config is built once.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Accepts any certificate (chain, name and validity are not checked, as the kubelet's
/// `InsecureSkipVerify`) but verifies the handshake signatures.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn build_config() -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = AnyCertificate { algorithms: provider.signature_verification_algorithms };
    let mut config = ClientConfig::builder_with_provider(Arc::<CryptoProvider>::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client configuration: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    // Probes speak HTTP/1.1 (the kubelet's probe transport does not use HTTP/2).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn config() -> Result<Arc<ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG.get_or_init(build_config).clone()
}

/// Runs the TLS handshake over `tcp` to `host`. The target is an IP address (the pod IP or the
/// probe's `host`), so no SNI is sent, as a Go client dialling an IP does not send one either.
pub(super) async fn connect(tcp: TcpStream, host: IpAddr) -> Result<TlsStream<TcpStream>, String> {
    let connector = TlsConnector::from(config()?);
    connector
        .connect(ServerName::IpAddress(host.into()), tcp)
        .await
        .map_err(|e| format!("TLS handshake failed: {e}"))
}
