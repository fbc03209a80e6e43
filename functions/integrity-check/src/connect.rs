//! Connecting to the database: credentials from an RDS secret or an IAM token, TLS by `sslmode`.
//! The password is held as a secret from the moment it is read and never logged.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use safeship::policy::{DbConnection, SslMode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::Error;

const DEFAULT_PORT: u16 = 5432;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and as whom to connect. `Debug` shows no password.
pub struct Target {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    password: SecretString,
    tls: MakeRustlsConnect,
    sslmode: SslMode,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("sslmode", &self.sslmode)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// `host:port/dbname` for messages.
    pub fn describe(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.dbname)
    }

    /// Opens one connection with `statement_timeout` set from the start, so no query of ours can
    /// run unbounded; the connection's driver runs on its own task.
    pub async fn connect(
        &self,
        database: &str,
        statement_timeout: Duration,
    ) -> Result<tokio_postgres::Client, Error> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .dbname(&self.dbname)
            .user(&self.user)
            .password(self.password.expose_secret())
            .application_name("safeship-integrity-check")
            .connect_timeout(CONNECT_TIMEOUT)
            .options(format!(
                "-c statement_timeout={}",
                statement_timeout.as_millis()
            ))
            .ssl_mode(match self.sslmode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Require | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
            });
        // A server refusing for a moment (too many clients, starting up, shutting down, an
        // internal error) or a connection dropped at its start is asked again, twice: the night's
        // run is not lost to a blip. A refused password or a server that does not answer is not.
        let mut attempt = 1;
        let (client, connection) = loop {
            match config.connect(self.tls.clone()).await {
                Ok(connected) => break connected,
                Err(e) if attempt < CONNECT_ATTEMPTS && transient(&e) => {
                    tracing::warn!(database, attempt, error = %describe(&e), "connecting: asking again");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    attempt += 1;
                }
                Err(e) => {
                    let tries = if attempt > 1 {
                        format!(" (attempt {attempt} of {CONNECT_ATTEMPTS})")
                    } else {
                        String::new()
                    };
                    return Err(Error::database(
                        "connecting",
                        database,
                        format!("{}: {}{tries}", self.describe(), describe(&e)),
                    ));
                }
            }
        };
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %describe(&e), "database connection ended");
            }
        });
        Ok(client)
    }
}

/// Resolves the connection: host, port and database name from the policy, else from the secret;
/// the password from the secret or a fresh IAM authentication token.
pub async fn target(
    database: &str,
    conn: &DbConnection,
    default_ca_file: Option<&Path>,
    secrets: &aws_sdk_secretsmanager::Client,
    sdk: &SdkConfig,
) -> Result<Target, Error> {
    let tls = tls(
        database,
        conn.sslmode,
        conn.ca_file.as_deref().map(Path::new).or(default_ca_file),
    )?;
    if let Some(arn) = &conn.secret_arn {
        let secret = read_secret(secrets, arn).await?;
        let host = conn.host.clone().or(secret.host).ok_or_else(|| {
            Error::database(
                "resolving the host",
                database,
                format!("neither the policy's connection.host nor the secret {arn} names a host"),
            )
        })?;
        Ok(Target {
            host,
            port: conn.port.or(secret.port).unwrap_or(DEFAULT_PORT),
            dbname: conn
                .dbname
                .clone()
                .or(secret.dbname)
                .unwrap_or_else(|| "postgres".into()),
            user: secret.username,
            password: secret.password,
            tls,
            sslmode: conn.sslmode,
        })
    } else if let Some(user) = &conn.iam_user {
        // The policy guarantees a host when IAM authentication is used.
        let host = conn.host.clone().unwrap_or_default();
        let port = conn.port.unwrap_or(DEFAULT_PORT);
        let password = iam_token(sdk, &host, port, user).await.map_err(|e| {
            Error::database(
                "generating an IAM authentication token",
                database,
                format!("for {user}@{host}:{port}: {e}"),
            )
        })?;
        Ok(Target {
            host,
            port,
            dbname: conn.dbname.clone().unwrap_or_else(|| "postgres".into()),
            user: user.clone(),
            password,
            tls,
            sslmode: conn.sslmode,
        })
    } else {
        Err(Error::database(
            "resolving credentials",
            database,
            "the policy names neither secret-arn nor iam-user",
        ))
    }
}

