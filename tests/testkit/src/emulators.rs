//! Where the emulators are. `scripts/test` and `scripts/demo` start them (or reuse running ones)
//! and export their addresses; a test never skips because one is missing — it fails and says so.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_config::{Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_ssm::config::Credentials;

pub const REGION: &str = "eu-west-1";
pub const ACCOUNT: &str = "123456789012";

/// The moto server's URL, from `SAFESHIP_MOTO_ENDPOINT` (set by the scripts).
pub fn moto_endpoint() -> String {
    match std::env::var("SAFESHIP_MOTO_ENDPOINT") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "SAFESHIP_MOTO_ENDPOINT is not set: these tests need a moto server. \
             Run scripts/test, which installs and starts one (or exports the address of a running one)."
        ),
    }
}

/// The PostgreSQL URL, from `DATABASE_URL` (set by the scripts).
pub fn database_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "DATABASE_URL is not set: these tests need PostgreSQL. Run scripts/test, which finds or starts one."
        ),
    }
}

/// An SDK configuration with safeship's retry and timeout settings, pointed at `endpoint` through
/// the SDK's standard endpoint setting (the same one `AWS_ENDPOINT_URL` sets).
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    safeship::aws::sdk_config_loader()
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        // moto accepts any signature; the SDK needs some identity to sign with.
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "safeship-tests",
        ))
        .load()
        .await
}

/// A name no other test (or earlier run against the same moto) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The idempotency table as the SAM template declares it: partition key `pk` (string).
pub async fn create_idempotency_table(ddb: &aws_sdk_dynamodb::Client, name: &str) {
    ddb.create_table()
        .table_name(name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "creating DynamoDB table {name} in moto: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(e)
            )
        });
}

/// The repository's `events/` folder.
pub fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events")
}

pub fn sample_event(name: &str) -> serde_json::Value {
    let path = events_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The example policy every test and the demo use.
pub fn example_policy() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/policy.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A function binary built next to the running executable (`target/<profile>/<name>`).
pub fn function_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current executable");
    let mut dir = exe.parent().expect("executable's folder").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

/// moto's own account: the hub's, in tests (what moto answers for the static test keys).
pub const HUB_ACCOUNT: &str = "123456789012";
/// The external id the hub passes when it assumes a member role, in tests.
pub const MEMBER_EXTERNAL_ID: &str = "safeship-test-external-id";

/// What a function's cold start builds, pointed at `sdk`'s endpoint, with the example policy, a
/// fresh idempotency table in moto and the default event bus.
pub async fn common(sdk: &SdkConfig) -> safeship::runtime::Common {
    common_with_policy(sdk, &example_policy()).await
}

/// As [`common`], with a test's own policy document.
pub async fn common_with_policy(sdk: &SdkConfig, policy_text: &str) -> safeship::runtime::Common {
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let table = unique("idem");
    create_idempotency_table(&ddb, &table).await;
    let policy = safeship::policy::Policy::parse(policy_text, "test policy")
        .unwrap_or_else(|e| panic!("test policy: {e}"));
    let policy_text = policy_text.to_owned();
    safeship::runtime::Common {
        config: safeship::config::CommonConfig {
            policy_source: safeship::config::PolicySource::Inline(policy_text),
            idempotency_table: table.clone(),
            event_bus: "default".into(),
            dry_run: false,
            hub_account: Some(HUB_ACCOUNT.into()),
            member_role_name: "safeship-member".into(),
            member_external_id: Some(MEMBER_EXTERNAL_ID.into()),
        },
        sdk: sdk.clone(),
        hub: safeship::policy::Hub {
            account: Some(HUB_ACCOUNT.into()),
            region: sdk.region().map(ToString::to_string),
        },
        members: std::sync::Arc::new(safeship::members::MemberAccess::new(
            sdk.clone(),
            safeship::members::MemberRoles {
                role_name: "safeship-member".into(),
                external_id: MEMBER_EXTERNAL_ID.into(),
            },
            "test",
        )),
        policy: std::sync::Arc::new(policy),
        idempotency: safeship::idempotency::IdempotencyStore::new(ddb, table, "test"),
        guard: safeship::guard::GuardPublisher::new(
            aws_sdk_eventbridge::Client::new(sdk),
            "default",
        ),
    }
}

/// A PostgreSQL DB instance in moto (the smallest class; moto checks no password).
pub async fn create_db_instance(
    rds: &aws_sdk_rds::Client,
    identifier: &str,
) -> Result<
    (),
    aws_sdk_rds::error::SdkError<aws_sdk_rds::operation::create_db_instance::CreateDBInstanceError>,
> {
    rds.create_db_instance()
        .db_instance_identifier(identifier)
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .allocated_storage(20)
        .master_username("safeship")
        .master_user_password("not-a-secret-in-moto")
        .send()
        .await
        .map(|_| ())
}

/// The manual snapshots of a moto DB instance (moto also makes an automated one at creation).
pub async fn manual_snapshot_ids(rds: &aws_sdk_rds::Client, instance: &str) -> Vec<String> {
    rds.describe_db_snapshots()
        .db_instance_identifier(instance)
        .snapshot_type("manual")
        .send()
        .await
        .expect("moto DescribeDBSnapshots")
        .db_snapshots
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| s.db_snapshot_identifier)
        .collect()
}
