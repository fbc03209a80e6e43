//! An organisation in moto: member accounts reached through STS `AssumeRole` (moto keeps every
//! resource in the account of the credentials that created it, so two accounts share one
//! server), and a moto of its own that enforces IAM, for a member role that refuses.

use std::process::Stdio;
use std::time::Duration;

use aws_config::sts::AssumeRoleProvider;
use aws_config::{Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;

use crate::emulators::{sdk_config, MEMBER_EXTERNAL_ID};

/// Two member accounts of the tests' organisation.
pub const MEMBER_A: &str = "111111111111";
pub const MEMBER_B: &str = "222222222222";
/// An account no test policy names.
pub const STRANGER: &str = "333333333333";

/// The SDK configuration of `account` in `region`, as the account's own people would set things
/// up there: the member role assumed through moto's STS from `hub`'s credentials.
pub async fn member_sdk(hub: &SdkConfig, account: &str, region: &str) -> SdkConfig {
    let provider =
        AssumeRoleProvider::builder(format!("arn:aws:iam::{account}:role/safeship-member"))
            .configure(hub)
            .session_name("safeship-test-setup")
            .external_id(MEMBER_EXTERNAL_ID)
            .build()
            .await;
    hub.clone()
        .into_builder()
        .region(Region::new(region.to_owned()))
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build()
}

/// A policy document's `accounts` section for the two members: A (`payments-prod`) in eu-west-1
/// and us-east-1, B in eu-west-1.
#[must_use]
pub fn accounts_section() -> String {
    format!(
        "accounts:
  '{MEMBER_A}': {{alias: payments-prod, regions: [eu-west-1, us-east-1]}}
  '{MEMBER_B}': {{regions: [eu-west-1]}}
"
    )
}

/// A moto server of its own that authorises every call after the first `setup_calls` with IAM
/// (`INITIAL_NO_AUTH_ACTION_COUNT`), as AWS does: the setup creates the users, roles and
/// policies, then whatever they do not allow is refused. Stopped when dropped.
pub struct IamMoto {
    child: tokio::process::Child,
    pub endpoint: String,
}

impl IamMoto {
    pub async fn start(setup_calls: u32) -> IamMoto {
        let server = moto_server();
        let port = free_port();
        let child = tokio::process::Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", setup_calls.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {server}: {e}"));
        let endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..150 {
            // The reset endpoint is no AWS action: it does not count against the setup calls.
            if http
                .get(format!("{endpoint}/moto-api/"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return IamMoto { child, endpoint };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the IAM-enforcing moto at {endpoint} did not answer within 15 s");
    }

    /// The SDK configuration pointed at this server with the static test credentials (which
    /// only the setup calls may use).
    pub async fn sdk(&self) -> SdkConfig {
        sdk_config(&self.endpoint).await
    }
}

impl Drop for IamMoto {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The moto server binary: `SAFESHIP_MOTO_SERVER` (scripts/test sets it), else the venv the
/// scripts make.
fn moto_server() -> String {
    if let Ok(path) = std::env::var("SAFESHIP_MOTO_SERVER") {
        return path;
    }
    let home = std::env::var("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| std::path::Path::new(&h).join(".cache")))
        .expect("HOME is set");
    let path = home.join("safeship/venv/bin/moto_server");
    assert!(
        path.exists(),
        "no moto_server: set SAFESHIP_MOTO_SERVER or run through scripts/test, which installs it"
    );
    path.display().to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