/// An RDS database secret: `username` and `password`, and for secrets RDS did not manage itself
/// also `host`, `port` (a number or a string) and `dbname`.
struct RdsSecret {
    username: String,
    password: SecretString,
    host: Option<String>,
    port: Option<u16>,
    dbname: Option<String>,
}

fn parse_secret(arn: &str, text: &str) -> Result<RdsSecret, Error> {
    let problem = |p: &str| {
        Error::Safeship(safeship::Error::unexpected(
            "secretsmanager:GetSecretValue",
            arn,
            format!("the secret is not an RDS database secret: {p}"),
        ))
    };
    // Never echo the secret's text in an error: only which field is wrong.
    let value: Value = serde_json::from_str(text).map_err(|_| problem("not JSON"))?;
    let string = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    let port = match value.get("port") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| problem("port is not a port number"))?,
        ),
        Some(Value::String(s)) => Some(
            s.parse()
                .map_err(|_| problem("port is not a port number"))?,
        ),
        Some(_) => return Err(problem("port is not a port number")),
    };
    Ok(RdsSecret {
        username: string("username").ok_or_else(|| problem("no username"))?,
        password: SecretString::from(string("password").ok_or_else(|| problem("no password"))?),
        host: string("host"),
        port,
        dbname: string("dbname"),
    })
}

async fn read_secret(
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
) -> Result<RdsSecret, Error> {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| safeship::Error::aws("secretsmanager:GetSecretValue", arn, e))?;
    let text = out.secret_string.ok_or_else(|| {
        safeship::Error::unexpected(
            "secretsmanager:GetSecretValue",
            arn,
            "the secret holds no SecretString",
        )
    })?;
    parse_secret(arn, &text)
}

/// A signed IAM authentication token (valid 15 minutes), used as the password.
pub async fn iam_token(
    sdk: &SdkConfig,
    host: &str,
    port: u16,
    user: &str,
) -> Result<SecretString, String> {
    let config = aws_sdk_rds::auth_token::Config::builder()
        .hostname(host)
        .port(u64::from(port))
        .username(user)
        .build()
        .map_err(|e| e.to_string())?;
    let token = aws_sdk_rds::auth_token::AuthTokenGenerator::new(config)
        .auth_token(sdk)
        .await
        .map_err(|e| e.to_string())?;
    Ok(SecretString::from(token.as_str().to_owned()))
}

