//! The integrity check's surroundings as tests, the demo and the benchmark build them: the
//! history table in moto DynamoDB, the database secret in moto Secrets Manager, a schema of its
//! own in the real PostgreSQL, and CodeDeploy's record of completed deployments (wiremock: moto's
//! deployments never complete).

use std::str::FromStr;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use chrono::{DateTime, Utc};
use serde_json::json;
use wiremock::matchers::header;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::emulators::{database_url, unique};

/// The history table as the SAM template declares it: `pk` and `sk`, both strings.
pub async fn create_history_table(ddb: &aws_sdk_dynamodb::Client) -> String {
    let name = unique("integrity");
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    let key = |n: &str, t| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .unwrap()
    };
    ddb.create_table()
        .table_name(&name)
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("moto CreateTable (integrity history)");
    name
}

/// Where `DATABASE_URL` points.
#[derive(Debug, Clone)]
pub struct Postgres {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
}

pub fn postgres() -> Postgres {
    let url = database_url();
    let config = tokio_postgres::Config::from_str(&url)
        .unwrap_or_else(|e| panic!("DATABASE_URL is not a PostgreSQL URL: {e}"));
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    Postgres {
        host,
        port: config.get_ports().first().copied().unwrap_or(5432),
        dbname: config.get_dbname().unwrap_or("postgres").to_owned(),
        user: config.get_user().unwrap_or("postgres").to_owned(),
    }
}

/// A plain connection for a test's own set-up and sabotage.
pub async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to PostgreSQL at DATABASE_URL: {e}"));
    tokio::spawn(connection);
    client
}

/// A fresh schema name (lowercase, PostgreSQL-safe).
pub fn fresh_schema() -> String {
    unique("it").replace('-', "_")
}

/// A fresh schema holding the checkout tables ([`SHOP`]), as the demo and the benchmark count them.
pub async fn checkout_schema() -> String {
    let schema = fresh_schema();
    admin()
        .await
        .batch_execute(&SHOP.replace("@s", &schema))
        .await
        .unwrap_or_else(|e| panic!("creating the checkout tables in schema {schema}: {e}"));
    schema
}

/// A Secrets Manager secret in RDS's shape for `user` (the test server trusts any password).
pub async fn database_secret(sdk: &SdkConfig, user: &str) -> String {
    let pg = postgres();
    database_secret_at(sdk, user, &pg.host, pg.port).await
}

/// As [`database_secret`], for a server at `host`:`port` (a proxy in front of the local one).
pub async fn database_secret_at(sdk: &SdkConfig, user: &str, host: &str, port: u16) -> String {
    let pg = postgres();
    aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(unique("safeship/integrity"))
        .secret_string(
            json!({"engine": "postgres", "host": host, "port": port, "username": user,
                   "password": "not-checked-by-trust-auth", "dbname": pg.dbname})
            .to_string(),
        )
        .send()
        .await
        .expect("moto CreateSecret")
        .arn
        .expect("a secret ARN")
}

/// A policy whose one database `checkout-db` is checked with `integrity` (YAML lines indented
/// under `integrity:`), tied to the group `checkout/checkout-prod`.
pub fn policy(integrity: &str) -> String {
    format!(
        "version: 1
applications:
  checkout:
    deployment-groups:
      checkout-prod:
        environment: prod
        snapshot: {{database: checkout-db}}
databases:
  checkout-db:
    kind: instance
    identifier: checkout-prod-db
    environment: prod
    integrity:
{integrity}"
    )
}

