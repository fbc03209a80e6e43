//! Which certificate authorities safeship's HTTPS clients trust.
//!
//! The SDK's and reqwest's defaults parse the system's whole CA bundle (some 150 PEM
//! certificates) when the first client is built: most of a cold start's own time. By default
//! (`SAFESHIP_TLS_ROOTS=bundled`) AWS endpoints are trusted through the five roots they chain to
//! (Amazon Trust Services, and the Starfield root that cross-signs them), and other HTTPS (Slack,
//! the services under smoke test) through Mozilla's roots compiled into the binary
//! (`webpki-roots`): nothing to read or parse at start. `SAFESHIP_TLS_ROOTS=system` trusts the
//! system's bundle instead, e.g. behind a TLS-inspecting proxy or for a private CA.

use std::sync::Arc;

use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

use crate::config::Env;
use crate::error::{Error, Result};

pub const TLS_ROOTS_VAR: &str = "SAFESHIP_TLS_ROOTS";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsRoots {
    /// Amazon's roots for AWS, Mozilla's (compiled in) for the rest.
    Bundled,
    /// The system's CA bundle, as the libraries do by default.
    System,
}

impl TlsRoots {
    pub fn from_env(env: &Env) -> Result<TlsRoots> {
        match env.optional(TLS_ROOTS_VAR).unwrap_or("bundled") {
            "bundled" => Ok(TlsRoots::Bundled),
            "system" => Ok(TlsRoots::System),
            other => Err(Error::config(
                TLS_ROOTS_VAR,
                format!("expected bundled or system, got {other:?}"),
            )),
        }
    }
}

/// The roots AWS service endpoints chain to, as the system's CA bundle carries them.
const AMAZON_ROOTS: [&str; 5] = [
    include_str!("../certs/Amazon_Root_CA_1.pem"),
    include_str!("../certs/Amazon_Root_CA_2.pem"),
    include_str!("../certs/Amazon_Root_CA_3.pem"),
    include_str!("../certs/Amazon_Root_CA_4.pem"),
    include_str!("../certs/Starfield_Services_Root_Certificate_Authority_-_G2.pem"),
];

/// The SDK's own HTTPS client (rustls on aws-lc), trusting only the Amazon roots.
pub fn aws_https_client() -> SharedHttpClient {
    let mut roots = TrustStore::empty().with_native_roots(false);
    for pem in AMAZON_ROOTS {
        roots.add_pem_certificate(pem.as_bytes());
    }
    let context = TlsContext::builder()
        .with_trust_store(roots)
        .build()
        .expect("the embedded Amazon roots are valid certificates");
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https()
}

/// A rustls configuration for HTTPS beyond AWS with Mozilla's roots, or `None` for the
/// system's (the HTTP library's own default).
pub fn web_tls_config(env: &Env) -> Result<Option<rustls::ClientConfig>> {
    if TlsRoots::from_env(env)? == TlsRoots::System {
        return Ok(None);
    }
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::config(TLS_ROOTS_VAR, format!("TLS set-up: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Some(config))
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::pem::PemObject;

    use super::*;

    #[test]
    fn roots_are_chosen_by_name_and_a_wrong_name_is_named() {
        let env = |v: &str| Env::from_pairs([(TLS_ROOTS_VAR, v)]);
        assert_eq!(
            TlsRoots::from_env(&Env::from_pairs::<&str, &str>([])).unwrap(),
            TlsRoots::Bundled
        );
        assert_eq!(
            TlsRoots::from_env(&env("system")).unwrap(),
            TlsRoots::System
        );
        let err = TlsRoots::from_env(&env("amazon")).unwrap_err().to_string();
        assert!(
            err.contains("SAFESHIP_TLS_ROOTS") && err.contains("\"amazon\""),
            "{err}"
        );
        assert!(web_tls_config(&env("system")).unwrap().is_none());
        assert!(web_tls_config(&env("bundled")).unwrap().is_some());
    }

    #[test]
    fn the_embedded_amazon_roots_parse() {
        for pem in AMAZON_ROOTS {
            let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<std::result::Result<_, _>>()
                .unwrap();
            assert_eq!(certs.len(), 1);
        }
        let _client = aws_https_client();
    }
}
