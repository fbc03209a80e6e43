//! The settings every guard rail reads at cold start: where the policy comes from, the
//! idempotency table, the guard-event bus, dry run.

use std::path::PathBuf;

use crate::env::Env;
use crate::error::{Error, Result};

/// Where the policy document comes from: exactly one of the four variables must be set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// `SAFESHIP_POLICY_FILE`: a path to a YAML or JSON file (e.g. packaged with the function).
    File(PathBuf),
    /// `SAFESHIP_POLICY`: the document itself.
    Inline(String),
    /// `SAFESHIP_POLICY_SSM_PARAMETER`: the name of an SSM parameter holding the document.
    SsmParameter(String),
    /// `SAFESHIP_POLICY_APPCONFIG=<application>/<environment>/<profile>`: an AppConfig
    /// configuration (hosted or not; each part a name or an ID), read through AppConfig Data at
    /// cold start. For a policy larger than an SSM parameter holds.
    AppConfig(AppConfigProfile),
}

/// The three identifiers AppConfig Data's `StartConfigurationSession` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfigProfile {
    pub application: String,
    pub environment: String,
    pub profile: String,
}

impl AppConfigProfile {
    /// Parses `<application>/<environment>/<profile>`: three non-empty parts. AppConfig names
    /// may not contain `/`, so the split is unambiguous.
    pub fn parse(value: &str) -> Result<Self> {
        let parts: Vec<&str> = value.split('/').map(str::trim).collect();
        match parts.as_slice() {
            [application, environment, profile]
                if !application.is_empty() && !environment.is_empty() && !profile.is_empty() =>
            {
                Ok(AppConfigProfile {
                    application: (*application).to_owned(),
                    environment: (*environment).to_owned(),
                    profile: (*profile).to_owned(),
                })
            }
            _ => Err(Error::config(
                POLICY_APPCONFIG_VAR,
                format!("expected <application>/<environment>/<profile> (three non-empty names or IDs), found {value:?}"),
            )),
        }
    }
}

impl std::fmt::Display for AppConfigProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.application, self.environment, self.profile
        )
    }
}

pub const POLICY_FILE_VAR: &str = "SAFESHIP_POLICY_FILE";
pub const POLICY_INLINE_VAR: &str = "SAFESHIP_POLICY";
pub const POLICY_SSM_VAR: &str = "SAFESHIP_POLICY_SSM_PARAMETER";
pub const POLICY_APPCONFIG_VAR: &str = "SAFESHIP_POLICY_APPCONFIG";
/// Every policy source variable, in the order messages name them.
pub const POLICY_SOURCE_VARS: [&str; 4] = [
    POLICY_FILE_VAR,
    POLICY_INLINE_VAR,
    POLICY_SSM_VAR,
    POLICY_APPCONFIG_VAR,
];

