//! TLS settings for `thingsdbs://` and `wss://` targets (rustls with the
//! `ring` provider; no process-wide provider needs installing).
//!
//! Which certificates are trusted:
//!
//! | constructor | trusts |
//! |---|---|
//! | [`TlsOptions::default`], [`TlsOptions::webpki_roots`] | the Mozilla root set compiled in (`webpki-roots`) |
//! | [`TlsOptions::native_roots`] | the platform's store (`rustls-native-certs`; honours `SSL_CERT_FILE` / `SSL_CERT_DIR`) |
//! | [`TlsOptions::with_ca_pem`] | only the certificates in the given PEM: as CAs, and each also as itself when the node presents exactly that certificate (a self-signed one, as `openssl req -x509` makes) |
//! | [`TlsOptions::dangerous_accept_any_certificate`] | anything: for tests only |
//! | [`TlsOptions::from_client_config`] | whatever the given rustls configuration says |
//!
//! The compiled-in Mozilla roots are the default because they behave the
//! same everywhere, including minimal containers without a CA bundle; use
//! [`TlsOptions::native_roots`] to follow the machine's own trust store
//! (for example a company CA installed there).
//!
//! The rustls configuration is built once per `TlsOptions` value (and its
//! clones) and reused by every connection made with it.

use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::error::Error;

#[derive(Clone)]
enum Trust {
    WebPki,
    Native,
    CaPem(Arc<[u8]>),
    AcceptAny,
    Config(Arc<ClientConfig>),
}

/// How to set up TLS: which certificates to trust, and which name to check.
///
/// ```
/// use thingsdb_transport::TlsOptions;
/// let pem = b"-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n";
/// let opts = TlsOptions::with_ca_pem(pem.to_vec()).server_name("db.internal");
/// assert!(format!("{opts:?}").contains("custom CA"));
/// ```
#[derive(Clone)]
pub struct TlsOptions {
    trust: Trust,
    server_name: Option<String>,
    built: Arc<OnceLock<Arc<ClientConfig>>>,
}

impl Default for TlsOptions {
    /// Trusts the compiled-in Mozilla roots ([`TlsOptions::webpki_roots`]).
    fn default() -> Self {
        TlsOptions::webpki_roots()
    }
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let trust = match &self.trust {
            Trust::WebPki => "webpki roots",
            Trust::Native => "platform roots",
            Trust::CaPem(_) => "custom CA",
            Trust::AcceptAny => "DANGEROUS: any certificate",
            Trust::Config(_) => "custom rustls ClientConfig",
        };
        f.debug_struct("TlsOptions")
            .field("trust", &trust)
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsOptions {
    fn new(trust: Trust) -> Self {
        TlsOptions {
            trust,
            server_name: None,
            built: Arc::default(),
        }
    }

    /// Trusts the Mozilla root certificates compiled into the program. The
    /// default.
    pub fn webpki_roots() -> Self {
        TlsOptions::new(Trust::WebPki)
    }

    /// Trusts the platform's certificate store, loaded when the first
    /// connection is made. Connecting fails with [`Error::Tls`] if the store
    /// holds no usable certificate.
    pub fn native_roots() -> Self {
        TlsOptions::new(Trust::Native)
    }

    /// Trusts only the certificate(s) in `pem` (PEM text with one or more
    /// `CERTIFICATE` blocks), for a node with a private or self-signed
    /// certificate: as CAs that sign the node's certificate (checked against
    /// the name, the dates and the chain as usual), and each also pinned as
    /// itself: a node presenting exactly one of these certificates is
    /// trusted, unless the usual check found it names another host. The pin
    /// is what lets a self-signed certificate made by
    /// `openssl req -x509` (which marks it as a CA, so it cannot pass as the
    /// node's own certificate under the usual rules) be used as is.
    /// Handshake signatures are verified either way.
    ///
    /// A PEM without a certificate fails at connect time (or at
    /// [`TlsOptions::client_config`]) with [`Error::Tls`].
    pub fn with_ca_pem(pem: impl Into<Vec<u8>>) -> Self {
        TlsOptions::new(Trust::CaPem(Arc::from(pem.into())))
    }

    /// Accepts any certificate, for any name, without checking it: anyone
    /// between client and node can read and change the traffic. For tests
    /// against throw-away certificates only. (Handshake signatures are still
    /// checked, so the session is encrypted to whoever holds the key.)
    pub fn dangerous_accept_any_certificate() -> Self {
        TlsOptions::new(Trust::AcceptAny)
    }

    /// Uses a rustls configuration built by the caller (client certificates,
    /// other providers, ALPN, ...). The server name override still applies.
    pub fn from_client_config(config: Arc<ClientConfig>) -> Self {
        TlsOptions::new(Trust::Config(config))
    }

    /// Checks the certificate against `name` (and sends it as SNI) instead
    /// of the target's host, for a node reached by an address its
    /// certificate does not name.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// The server name override, if one was set.
    pub fn server_name_override(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// Whether certificates are not checked at all.
    pub fn is_dangerous(&self) -> bool {
        matches!(self.trust, Trust::AcceptAny)
    }

    /// The rustls configuration these options give, built on first use and
    /// shared by clones. Call it early to find a bad CA PEM or an empty
    /// platform store before connecting.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, Error> {
        if let Some(c) = self.built.get() {
            return Ok(c.clone());
        }
        let c = self.build()?;
        // Another thread may have won the race; both results are equal.
        Ok(self.built.get_or_init(|| c).clone())
    }

    /// The name to verify for a connection to `host`.
    pub(crate) fn name_for(&self, host: &str) -> Result<ServerName<'static>, Error> {
        let name = self.server_name.as_deref().unwrap_or(host);
        ServerName::try_from(name.to_owned())
            .map_err(|e| Error::tls(format!("invalid server name {name:?}"), e))
    }