/// The TLS connector for `mode`. `require` encrypts without checking the certificate (as libpq
/// does); `verify-full` trusts only the CA bundle's certificates and checks the host name.
pub fn tls(
    database: &str,
    mode: SslMode,
    ca_file: Option<&Path>,
) -> Result<MakeRustlsConnect, Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls_error = |e: rustls::Error| Error::database("setting up TLS", database, e.to_string());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?;
    let config = match mode {
        // Never used: the connection does not ask for TLS.
        SslMode::Disable => builder
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth(),
        SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        SslMode::VerifyFull => {
            let path = ca_file.ok_or_else(|| {
                Error::database(
                    "setting up TLS",
                    database,
                    "sslmode verify-full needs the CA bundle: set connection.ca-file or SAFESHIP_DB_CA_FILE",
                )
            })?;
            builder
                .with_root_certificates(roots(database, path)?)
                .with_no_client_auth()
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

fn roots(database: &str, path: &Path) -> Result<RootCertStore, Error> {
    let problem = |p: String| {
        Error::database(
            "reading the CA bundle",
            database,
            format!("{}: {p}", path.display()),
        )
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| problem(e.to_string()))? {
        let cert = cert.map_err(|e| problem(e.to_string()))?;
        roots.add(cert).map_err(|e| problem(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(problem("holds no certificate".into()));
    }
    Ok(roots)
}

/// `sslmode=require`: the channel is encrypted and the handshake's signatures are checked, but
/// the certificate is not (libpq's meaning of `require`).
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

/// A PostgreSQL error as people read it: the server's severity, code and message, or the chain
/// of causes for I/O and TLS errors (`tokio_postgres::Error`'s own text says only "db error").
/// How often a connection is tried when the server refuses it for a moment.
const CONNECT_ATTEMPTS: u32 = 3;

/// A refusal or a drop that a second try may get past: SQLSTATE classes 08 (connection
/// exception), 53 (insufficient resources: too many clients), 57 (operator intervention:
/// starting up, shutting down) and XX (internal error), or a connection closed or reset before
/// the server answered. Never an authentication failure (28), nor a timeout.
fn transient(e: &tokio_postgres::Error) -> bool {
    if let Some(db) = e.as_db_error() {
        return ["08", "53", "57", "XX"]
            .iter()
            .any(|class| db.code().code().starts_with(class));
    }
    if e.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::BrokenPipe
            );
        }
        source = cause.source();
    }
    false
}

pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rds_secrets_parse_with_numeric_or_string_ports_and_never_echo_the_password() {
        let s = parse_secret(
            "arn:s",
            r#"{"engine":"postgres","host":"db.example","port":5432,"username":"u","password":"p@ss","dbname":"app"}"#,
        )
        .unwrap();
        assert_eq!(
            (s.host.as_deref(), s.port, s.dbname.as_deref()),
            (Some("db.example"), Some(5432), Some("app"))
        );
        assert_eq!(s.password.expose_secret(), "p@ss");
        let managed =
            parse_secret("arn:s", r#"{"username":"u","password":"p","port":"6432"}"#).unwrap();
        assert_eq!((managed.host, managed.port), (None, Some(6432)));

        let err = parse_secret(
            "arn:s",
            r#"{"username":"u","password":"hunter2","port":"x"}"#,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("port is not a port number"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = parse_secret("arn:s", "hunter2").err().unwrap().to_string();
        assert!(
            err.contains("not JSON") && !err.contains("hunter2"),
            "{err}"
        );
        let err = parse_secret("arn:s", r#"{"password":"p"}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("no username"), "{err}");
    }

    #[test]
    fn verify_full_without_a_ca_bundle_is_refused_by_name() {
        let err = tls("checkout-db", SslMode::VerifyFull, None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("SAFESHIP_DB_CA_FILE"), "{err}");
        let dir = std::env::temp_dir().join(format!("safeship-empty-{}.pem", std::process::id()));
        std::fs::write(&dir, "not a certificate\n").unwrap();
        let err = tls("checkout-db", SslMode::VerifyFull, Some(&dir))
            .err()
            .unwrap()
            .to_string();
        std::fs::remove_file(&dir).ok();
        assert!(err.contains("holds no certificate"), "{err}");
    }

    #[tokio::test]
    async fn iam_tokens_are_signed_for_the_host_port_and_user() {
        let sdk = safeship::aws::sdk_config_loader()
            .region(aws_config::Region::new("eu-west-1"))
            .credentials_provider(aws_sdk_rds::config::Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            ))
            .load()
            .await;
        let token = iam_token(
            &sdk,
            "db.example.eu-west-1.rds.amazonaws.com",
            5432,
            "reader",
        )
        .await
        .unwrap();
        let token = token.expose_secret();
        assert!(
            token.starts_with(
                "db.example.eu-west-1.rds.amazonaws.com:5432/?Action=connect&DBUser=reader"
            ),
            "{token}"
        );
        assert!(token.contains("X-Amz-Signature="), "{token}");
        assert!(
            token.contains("eu-west-1%2Frds-db%2Faws4_request"),
            "{token}"
        );
    }
}