impl PolicySource {
    pub fn from_env(env: &Env) -> Result<Self> {
        let set: Vec<(&str, &str)> = POLICY_SOURCE_VARS
            .into_iter()
            .filter_map(|name| env.optional(name).map(|v| (name, v)))
            .collect();
        match set.as_slice() {
            [(POLICY_FILE_VAR, path)] => Ok(PolicySource::File(PathBuf::from(path))),
            [(POLICY_INLINE_VAR, doc)] => Ok(PolicySource::Inline((*doc).to_owned())),
            [(POLICY_SSM_VAR, name)] => Ok(PolicySource::SsmParameter((*name).to_owned())),
            [(POLICY_APPCONFIG_VAR, value)] => {
                Ok(PolicySource::AppConfig(AppConfigProfile::parse(value)?))
            }
            [] => Err(Error::config(
                POLICY_FILE_VAR,
                format!(
                    "no policy configured: set one of {}",
                    POLICY_SOURCE_VARS.join(", ")
                ),
            )),
            several => Err(Error::config(
                several[0].0,
                format!(
                    "set only one policy source, found {}",
                    several
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    /// A description for messages; never the inline document itself.
    pub fn describe(&self) -> String {
        match self {
            PolicySource::File(p) => format!("file {}", p.display()),
            PolicySource::Inline(_) => format!("inline {POLICY_INLINE_VAR}"),
            PolicySource::SsmParameter(n) => format!("SSM parameter {n}"),
            PolicySource::AppConfig(p) => format!("AppConfig profile {p}"),
        }
    }
}

/// Settings every guard rail reads.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    pub policy_source: PolicySource,
    /// `SAFESHIP_IDEMPOTENCY_TABLE`: DynamoDB table (partition key `pk`, TTL attribute `expires_at`).
    pub idempotency_table: String,
    /// `SAFESHIP_EVENT_BUS`: EventBridge bus for guard events (default `default`).
    pub event_bus: String,
    /// `SAFESHIP_DRY_RUN`: report what would be done without doing it (default false).
    pub dry_run: bool,
    /// `SAFESHIP_HUB_ACCOUNT`: the account the stack runs in; a policy naming member
    /// `accounts` needs it, to tell the hub's own events from a member's.
    pub hub_account: Option<String>,
    /// `SAFESHIP_MEMBER_ROLE_NAME` (default `safeship-member`) and
    /// `SAFESHIP_MEMBER_EXTERNAL_ID`: the role assumed in member accounts.
    pub member_role_name: String,
    pub member_external_id: Option<String>,
}

impl CommonConfig {
    pub fn from_env(env: &Env) -> Result<Self> {
        Ok(CommonConfig {
            policy_source: PolicySource::from_env(env)?,
            idempotency_table: env.required("SAFESHIP_IDEMPOTENCY_TABLE")?.to_owned(),
            event_bus: env
                .optional("SAFESHIP_EVENT_BUS")
                .unwrap_or("default")
                .to_owned(),
            dry_run: env.flag("SAFESHIP_DRY_RUN", false)?,
            hub_account: match env.optional("SAFESHIP_HUB_ACCOUNT") {
                Some(id) if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) => {
                    Some(id.to_owned())
                }
                Some(other) => {
                    return Err(Error::config(
                        "SAFESHIP_HUB_ACCOUNT",
                        format!("{other:?} is not a 12-digit account id"),
                    ))
                }
                None => None,
            },
            member_role_name: env
                .optional("SAFESHIP_MEMBER_ROLE_NAME")
                .unwrap_or("safeship-member")
                .to_owned(),
            member_external_id: env
                .optional("SAFESHIP_MEMBER_EXTERNAL_ID")
                .map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn missing_required_variable_is_named() {
        let err = CommonConfig::from_env(&env(&[(POLICY_INLINE_VAR, "version: 1")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration: environment variable SAFESHIP_IDEMPOTENCY_TABLE: is required but not set"
        );
    }

    #[test]
    fn malformed_flag_is_named_with_its_value() {
        let err = CommonConfig::from_env(&env(&[
            (POLICY_INLINE_VAR, "version: 1"),
            ("SAFESHIP_IDEMPOTENCY_TABLE", "t"),
            ("SAFESHIP_DRY_RUN", "maybe"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("SAFESHIP_DRY_RUN"), "{err}");
        assert!(err.to_string().contains("\"maybe\""), "{err}");
    }

    #[test]
    fn exactly_one_policy_source() {
        assert!(PolicySource::from_env(&env(&[]))
            .unwrap_err()
            .to_string()
            .contains("no policy configured"));
        let both = PolicySource::from_env(&env(&[
            (POLICY_FILE_VAR, "/p.yaml"),
            (POLICY_SSM_VAR, "/safeship/policy"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            both.contains(POLICY_FILE_VAR) && both.contains(POLICY_SSM_VAR),
            "{both}"
        );
        assert_eq!(
            PolicySource::from_env(&env(&[(POLICY_SSM_VAR, "/safeship/policy")])).unwrap(),
            PolicySource::SsmParameter("/safeship/policy".into())
        );
    }

    #[test]
    fn an_appconfig_source_is_application_environment_profile() {
        assert_eq!(
            PolicySource::from_env(&env(&[(POLICY_APPCONFIG_VAR, "safeship/prod/policy")]))
                .unwrap(),
            PolicySource::AppConfig(AppConfigProfile {
                application: "safeship".into(),
                environment: "prod".into(),
                profile: "policy".into(),
            })
        );
        for bad in [
            "safeship/prod",
            "safeship//policy",
            "a/b/c/d",
            "/prod/policy",
        ] {
            let err = PolicySource::from_env(&env(&[(POLICY_APPCONFIG_VAR, bad)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(POLICY_APPCONFIG_VAR)
                    && err.contains("<application>/<environment>/<profile>"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn an_appconfig_source_beside_another_names_every_source_set() {
        let err = PolicySource::from_env(&env(&[
            (POLICY_INLINE_VAR, "version: 1"),
            (POLICY_SSM_VAR, "/safeship/policy"),
            (POLICY_APPCONFIG_VAR, "safeship/prod/policy"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(POLICY_INLINE_VAR)
                && err.contains(POLICY_SSM_VAR)
                && err.contains(POLICY_APPCONFIG_VAR),
            "{err}"
        );
        let none = PolicySource::from_env(&env(&[])).unwrap_err().to_string();
        assert!(none.contains(POLICY_APPCONFIG_VAR), "{none}");
    }

    #[test]
    fn defaults_apply_and_empty_counts_as_unset() {
        let c = CommonConfig::from_env(&env(&[
            (POLICY_FILE_VAR, "policy.yaml"),
            ("SAFESHIP_IDEMPOTENCY_TABLE", "safeship-idempotency"),
            ("SAFESHIP_EVENT_BUS", ""),
        ]))
        .unwrap();
        assert_eq!(c.event_bus, "default");
        assert!(!c.dry_run);
    }

    #[test]
    fn parse_or_names_variable_on_bad_number() {
        let e = env(&[("SAFESHIP_HOOK_MARGIN_MS", "soon")]);
        let err = e
            .parse_or::<u64>("SAFESHIP_HOOK_MARGIN_MS", 1500)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SAFESHIP_HOOK_MARGIN_MS") && err.contains("soon"),
            "{err}"
        );
        assert_eq!(env(&[]).parse_or::<u64>("X", 7).unwrap(), 7);
    }
}
