//! AppConfig as the tests and the demo need it: moto holds the application, the feature-flag
//! profile and its hosted versions; wiremock serves what moto lacks —
//! `ListHostedConfigurationVersions`, `ListDeployments`, `GetDeployment` (not in moto) and
//! `StartDeployment` (moto: 404).

use aws_config::SdkConfig;
use aws_sdk_appconfig::primitives::Blob;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::emulators::unique;
use crate::split::SplitEndpoint;

/// The example policy's flag document: two flags on, one off, with attributes.
pub fn flags_document(new_flow_on: bool) -> Value {
    json!({
        "version": "1",
        "flags": {
            "new-checkout-flow": {"name": "New checkout flow", "attributes": {"variant": {"constraints": {"type": "string", "enum": ["a", "b"]}}}},
            "one-click-pay": {"name": "One-click pay"},
            "dark-mode": {"name": "Dark mode"}
        },
        "values": {
            "new-checkout-flow": {"enabled": new_flow_on, "variant": "b"},
            "one-click-pay": {"enabled": false},
            "dark-mode": {"enabled": true}
        }
    })
}

/// A feature-flag profile in moto with `document` as hosted version 1.
pub struct FlagProfile {
    pub application: String,
    pub profile: String,
}

impl FlagProfile {
    pub async fn create(sdk: &SdkConfig, document: &Value) -> FlagProfile {
        let client = aws_sdk_appconfig::Client::new(sdk);
        let application = client
            .create_application()
            .name(unique("checkout-flags"))
            .send()
            .await
            .expect("moto appconfig CreateApplication")
            .id
            .expect("an application id");
        let profile = client
            .create_configuration_profile()
            .application_id(&application)
            .name("release-flags")
            .location_uri("hosted")
            .r#type("AWS.AppConfig.FeatureFlags")
            .send()
            .await
            .expect("moto CreateConfigurationProfile")
            .id
            .expect("a profile id");
        client
            .create_hosted_configuration_version()
            .application_id(&application)
            .configuration_profile_id(&profile)
            .content_type("application/json")
            .content(Blob::new(serde_json::to_vec(document).unwrap()))
            .send()
            .await
            .expect("moto CreateHostedConfigurationVersion");
        FlagProfile {
            application,
            profile,
        }
    }

    /// The example policy's flag target (`checkout-flags` / `release-flags`) pointed at this one.
    pub fn into_policy(&self, policy: &str) -> String {
        policy
            .replace(
                "application: checkout-flags",
                &format!("application: {}", self.application),
            )
            .replace(
                "profile: release-flags",
                &format!("profile: {}", self.profile),
            )
    }

