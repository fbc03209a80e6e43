//! Where the document comes from: a file, inline, an SSM parameter, or an AppConfig profile.

use super::Policy;
use crate::config::{AppConfigProfile, PolicySource};
use crate::error::{Error, Result};

impl Policy {
    /// Reads the document from its source (a file, inline, SSM with decryption, or AppConfig
    /// Data) and parses it. A client is built only for its own source: a client costs a cold
    /// start about as much as parsing the whole policy.
    pub async fn load(source: &PolicySource, sdk: &aws_config::SdkConfig) -> Result<Policy> {
        let origin = source.describe();
        let document = match source {
            PolicySource::Inline(doc) => doc.clone(),
            PolicySource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| Error::policy(&origin, format!("cannot read the file: {e}")))?,
            PolicySource::SsmParameter(name) => crate::aws_client!(aws_sdk_ssm, sdk)
                .get_parameter()
                .name(name)
                .with_decryption(true)
                .send()
                .await
                .map_err(|e| Error::aws("ssm:GetParameter", name, e))?
                .parameter
                .and_then(|p| p.value)
                .ok_or_else(|| {
                    Error::unexpected("ssm:GetParameter", name, "the parameter has no value")
                })?,
            PolicySource::AppConfig(profile) => read_appconfig(profile, sdk, &origin).await?,
        };
        Policy::parse(&document, &origin)
    }
}

/// AppConfig Data at cold start: one session, one `GetLatestConfiguration`. The policy is read
/// once per execution environment (a new policy reaches a function with its next cold start),
/// so the session's next-poll token is not kept.
async fn read_appconfig(
    profile: &AppConfigProfile,
    sdk: &aws_config::SdkConfig,
    origin: &str,
) -> Result<String> {
    let client = crate::aws_client!(aws_sdk_appconfigdata, sdk);
    let resource = format!("AppConfig profile {profile}");
    let session = client
        .start_configuration_session()
        .application_identifier(&profile.application)
        .environment_identifier(&profile.environment)
        .configuration_profile_identifier(&profile.profile)
        .send()
        .await
        .map_err(|e| Error::aws("appconfig:StartConfigurationSession", &resource, e))?;
    let token = session.initial_configuration_token.ok_or_else(|| {
        Error::unexpected(
            "appconfig:StartConfigurationSession",
            &resource,
            "no InitialConfigurationToken in the answer",
        )
    })?;
    let latest = client
        .get_latest_configuration()
        .configuration_token(token)
        .send()
        .await
        .map_err(|e| Error::aws("appconfig:GetLatestConfiguration", &resource, e))?;
    // Which deployed version this execution environment runs, for the audit trail.
    tracing::info!(
        profile = %profile,
        version_label = latest.version_label.as_deref().unwrap_or("-"),
        content_type = latest.content_type.as_deref().unwrap_or("-"),
        "policy read from AppConfig"
    );
    let body = latest
        .configuration
        .map(aws_smithy_types::Blob::into_inner)
        .unwrap_or_default();
    appconfig_document(latest.content_type.as_deref(), body, origin)
}

/// The policy text from a first `GetLatestConfiguration` answer. AppConfig Data answers with an
/// empty body when nothing changed since the token's last poll; on a session's first poll an
/// empty body means nothing is deployed to the environment (or an empty version was): an error,
/// never an empty policy. The content type must be YAML, JSON or plain text (a hosted
/// configuration's type is chosen when the version is created); the YAML parser reads JSON too.
pub(crate) fn appconfig_document(
    content_type: Option<&str>,
    body: Vec<u8>,
    origin: &str,
) -> Result<String> {
    if body.is_empty() {
        return Err(Error::policy(
            origin,
            "AppConfig Data returned an empty configuration on the session's first poll: \
             deploy a policy version to this environment (StartDeployment) first",
        ));
    }
    let media = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let readable = matches!(
        media.as_str(),
        "application/json"
            | "application/x-yaml"
            | "application/yaml"
            | "text/yaml"
            | "text/x-yaml"
            | "text/plain"
            | ""
    );
    if !readable {
        return Err(Error::policy(
            origin,
            format!(
                "the configuration's content type is {media:?}: store the policy as \
                 application/x-yaml or application/json"
            ),
        ));
    }
    String::from_utf8(body)
        .map_err(|e| Error::policy(origin, format!("the configuration is not UTF-8: {e}")))
}

#[cfg(test)]
mod tests {
    use super::appconfig_document;

    const ORIGIN: &str = "AppConfig profile safeship/prod/policy";

    #[test]
    fn an_empty_first_configuration_is_an_error_not_an_empty_policy() {
        let err = appconfig_document(Some("application/x-yaml"), Vec::new(), ORIGIN)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(ORIGIN) && err.contains("empty configuration"),
            "{err}"
        );
    }

    #[test]
    fn yaml_json_and_text_are_read_with_or_without_parameters() {
        for ct in [
            Some("application/x-yaml"),
            Some("application/json; charset=utf-8"),
            Some("text/plain"),
            Some("Application/YAML"),
            None,
        ] {
            assert_eq!(
                appconfig_document(ct, b"version: 1".to_vec(), ORIGIN).unwrap(),
                "version: 1",
                "{ct:?}"
            );
        }
    }

    #[test]
    fn another_content_type_or_non_utf8_is_refused() {
        let err = appconfig_document(Some("application/octet-stream"), b"x".to_vec(), ORIGIN)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("application/octet-stream") && err.contains(ORIGIN),
            "{err}"
        );
        let err = appconfig_document(Some("application/json"), vec![0xff, 0xfe], ORIGIN)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not UTF-8"), "{err}");
    }
}
