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