    /// wiremock answers `ListHostedConfigurationVersions` with version 1 (all moto holds at first).
    pub async fn mount_version_list(&self, mock: &MockServer) {
        Mock::given(method("GET"))
            .and(path(format!(
                "/applications/{}/configurationprofiles/{}/hostedconfigurationversions",
                self.application, self.profile
            )))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "Items": [{"ApplicationId": self.application, "ConfigurationProfileId": self.profile,
                           "VersionNumber": 1, "ContentType": "application/json"}]
            })))
            .mount(mock)
            .await;
        // AppConfig `ListDeployments` of an environment (not in moto): none, unless a test
        // mounts a history of its own (at a higher priority).
        Mock::given(method("GET"))
            .and(wiremock::matchers::path_regex(format!(
                "^/applications/{}/environments/[^/]+/deployments$",
                self.application
            )))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"Items": []})))
            .with_priority(10)
            .mount(mock)
            .await;
    }

    /// AppConfig's side for a rollback that is not under test itself (the demo, the benchmark):
    /// the version listing, and every `StartDeployment` accepted as deployment 1 of version 2.
    pub async fn mount_accepting_deployments(&self, mock: &MockServer) {
        self.mount_version_list(mock).await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(201).set_body_json(
                json!({"DeploymentNumber": 1, "State": "DEPLOYING", "ConfigurationVersion": "2"}),
            ))
            .mount(mock)
            .await;
    }

    /// AppConfig (`mock`) takes `StartDeployment` of hosted version `version` to `prod-env` with
    /// the default strategy exactly `times` times.
    pub async fn expect_deployment(&self, mock: &MockServer, version: &str, times: u64) {
        Mock::given(method("POST"))
            .and(path(format!(
                "/applications/{}/environments/prod-env/deployments",
                self.application
            )))
            .and(wiremock::matchers::body_partial_json(json!({
                "ConfigurationProfileId": self.profile,
                "ConfigurationVersion": version,
                "DeploymentStrategyId": "AppConfig.AllAtOnce",
            })))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({
                "ApplicationId": self.application, "EnvironmentId": "prod-env",
                "ConfigurationProfileId": self.profile, "ConfigurationVersion": version,
                "DeploymentStrategyId": "AppConfig.AllAtOnce", "DeploymentNumber": 7,
                "State": "DEPLOYING"
            })))
            .expect(times)
            .mount(mock)
            .await;
    }

    /// AppConfig lists hosted versions `latest` down to 1 (over [`Self::mount_version_list`]'s
    /// one): what it says once a flag switch wrote a new version.
    pub async fn mount_versions(&self, mock: &MockServer, latest: i32) {
        let items: Vec<Value> = (1..=latest)
            .rev()
            .map(|v| {
                json!({"ApplicationId": self.application, "ConfigurationProfileId": self.profile,
                       "VersionNumber": v, "ContentType": "application/json"})
            })
            .collect();
        Mock::given(method("GET"))
            .and(path(format!(
                "/applications/{}/configurationprofiles/{}/hostedconfigurationversions",
                self.application, self.profile
            )))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"Items": items})))
            .with_priority(1)
            .mount(mock)
            .await;
    }

    /// The environment `prod-env` serves `version` of this profile: its one complete deployment
    /// (`ListDeployments`, `GetDeployment`).
    pub async fn mount_deployed(&self, mock: &MockServer, version: &str) {
        self.mount_deployed_in(mock, "prod-env", version).await;
    }

    /// The environment `environment` serves `version` of this profile, as
    /// [`Self::mount_deployed`].
    pub async fn mount_deployed_in(&self, mock: &MockServer, environment: &str, version: &str) {
        Mock::given(method("GET"))
            .and(path(format!(
                "/applications/{}/environments/{environment}/deployments",
                self.application
            )))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"Items": [
                {"DeploymentNumber": 1, "ConfigurationName": "release-flags",
                 "ConfigurationVersion": version, "DeploymentDurationInMinutes": 0,
                 "GrowthType": "LINEAR", "GrowthFactor": 100.0, "FinalBakeTimeInMinutes": 0,
                 "State": "COMPLETE", "PercentageComplete": 100.0}
            ]})))
            .with_priority(1)
            .mount(mock)
            .await;
        Mock::given(method("GET"))
            .and(path(format!(
                "/applications/{}/environments/{environment}/deployments/1",
                self.application
            )))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "ApplicationId": self.application, "EnvironmentId": environment,
                "DeploymentStrategyId": "AppConfig.AllAtOnce",
                "ConfigurationProfileId": self.profile, "DeploymentNumber": 1,
                "ConfigurationName": "release-flags", "ConfigurationVersion": version,
                "State": "COMPLETE"})))
            .with_priority(1)
            .mount(mock)
            .await;
    }

    pub async fn hosted_version(&self, sdk: &SdkConfig, version: i32) -> Option<Value> {
        let out = aws_sdk_appconfig::Client::new(sdk)
            .get_hosted_configuration_version()
            .application_id(&self.application)
            .configuration_profile_id(&self.profile)
            .version_number(version)
            .send()
            .await
            .ok()?;
        Some(serde_json::from_slice(&out.content?.into_inner()).expect("hosted JSON"))
    }
}

/// One AppConfig endpoint: version listing and `StartDeployment` to `mock`, the rest to moto.
pub async fn split_endpoint(moto: &str, mock: &MockServer) -> SplitEndpoint {
    SplitEndpoint::start(moto, &mock.uri(), |parts| {
        let p = parts.uri.path();
        (parts.method == "GET" && p.ends_with("/hostedconfigurationversions"))
            // StartDeployment, ListDeployments, GetDeployment (none in moto)
            || (p.contains("/environments/") && p.contains("/deployments"))
    })
    .await
}

/// AppConfig's operations moto lacks, answered from what was done (for a whole world, where
/// nothing is under test by itself): `ListHostedConfigurationVersions` lists the versions moto
/// holds (1, and one more for each `CreateHostedConfigurationVersion` moto accepted, told by
/// [`Self::created`]); `StartDeployment` deploys at once, and `ListDeployments` /
/// `GetDeployment` of the environment then tell what it serves. An environment starts serving
/// version 1 ([`Self::serve`]), as one whose flags are live does.
#[derive(Clone, Default)]
pub struct AppConfigLedger {
    state: std::sync::Arc<std::sync::Mutex<Hosted>>,
}

#[derive(Default)]
struct Hosted {
    /// (application, profile) → the latest hosted version.
    latest: std::collections::HashMap<(String, String), i64>,
    /// (application, environment) → its deployments, oldest first, as (profile, version).
    deployments: std::collections::HashMap<(String, String), Vec<(String, String)>>,
}

impl AppConfigLedger {
    /// `environment` of `application` serves `version` of `profile` (deployed before the story).
    pub fn serve(&self, application: &str, environment: &str, profile: &str, version: i64) {
        let mut state = self.state.lock().unwrap();
        state
            .deployments
            .entry((application.to_owned(), environment.to_owned()))
            .or_default()
            .push((profile.to_owned(), version.to_string()));
        let latest = state
            .latest
            .entry((application.to_owned(), profile.to_owned()))
            .or_insert(1);
        *latest = (*latest).max(version);
    }