    fn build(&self) -> Result<Arc<ClientConfig>, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::tls("TLS configuration", e))?;
        let config = match &self.trust {
            Trust::Config(c) => return Ok(c.clone()),
            Trust::AcceptAny => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
                .with_no_client_auth(),
            Trust::WebPki => {
                let roots = RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            Trust::Native => builder
                .with_root_certificates(native_store()?)
                .with_no_client_auth(),
            Trust::CaPem(pem) => {
                let (store, pinned) = pem_store(pem)?;
                let chain =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                        .build()
                        .map_err(|e| Error::tls("TLS verifier", e))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(CaOrPinned { chain, pinned }))
                    .with_no_client_auth()
            }
        };
        Ok(Arc::new(config))
    }
}

fn native_store() -> Result<RootCertStore, Error> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        return Err(Error::tls_msg(format!(
            "no usable certificate in the platform's trust store{why}"
        )));
    }
    Ok(store)
}

/// The certificates of a PEM, as a root store and as a list to pin.
fn pem_store(pem: &[u8]) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), Error> {
    let mut store = RootCertStore::empty();
    let mut pinned = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| Error::tls("reading the CA PEM", e))?;
        store
            .add(cert.clone())
            .map_err(|e| Error::tls("CA certificate refused", e))?;
        pinned.push(cert);
    }
    if store.is_empty() {
        return Err(Error::tls_msg("the CA PEM holds no \"CERTIFICATE\" block"));
    }
    Ok((store, pinned))
}

/// Whether the chain check failed on the server name.
fn is_name_error(e: &rustls::Error) -> bool {
    use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
    matches!(
        e,
        rustls::Error::InvalidCertificate(NotValidForName | NotValidForNameContext { .. })
    )
}

/// The verifier behind [`TlsOptions::with_ca_pem`]: the usual chain check
/// against the given certificates, or else, unless the name was wrong, an
/// exact match with one of them.
#[derive(Debug)]
struct CaOrPinned {
    chain: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for CaOrPinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.chain.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(v) => Ok(v),
            // A certificate for another name is refused even when pinned.
            Err(e) if is_name_error(&e) => Err(e),
            Err(_)
                if self
                    .pinned
                    .iter()
                    .any(|p| p.as_ref() == end_entity.as_ref()) =>
            {
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// The verifier behind [`TlsOptions::dangerous_accept_any_certificate`].
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_build() {
        assert!(TlsOptions::default().client_config().is_ok());
        assert!(TlsOptions::dangerous_accept_any_certificate()
            .client_config()
            .is_ok());
        let o = TlsOptions::webpki_roots();
        let a = o.client_config().unwrap();
        let b = o.clone().client_config().unwrap();
        assert!(Arc::ptr_eq(&a, &b), "built once, shared by clones");
    }

    #[test]
    fn bad_pem_is_a_tls_error() {
        let e = TlsOptions::with_ca_pem(b"not a pem".to_vec())
            .client_config()
            .unwrap_err();
        assert!(e.to_string().contains("no \"CERTIFICATE\" block"), "{e}");
    }

    #[test]
    fn server_names() {
        let o = TlsOptions::default();
        assert!(o.name_for("127.0.0.1").is_ok());
        assert!(o.name_for("::1").is_ok());
        assert!(o.name_for("example.com").is_ok());
        assert!(o.name_for("bad name").is_err());
        let o = o.server_name("other");
        assert_eq!(
            o.name_for("127.0.0.1").unwrap(),
            ServerName::try_from("other").unwrap()
        );
    }
}
