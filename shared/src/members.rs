//! Acting in a member account: the hub assumes the role the member stack created there
//! (`AssumeRole` with the hub's external id) and builds clients for the event's region.
//!
//! Credentials are aws-config's `AssumeRoleProvider`'s, held by one lazy identity cache per
//! account: assumed on first use, reused by every region of that account, and assumed again
//! only when they come near expiry. They are never logged; a refusal names the account and the
//! role, never a key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::identity::IdentityCache;
use aws_config::sts::AssumeRoleProvider;
use aws_config::SdkConfig;
use aws_credential_types::provider::{
    error::CredentialsError, future, ProvideCredentials, SharedCredentialsProvider,
};
use aws_smithy_runtime_api::client::identity::SharedIdentityCache;
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::policy::{member_role_arn, Place, Site};

/// How long before expiry assumed credentials are assumed again (the SDK's cache jitters it
/// down to half): an invocation that started with them never has them expire mid-call (the
/// SDK's own default is 10 s).
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// The member role's settings, from the hub's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRoles {
    /// `SAFESHIP_MEMBER_ROLE_NAME`: the role the member stack creates (default
    /// `safeship-member`), where an account names none of its own.
    pub role_name: String,
    /// `SAFESHIP_MEMBER_EXTERNAL_ID`: what the member roles' trust policies require as
    /// `sts:ExternalId`.
    pub external_id: String,
}

/// The clients' configuration per member account and region, built on first use and kept for
/// the life of the execution environment.
pub struct MemberAccess {
    hub: SdkConfig,
    roles: MemberRoles,
    /// `safeship-<function>`: the session name CloudTrail shows in the member account.
    session_name: String,
    refresh_before: Duration,
    accounts: Mutex<HashMap<String, Arc<AccountCredentials>>>,
    places: Mutex<HashMap<Place, SdkConfig>>,
}

/// One account's assumed credentials, shared by its regions.
struct AccountCredentials {
    provider: SharedCredentialsProvider,
    cache: SharedIdentityCache,
    role_arn: String,
    assumed: Arc<AtomicU64>,
}

impl std::fmt::Debug for MemberAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberAccess")
            .field("role_name", &self.roles.role_name)
            .field("session_name", &self.session_name)
            .finish_non_exhaustive()
    }
}

impl MemberAccess {
    #[must_use]
    pub fn new(hub: SdkConfig, roles: MemberRoles, function: &str) -> MemberAccess {
        MemberAccess {
            hub,
            roles,
            session_name: format!("safeship-{function}"),
            refresh_before: REFRESH_BEFORE_EXPIRY,
            accounts: Mutex::default(),
            places: Mutex::default(),
        }
    }

    /// The same, assuming again `refresh_before` ahead of expiry (tests).
    #[must_use]
    pub fn refreshing_before(mut self, refresh_before: Duration) -> MemberAccess {
        self.refresh_before = refresh_before;
        self
    }

    /// The hub's own configuration (its functions' role, its region).
    #[must_use]
    pub fn hub(&self) -> &SdkConfig {
        &self.hub
    }

    /// The configuration to act at `site` with: the hub's own, or the member role's in the
    /// site's region.
    pub async fn sdk_for(&self, site: &Site<'_>) -> SdkConfig {
        let Site::Member { place, .. } = site else {
            return self.hub.clone();
        };
        if let Some(sdk) = self.places.lock().expect("not poisoned").get(place) {
            return sdk.clone();
        }
        let role_arn = self.role_at(site).expect("a member site has a role");
        let credentials = self.credentials(&place.account, role_arn).await;
        let sdk = self
            .hub
            .clone()
            .into_builder()
            .region(aws_config::Region::new(place.region.clone()))
            .credentials_provider(credentials.provider.clone())
            .identity_cache(credentials.cache.clone())
            .build();
        self.places
            .lock()
            .expect("not poisoned")
            .entry(place.clone())
            .or_insert(sdk)
            .clone()
    }

    /// The role the hub acts as at `site` (`None` at the hub).
    #[must_use]
    pub fn role_at(&self, site: &Site<'_>) -> Option<String> {
        match site {
            Site::Hub => None,
            Site::Member { place, account } => Some(member_role_arn(
                partition_of(&place.region),
                &place.account,
                account,
                &self.roles.role_name,
            )),
        }
    }

    /// How many times the role of `account` has been assumed by this execution environment.
    #[must_use]
    pub fn assumptions(&self, account: &str) -> u64 {
        self.accounts
            .lock()
            .expect("not poisoned")
            .get(account)
            .map_or(0, |c| c.assumed.load(Ordering::Relaxed))
    }

    async fn credentials(&self, account: &str, role_arn: String) -> Arc<AccountCredentials> {
        if let Some(found) = self.accounts.lock().expect("not poisoned").get(account) {
            if found.role_arn == role_arn {
                return found.clone();
            }
        }
        // STS in the hub's region (its regional endpoint), with the hub's credentials.
        let provider = AssumeRoleProvider::builder(role_arn.clone())
            .configure(&self.hub)
            .session_name(self.session_name.clone())
            .external_id(self.roles.external_id.clone())
            .build()
            .await;
        let assumed = Arc::new(AtomicU64::new(0));
        let named = MemberRole {
            inner: Arc::new(provider),
            account: account.to_owned(),
            role_arn: role_arn.clone(),
            assumed: assumed.clone(),
        };
        let credentials = Arc::new(AccountCredentials {
            provider: SharedCredentialsProvider::new(named),
            cache: IdentityCache::lazy()
                .buffer_time(self.refresh_before)
                .build(),
            role_arn,
            assumed,
        });
        self.accounts
            .lock()
            .expect("not poisoned")
            .insert(account.to_owned(), credentials.clone());
        credentials
    }
}

/// The partition a region is in, for the role's ARN.
fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// `AssumeRoleProvider`, with a refusal that names the account and the role.
#[derive(Debug)]
struct MemberRole {
    inner: Arc<AssumeRoleProvider>,
    account: String,
    role_arn: String,
    assumed: Arc<AtomicU64>,
}

/// The member role could not be assumed.
#[derive(Debug, thiserror::Error)]
#[error("assuming role {role_arn} in account {account}: {problem}")]
pub struct AssumeRoleRefused {
    pub account: String,
    pub role_arn: String,
    pub problem: String,
}

impl ProvideCredentials for MemberRole {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.assumed.fetch_add(1, Ordering::Relaxed);
            // In a task of its own: STS's call is not nested inside the call that needs the
            // credentials, whose future is deep already (nested, it overflowed a 2 MiB stack).
            let inner = self.inner.clone();
            let assumed = tokio::spawn(async move { inner.provide_credentials().await })
                .await
                .unwrap_or_else(|e| Err(CredentialsError::provider_error(e)));
            match assumed {
                Ok(credentials) => {
                    tracing::info!(account = %self.account, role = %self.role_arn, "assumed the member role");
                    Ok(credentials)
                }
                Err(e) => {
                    let refused = AssumeRoleRefused {
                        account: self.account.clone(),
                        role_arn: self.role_arn.clone(),
                        problem: DisplayErrorContext(&e).to_string(),
                    };
                    tracing::warn!(error = %refused, "the member role was refused");
                    Err(CredentialsError::provider_error(refused))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_names_its_partition() {
        assert_eq!(partition_of("eu-west-1"), "aws");
        assert_eq!(partition_of("cn-north-1"), "aws-cn");
        assert_eq!(partition_of("us-gov-west-1"), "aws-us-gov");
    }
}
