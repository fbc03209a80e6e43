//! `safeship integrity run` as a person runs it: the real PostgreSQL (the checkout tables in a
//! schema of this test's own), its credentials in moto's Secrets Manager, the history in moto's
//! DynamoDB, and CodeDeploy's deployments since the last run from wiremock (moto's deployments
//! never complete).

use safeship_testkit::emulators::{example_policy, moto_endpoint, sdk_config, REGION};
use safeship_testkit::integrity::{
    admin, checkout_schema, create_history_table, database_secret, local_integrity,
    mount_completed_deployments, postgres,
};
use serde_json::Value;

#[tokio::test]
async fn an_on_demand_run_counts_then_finds_the_rows_a_bad_migration_deleted() {
    let moto = moto_endpoint();
    let sdk = sdk_config(&moto).await;
    let schema = checkout_schema().await;
    let secret = database_secret(&sdk, &postgres().user).await;
    let history = create_history_table(&aws_sdk_dynamodb::Client::new(&sdk)).await;
    let codedeploy = wiremock::MockServer::start().await;
    mount_completed_deployments(
        &codedeploy,
        &[("d-MIGRATE42", "Succeeded", chrono::Utc::now())],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        local_integrity(&example_policy(), &schema, &secret),
    )
    .unwrap();
    let table = safeship_testkit::emulators::unique("cli-idem");
    safeship_testkit::emulators::create_idempotency_table(
        &aws_sdk_dynamodb::Client::new(&sdk),
        &table,
    )
    .await;
    let run = |args: &'static [&'static str]| {
        let policy = policy.clone();
        let (moto, codedeploy, history, table) = (
            moto.clone(),
            codedeploy.uri(),
            history.clone(),
            table.clone(),
        );
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_safeship"))
                .arg("--policy")
                .arg(&policy)
                .args(args)
                .env_clear()
                .envs([
                    ("AWS_ENDPOINT_URL", moto.as_str()),
                    ("AWS_ENDPOINT_URL_CODEDEPLOY", codedeploy.as_str()),
                    ("AWS_REGION", REGION),
                    ("AWS_ACCESS_KEY_ID", "testing"),
                    ("AWS_SECRET_ACCESS_KEY", "testing"),
                    ("SAFESHIP_IDEMPOTENCY_TABLE", table.as_str()),
                    ("SAFESHIP_INTEGRITY_TABLE", history.as_str()),
                ])
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .expect("safeship runs")
        }
    };
    // The first run is the baseline: clean, exit 0.
    let first = run(&["integrity", "run", "--database", "checkout-db"]).await;
    let said = String::from_utf8_lossy(&first.stdout).into_owned();
    assert_eq!(
        first.status.code(),
        Some(0),
        "{said}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(said.starts_with("checkout-db: clean ("), "{said}");

    // A bad migration deletes a third of the orders: the next run names the table, exit 1.
    admin()
        .await
        .batch_execute(&format!("DELETE FROM {schema}.orders WHERE id % 3 = 0"))
        .await
        .unwrap();
    let second = run(&["--json", "integrity", "run"]).await;
    assert_eq!(
        second.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let answer: Value = serde_json::from_slice(&second.stdout).expect("only JSON on stdout");
    let report = &answer["runs"][0];
    assert_eq!(report["status"], "anomalies", "{report}");
    let orders = format!("{schema}.orders");
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["table"] == orders.as_str()),
        "{report}"
    );

    // Not a checked database: a usage error naming the checked ones.
    let out = run(&["integrity", "run", "--database", "orders-db"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("(checked: checkout-db)"));
}