    /// What an endpoint saw: moto accepted a `CreateHostedConfigurationVersion` (`operation`
    /// as [`crate::split::Wait`] names it).
    pub fn created(&self, operation: &str) {
        let parts: Vec<&str> = operation.split('/').collect();
        if let ["POST ", "applications", app, "configurationprofiles", profile, "hostedconfigurationversions"] =
            parts.as_slice()
        {
            let mut state = self.state.lock().unwrap();
            *state
                .latest
                .entry(((*app).to_owned(), (*profile).to_owned()))
                .or_insert(1) += 1;
        }
    }

    /// The endpoint for a world: what moto lacks to `mock` (answered by this ledger), the rest
    /// to moto; every version moto creates counted.
    pub async fn endpoint(&self, moto: &str, mock: &MockServer) -> SplitEndpoint {
        Mock::given(wiremock::matchers::any())
            .respond_with(self.clone())
            .mount(mock)
            .await;
        let split = split_endpoint(moto, mock).await;
        let ledger = self.clone();
        split.observe(std::sync::Arc::new(move |call| {
            if call.succeeded() {
                ledger.created(&call.operation);
            }
        }));
        split
    }
}

impl wiremock::Respond for AppConfigLedger {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let path: Vec<&str> = request
            .url
            .path()
            .trim_start_matches('/')
            .split('/')
            .collect();
        let mut state = self.state.lock().unwrap();
        let get = request.method == wiremock::http::Method::GET;
        match path.as_slice() {
            ["applications", app, "configurationprofiles", profile, "hostedconfigurationversions"] if get => {
                let latest = *state
                    .latest
                    .get(&((*app).to_owned(), (*profile).to_owned()))
                    .unwrap_or(&1);
                let items: Vec<Value> = (1..=latest)
                    .rev()
                    .map(|v| json!({"ApplicationId": app, "ConfigurationProfileId": profile,
                                    "VersionNumber": v, "ContentType": "application/json"}))
                    .collect();
                ResponseTemplate::new(200).set_body_json(json!({"Items": items}))
            }
            ["applications", app, "environments", env, "deployments"] => {
                let key = ((*app).to_owned(), (*env).to_owned());
                if get {
                    let deployments = state.deployments.get(&key).cloned().unwrap_or_default();
                    let items: Vec<Value> = deployments
                        .iter()
                        .enumerate()
                        .rev()
                        .map(|(i, (profile, version))| deployment_json(app, env, i + 1, profile, version))
                        .collect();
                    return ResponseTemplate::new(200).set_body_json(json!({"Items": items}));
                }
                let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
                let profile = body["ConfigurationProfileId"].as_str().unwrap_or_default().to_owned();
                let version = body["ConfigurationVersion"].as_str().unwrap_or_default().to_owned();
                let deployments = state.deployments.entry(key).or_default();
                deployments.push((profile.clone(), version.clone()));
                let number = deployments.len();
                ResponseTemplate::new(201)
                    .set_body_json(deployment_json(app, env, number, &profile, &version))
            }
            ["applications", app, "environments", env, "deployments", number] if get => {
                let n: usize = number.parse().unwrap_or(0);
                let key = ((*app).to_owned(), (*env).to_owned());
                match state.deployments.get(&key).and_then(|d| d.get(n.wrapping_sub(1))) {
                    Some((profile, version)) => ResponseTemplate::new(200)
                        .set_body_json(deployment_json(app, env, n, profile, version)),
                    None => ResponseTemplate::new(404).set_body_json(
                        json!({"Message": format!("deployment {n} of {app}/{env} does not exist")}),
                    ),
                }
            }
            _ => ResponseTemplate::new(404)
                .set_body_json(json!({"Message": format!("{} {} is not emulated here", request.method, request.url.path())})),
        }
    }
}

/// An AppConfig deployment as `StartDeployment`, `GetDeployment` and `ListDeployments` show it
/// (this ledger's deploy at once: `COMPLETE`).
fn deployment_json(app: &str, env: &str, number: usize, profile: &str, version: &str) -> Value {
    json!({
        "ApplicationId": app, "EnvironmentId": env, "DeploymentStrategyId": "AppConfig.AllAtOnce",
        "ConfigurationProfileId": profile, "DeploymentNumber": number,
        "ConfigurationName": "release-flags", "ConfigurationVersion": version,
        "DeploymentDurationInMinutes": 0, "GrowthType": "LINEAR", "GrowthFactor": 100.0,
        "FinalBakeTimeInMinutes": 0, "State": "COMPLETE", "PercentageComplete": 100.0
    })
}