/// CodeDeploy (wiremock) knowing `deployments` of `application/group` as completed at the given
/// times: `ListDeployments` answers their ids, `BatchGetDeployments` describes them.
pub async fn mount_completed_deployments(
    server: &MockServer,
    deployments: &[(&str, &str, DateTime<Utc>)],
) {
    let ids: Vec<&str> = deployments.iter().map(|(id, _, _)| *id).collect();
    Mock::given(header(
        "x-amz-target",
        "CodeDeploy_20141006.ListDeployments",
    ))
    .respond_with(ResponseTemplate::new(200).set_body_json(json!({"deployments": ids})))
    .mount(server)
    .await;
    let infos: Vec<_> = deployments
        .iter()
        .map(|(id, status, completed)| {
            json!({
                "deploymentId": id,
                "applicationName": "checkout",
                "deploymentGroupName": "checkout-prod",
                "status": status,
                "createTime": (completed.timestamp() - 600) as f64,
                "completeTime": completed.timestamp() as f64,
            })
        })
        .collect();
    Mock::given(header(
        "x-amz-target",
        "CodeDeploy_20141006.BatchGetDeployments",
    ))
    .respond_with(ResponseTemplate::new(200).set_body_json(json!({"deploymentsInfo": infos})))
    .mount(server)
    .await;
}

/// The checkout tables of the demo and the benchmark: 2000 orders, 3000 order items.
pub const SHOP: &str = "CREATE SCHEMA @s;
    CREATE TABLE @s.orders (id int PRIMARY KEY, customer_id int, total_cents int, shipped_at timestamptz);
    INSERT INTO @s.orders SELECT g, 1 + g % 97, 100 * g, CASE WHEN g % 3 > 0 THEN now() END
        FROM generate_series(1, 2000) g;
    CREATE TABLE @s.order_items (id int, order_id int);
    INSERT INTO @s.order_items SELECT g, 1 + g % 2000 FROM generate_series(1, 3000) g;
    CREATE TABLE @s.schema_migrations (version int);";

/// Migration 042: a WHERE clause too wide and a column rewrite gone wrong.
pub const DAMAGE: &str = "DELETE FROM @s.orders WHERE id % 20 = 0;
    UPDATE @s.orders SET customer_id = NULL WHERE id BETWEEN 1 AND 30;
    INSERT INTO @s.schema_migrations VALUES (42);";

/// The example policy's integrity section pointed at the local PostgreSQL: its host, port and
/// database, the secret in moto, TLS without a CA (the local server's certificate is its own),
/// and the demo's schema for `public`.
pub fn local_integrity(policy: &str, schema: &str, secret_arn: &str) -> String {
    let pg = postgres();
    policy
        .replace(
            "checkout-prod-db.abcdefghijkl.eu-west-1.rds.amazonaws.com",
            &pg.host,
        )
        .replace("port: 5432\n", &format!("port: {}\n", pg.port))
        .replace("dbname: checkout\n", &format!("dbname: {}\n", pg.dbname))
        .replace(
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:safeship/checkout-db-AbCdEf",
            secret_arn,
        )
        .replace("sslmode: verify-full", "sslmode: require")
        .replace("[public]", &format!("[{schema}]"))
        .replace("public.", &format!("{schema}."))
}

/// A policy checking several databases, each `(name, integrity)` with its `integrity` section
/// (YAML lines indented under `integrity:`); none is tied to a deployment group.
pub fn policy_of(databases: &[(&str, &str)]) -> String {
    let mut doc = String::from("version: 1\ndatabases:\n");
    for (name, integrity) in databases {
        doc.push_str(&format!(
            "  {name}:\n    kind: instance\n    identifier: {name}\n    environment: prod\n    integrity:\n{integrity}"
        ));
    }
    doc
}

/// A server that accepts TCP connections and never answers (a database stuck in recovery, a
/// half-open proxy): every connection is held open, silently, until the returned task is
/// dropped or aborted. Answers its port.
pub async fn silent_server() -> (u16, SilentServer) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a silent server");
    let port = listener.local_addr().expect("its address").port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(socket);
        }
    });
    (port, SilentServer { task, accepted })
}

/// See [`silent_server`]; stops accepting when dropped.
pub struct SilentServer {
    task: tokio::task::JoinHandle<()>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl SilentServer {
    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
