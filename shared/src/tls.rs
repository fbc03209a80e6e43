//! Which certificate authorities safeship's HTTPS clients trust.
//!
//! The SDK's and reqwest's defaults parse the system's whole CA bundle (some 150 PEM
//! certificates) when the first client is built: most of a cold start's own time. By default
//! (`SAFESHIP_TLS_ROOTS=bundled`) AWS endpoints are trusted through the five roots they chain to
//! (Amazon Trust Services, and the Starfield root that cross-signs them), and other HTTPS (Slack,
//! the services under smoke test) through Mozilla's roots compiled into the binary
//! (`webpki-roots`): nothing to read or parse at start. `SAFESHIP_TLS_ROOTS=system` trusts the
//! system's bundle instead, e.g. behind a TLS-inspecting proxy or for a private CA.

use std::sync::{Arc, OnceLock};

use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_types::config_bag::ConfigBag;

use crate::env::Env;
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

/// The SDK's own HTTPS client (rustls on aws-lc), trusting the Amazon roots (`Bundled`) or the
/// system's bundle (`System`), shared by every service client of a cold start.
pub fn aws_https_client(roots: TlsRoots) -> SharedHttpClient {
    let builder =
        aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::AwsLc));
    let client = match roots {
        TlsRoots::Bundled => {
            let mut store = TrustStore::empty().with_native_roots(false);
            for pem in AMAZON_ROOTS {
                store.add_pem_certificate(pem.as_bytes());
            }
            let context = TlsContext::builder()
                .with_trust_store(store)
                .build()
                .expect("the embedded Amazon roots are valid certificates");
            builder.tls_context(context).build_https()
        }
        TlsRoots::System => builder.build_https(),
    };
    SharedHttpClient::new(ValidatedOnce {
        inner: client,
        validated: OnceLock::new(),
    })
}

/// An HTTP client whose base-config validation runs once, however many service clients share it.
///
/// The SDK validates a service client's HTTP client by building a throw-away TLS connector (so
/// the roots load at start rather than on the first request): once per service client, though
/// all of a cold start's clients share this HTTP client and would build the same connector.
/// By callgrind that was 1.5 M of a cold start's 7.8 M instructions for six clients; validating
/// once is the same check for a sixth of it.
#[derive(Debug)]
struct ValidatedOnce {
    inner: SharedHttpClient,
    /// The first validation's outcome (an error kept as its message).
    validated: OnceLock<std::result::Result<(), String>>,
}

impl HttpClient for ValidatedOnce {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.inner.http_connector(settings, components)
    }

    fn validate_base_client_config(
        &self,
        components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        self.validated
            .get_or_init(|| {
                self.inner
                    .validate_base_client_config(components, cfg)
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(Into::into)
    }

    fn validate_final_config(
        &self,
        components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        self.inner.validate_final_config(components, cfg)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.inner.connector_metadata()
    }
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

/// An HTTPS client for what is not AWS (Slack, the services under smoke test), trusting the roots
/// `SAFESHIP_TLS_ROOTS` chooses. Callers bound their own time per request, so only the connect
/// timeout is set here.
pub fn web_client(env: &Env, user_agent: &str) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(user_agent)
        .connect_timeout(std::time::Duration::from_secs(3));
    if let Some(tls) = web_tls_config(env)? {
        builder = builder.tls_backend_preconfigured(tls);
    }
    builder
        .build()
        .map_err(|e| Error::config(TLS_ROOTS_VAR, format!("building the HTTPS client: {e}")))
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
        let _client = aws_https_client(TlsRoots::Bundled);
    }
}
