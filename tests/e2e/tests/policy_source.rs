//! Loading the policy from each source: an SSM parameter in moto (SecureString, decrypted), a
//! file, and inline; and the cold start's `Common::load` with the variables the functions read.

use aws_sdk_ssm::types::ParameterType;
use safeship::config::PolicySource;
use safeship::env::Env;
use safeship::policy::Policy;
use safeship_testkit::emulators::{example_policy, moto_endpoint, sdk_config, unique};

#[tokio::test]
async fn policy_from_an_ssm_secure_string() {
    let sdk = sdk_config(&moto_endpoint()).await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let name = format!("/{}/policy", unique("safeship"));
    ssm.put_parameter()
        .name(&name)
        .value(example_policy())
        .r#type(ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let policy = Policy::load(&PolicySource::SsmParameter(name), &sdk)
        .await
        .unwrap();
    assert!(policy.group("checkout", "checkout-prod").is_some());
}

#[tokio::test]
async fn a_missing_parameter_names_it() {
    let sdk = sdk_config(&moto_endpoint()).await;
    let err = Policy::load(&PolicySource::SsmParameter("/nowhere/policy".into()), &sdk)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ssm:GetParameter on /nowhere/policy failed"),
        "{err}"
    );
    assert!(err.contains("ParameterNotFound"), "{err}");
}

#[tokio::test]
async fn an_invalid_policy_file_names_the_file_and_the_field() {
    let dir = tempfile_dir();
    let path = dir.join("policy.yaml");
    std::fs::write(
        &path,
        "version: 1\napplications:\n  a:\n    deployment-groups:\n      g: {environment: qa}\n",
    )
    .unwrap();
    let sdk = sdk_config(&moto_endpoint()).await;
    let err = Policy::load(&PolicySource::File(path.clone()), &sdk)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("environment: unknown variant `qa`"), "{err}");
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique("safeship-policy"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn cold_start_names_a_missing_variable_before_any_call() {
    let err = safeship::runtime::Common::load(
        "test",
        &Env::from_pairs([("SAFESHIP_POLICY", example_policy())]),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("SAFESHIP_IDEMPOTENCY_TABLE"), "{err}");
}

// --- AppConfig Data (moto does not serve it: wiremock, asserting the exact requests) ---

mod appconfig {
    use safeship::config::{AppConfigProfile, PolicySource};
    use safeship::policy::Policy;
    use safeship_testkit::emulators::{example_policy, sdk_config};
    use wiremock::matchers::{body_json, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn profile() -> PolicySource {
        PolicySource::AppConfig(AppConfigProfile {
            application: "safeship".into(),
            environment: "prod".into(),
            profile: "policy".into(),
        })
    }

    /// `StartConfigurationSession` exactly as AppConfig Data takes it (REST-JSON, 201).
    async fn expect_session(server: &MockServer) {
        Mock::given(method("POST"))
            .and(path("/configurationsessions"))
            .and(body_json(serde_json::json!({
                "ApplicationIdentifier": "safeship",
                "EnvironmentIdentifier": "prod",
                "ConfigurationProfileIdentifier": "policy",
            })))
            .respond_with(
                ResponseTemplate::new(201)
                    .set_body_json(serde_json::json!({"InitialConfigurationToken": "token-1"})),
            )
            .expect(1)
            .mount(server)
            .await;
    }

    /// `GetLatestConfiguration` with the session's initial token; the document is the raw body.
    async fn serve_configuration(server: &MockServer, content_type: &str, body: Vec<u8>) {
        Mock::given(method("GET"))
            .and(path("/configuration"))
            .and(query_param("configuration_token", "token-1"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("Next-Poll-Configuration-Token", "token-2")
                    .insert_header("Next-Poll-Interval-In-Seconds", "60")
                    .insert_header("Version-Label", "v7")
                    .set_body_raw(body, content_type),
            )
            .expect(1)
            .mount(server)
            .await;
    }

    #[tokio::test]
    async fn policy_from_an_appconfig_yaml_configuration() {
        let server = MockServer::start().await;
        expect_session(&server).await;
        serve_configuration(&server, "application/x-yaml", example_policy().into_bytes()).await;
        let policy = Policy::load(&profile(), &sdk_config(&server.uri()).await)
            .await
            .unwrap();
        assert!(policy.group("checkout", "checkout-prod").is_some());
    }

    #[tokio::test]
    async fn policy_from_an_appconfig_json_configuration() {
        let server = MockServer::start().await;
        expect_session(&server).await;
        let yaml: serde_json::Value = serde_yaml_ng::from_str(&example_policy()).unwrap();
        serve_configuration(
            &server,
            "application/json",
            serde_json::to_vec(&yaml).unwrap(),
        )
        .await;
        let policy = Policy::load(&profile(), &sdk_config(&server.uri()).await)
            .await
            .unwrap();
        assert!(policy.group("checkout", "checkout-prod").is_some());
    }

    #[tokio::test]
    async fn an_empty_appconfig_configuration_at_cold_start_is_an_error() {
        let server = MockServer::start().await;
        expect_session(&server).await;
        serve_configuration(&server, "application/x-yaml", Vec::new()).await;
        let err = Policy::load(&profile(), &sdk_config(&server.uri()).await)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "Policy");
        let err = err.to_string();
        assert!(
            err.contains("AppConfig profile safeship/prod/policy")
                && err.contains("empty configuration"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_appconfig_configuration_of_another_content_type_is_refused() {
        let server = MockServer::start().await;
        expect_session(&server).await;
        serve_configuration(&server, "application/octet-stream", b"version: 1".to_vec()).await;
        let err = Policy::load(&profile(), &sdk_config(&server.uri()).await)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("application/octet-stream") && err.contains("safeship/prod/policy"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_unknown_appconfig_profile_names_the_profile_and_the_call() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/configurationsessions"))
            .respond_with(
                ResponseTemplate::new(404)
                    .insert_header("x-amzn-ErrorType", "ResourceNotFoundException")
                    .set_body_json(serde_json::json!({
                        "Message": "Requested resource not found",
                        "ResourceType": "ConfigurationProfile",
                    })),
            )
            .expect(1)
            .mount(&server)
            .await;
        let err = Policy::load(&profile(), &sdk_config(&server.uri()).await)
            .await
            .unwrap_err();
        assert_eq!(err.aws_code(), Some("ResourceNotFoundException"));
        let err = err.to_string();
        assert!(
            err.contains(
                "appconfig:StartConfigurationSession on AppConfig profile safeship/prod/policy failed"
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_refused_appconfig_token_names_the_profile_and_the_call() {
        let server = MockServer::start().await;
        expect_session(&server).await;
        Mock::given(method("GET"))
            .and(path("/configuration"))
            .respond_with(
                ResponseTemplate::new(400)
                    .insert_header("x-amzn-ErrorType", "BadRequestException")
                    .set_body_json(serde_json::json!({"Message": "Token expired"})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let err = Policy::load(&profile(), &sdk_config(&server.uri()).await)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "appconfig:GetLatestConfiguration on AppConfig profile safeship/prod/policy failed"
            ) && err.contains("BadRequestException"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn cold_start_refuses_appconfig_beside_another_source() {
        let err = safeship::runtime::Common::load(
            "test",
            &safeship::env::Env::from_pairs([
                ("SAFESHIP_POLICY", example_policy()),
                (
                    "SAFESHIP_POLICY_APPCONFIG",
                    "safeship/prod/policy".to_owned(),
                ),
                ("SAFESHIP_IDEMPOTENCY_TABLE", "t".to_owned()),
            ]),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("SAFESHIP_POLICY,") && err.contains("SAFESHIP_POLICY_APPCONFIG"),
            "{err}"
        );
    }
}

// --- The real binary: the policy's AppConfig source at a Lambda cold start ---

mod binary {
    use std::time::Duration;

    use safeship_testkit::emulators::{example_policy, function_binary, moto_endpoint, REGION};
    use safeship_testkit::runtime::LocalRuntime;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    /// AppConfig Data on wiremock (routed by the SDK's per-service endpoint variable), everything
    /// else on moto; the policy comes only from `SAFESHIP_POLICY_APPCONFIG`.
    async fn appconfig_data(body: Vec<u8>) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/configurationsessions"))
            .respond_with(
                ResponseTemplate::new(201)
                    .set_body_json(serde_json::json!({"InitialConfigurationToken": "token-1"})),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/configuration"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("Next-Poll-Configuration-Token", "token-2")
                    .insert_header("Next-Poll-Interval-In-Seconds", "60")
                    .set_body_raw(body, "application/x-yaml"),
            )
            .mount(&server)
            .await;
        server
    }

    fn env(appconfig_data: &MockServer) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", moto_endpoint()),
            ("AWS_ENDPOINT_URL_APPCONFIGDATA", appconfig_data.uri()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            (
                "SAFESHIP_POLICY_APPCONFIG",
                "safeship/prod/policy".to_owned(),
            ),
            (
                "SAFESHIP_IDEMPOTENCY_TABLE",
                "safeship-idempotency".to_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    async fn paths(server: &MockServer) -> Vec<String> {
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| format!("{} {}", r.method, r.url.path()))
            .collect()
    }

    #[tokio::test]
    async fn a_function_binary_loads_its_policy_from_appconfig_at_cold_start() {
        let server = appconfig_data(example_policy().into_bytes()).await;
        let runtime = LocalRuntime::start().await;
        let _process = runtime.spawn_function(
            &function_binary("traffic-hook"),
            "traffic-hook",
            &env(&server),
        );
        let ready = runtime.ready(Duration::from_secs(20)).await;
        assert!(ready.is_ok(), "traffic-hook did not start: {ready:?}");
        assert_eq!(
            paths(&server).await,
            ["POST /configurationsessions", "GET /configuration"]
        );
    }

    #[tokio::test]
    async fn a_function_binary_with_an_empty_appconfig_policy_fails_its_cold_start() {
        // alarm-rollback ends its process on a failed cold start (the hooks instead keep
        // answering each hook Failed): Lambda records the init error and starts again.
        let server = appconfig_data(Vec::new()).await;
        let runtime = LocalRuntime::start().await;
        let mut process = runtime.spawn_function(
            &function_binary("alarm-rollback"),
            "alarm-rollback",
            &env(&server),
        );
        let status = tokio::time::timeout(Duration::from_secs(20), process.wait())
            .await
            .expect("the process exits")
            .unwrap();
        assert!(!status.success());
        let text = runtime.output_after_exit().await;
        assert!(
            text.contains("AppConfig profile safeship/prod/policy")
                && text.contains("empty configuration"),
            "{text}"
        );
    }
}
