//! The nightly integrity check end to end: the real PostgreSQL for every query path, moto for
//! Secrets Manager, DynamoDB (history, idempotency) and EventBridge (guard events), wiremock for
//! CodeDeploy's completed deployments.

use std::time::Duration;

use chrono::{DateTime, Utc};
use integrity_check::metrics::MetricsSink;
use integrity_check::{Deps, IntegrityConfig};
use safeship::guard::Outcome;
use safeship_testkit::emulators::{common_with_policy, moto_endpoint, sdk_config};
use safeship_testkit::emulators::{
    create_idempotency_table, function_binary, sample_event, unique, REGION,
};
use safeship_testkit::guard_inbox::GuardInbox;
use safeship_testkit::integrity::{
    admin, create_history_table, database_secret, fresh_schema, mount_completed_deployments,
    policy, policy_of, postgres, silent_server,
};
use safeship_testkit::runtime::{Answer, LocalRuntime};
use serde_json::{json, Value};
use tokio::time::Instant;
use wiremock::MockServer;

struct World {
    deps: Deps,
    inbox: GuardInbox,
    codedeploy: MockServer,
    metrics: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    schema: String,
}

/// A policy's `integrity` section for this test's schema: `connection` lines and the rest.
async fn world_with(connection: &str, rules: &str) -> World {
    let schema = fresh_schema();
    let doc = policy(&format!(
        "      connection:\n{connection}\n{}",
        rules.replace("@s", &schema)
    ));
    world_of(&doc, schema).await
}

/// A world for a whole policy document; `schema` is the test's own (`@s` in its SQL).
async fn world_of(doc: &str, schema: String) -> World {
    let sdk = sdk_config(&moto_endpoint()).await;
    let doc = doc.replace("@s", &schema);
    let mut common = common_with_policy(&sdk, &doc).await;
    let inbox = GuardInbox::create(&sdk).await;
    common.guard = inbox.publisher();
    let table = create_history_table(&aws_sdk_dynamodb::Client::new(&sdk)).await;
    let metrics = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut deps = Deps::new(
        common,
        IntegrityConfig {
            table,
            ca_file: None,
            margin: Duration::from_secs(1),
            history_days: 30,
        },
        MetricsSink::Memory(metrics.clone()),
    );
    let codedeploy = MockServer::start().await;
    deps.codedeploy = aws_sdk_codedeploy::Client::from_conf(
        aws_sdk_codedeploy::Config::from(&sdk)
            .to_builder()
            .endpoint_url(codedeploy.uri())
            .build(),
    );
    World {
        deps,
        inbox,
        codedeploy,
        metrics,
        schema,
    }
}

async fn secret_connection(user: &str) -> String {
    let sdk = sdk_config(&moto_endpoint()).await;
    let arn = database_secret(&sdk, user).await;
    format!("        secret-arn: {arn}\n        sslmode: disable")
}

async fn world(rules: &str) -> World {
    let pg = postgres();
    world_with(&secret_connection(&pg.user).await, rules).await
}

fn night(day: u32) -> DateTime<Utc> {
    format!("2026-11-{day:02}T03:00:00Z").parse().unwrap()
}

impl World {
    async fn sql(&self, sql: &str) {
        admin()
            .await
            .batch_execute(&sql.replace("@s", &self.schema))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    /// One scheduled run for `night`, returning checkout-db's report.
    async fn run(&self, key: &str, at: DateTime<Utc>) -> Value {
        self.run_within(key, at, Duration::from_secs(60)).await
    }

    async fn run_within(&self, key: &str, at: DateTime<Utc>, budget: Duration) -> Value {
        let answer = integrity_check::run(&self.deps, key, at, Instant::now() + budget)
            .await
            .unwrap_or_else(|e| panic!("integrity run: {e}"));
        answer["runs"][0].clone()
    }

    fn table(&self, name: &str) -> String {
        format!("{}.{name}", self.schema)
    }
}

const SHOP: &str = "CREATE SCHEMA @s;
    CREATE TABLE @s.orders (id int PRIMARY KEY, customer_id int, shipped_at timestamptz);
    INSERT INTO @s.orders SELECT g, g % 97, CASE WHEN g % 2 = 0 THEN now() END
        FROM generate_series(1, 2000) g;
    CREATE TABLE @s.order_items (id int, order_id int);
    INSERT INTO @s.order_items SELECT g, 1 + g % 2000 FROM generate_series(1, 3000) g;";

fn shop_rules() -> &'static str {
    "      schemas: [@s]
      tables:
        @s.orders: {not-null: [customer_id], max-null-rate: {shipped_at: 0.6}}
      queries:
        - name: orphaned-order-items
          sql: SELECT count(*) FROM @s.order_items i LEFT JOIN @s.orders o ON o.id = i.order_id WHERE o.id IS NULL
"
}

#[tokio::test]
async fn the_first_run_is_the_baseline_and_a_lost_5_percent_names_the_deployment_since() {
    let w = world(shop_rules()).await;
    w.sql(SHOP).await;

    let first = w.run("night-1", night(1)).await;
    assert_eq!(first["baseline"], true, "{first}");
    assert_eq!(first["status"], "clean", "{first}");
    let orders = &first["tables"][1];
    assert_eq!(orders["table"], w.table("orders"));
    assert_eq!(orders["rows"], 2000);
    assert_eq!(
        orders["nulls"],
        json!({"customer_id": 0, "shipped_at": 1000})
    );
    assert_eq!(first["tables"][0]["rows"], 3000);
    assert_eq!(
        first["queries"],
        json!([{"name": "orphaned-order-items", "value": 0, "duration-ms": first["queries"][0]["duration-ms"]}])
    );
    assert!(
        w.inbox.events().await.is_empty(),
        "a clean baseline alerts nobody"
    );
    // the deployments since the last run are not asked for on the first run
    assert!(w.codedeploy.received_requests().await.unwrap().is_empty());

    // A migration deployed in the day deletes 5% of the orders (and so orphans their items).
    mount_completed_deployments(
        &w.codedeploy,
        &[
            (
                "d-BADMIGRATE",
                "Succeeded",
                night(1) + chrono::Duration::hours(10),
            ),
            // completed before the baseline: not "since"
            (
                "d-OLDER00001",
                "Succeeded",
                night(1) - chrono::Duration::hours(2),
            ),
        ],
    )
    .await;
    w.sql("DELETE FROM @s.orders WHERE id % 20 = 0").await;
    let second = w.run("night-2", night(2)).await;
    assert_eq!(second["baseline"], false);
    assert_eq!(second["previous-run-at"], "2026-11-01T03:00:00Z");
    assert_eq!(second["status"], "anomalies", "{second}");
    assert_eq!(
        second["deployments-since"],
        json!([{"id": "d-BADMIGRATE", "application": "checkout", "deployment-group": "checkout-prod",
                "status": "Succeeded", "completed-at": "2026-11-01T13:00:00Z"}])
    );
    let findings: Vec<String> = second["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{}: {}",
                f["table"].as_str().unwrap(),
                f["description"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        findings,
        [
            format!(
                "{}: rows fell 5.0% since the last run (2000 → 1900), over the 1% bound",
                w.table("orders")
            ),
            "orphaned-order-items: orphaned-order-items returned 150; it must return 0".to_string(),
        ]
    );
    assert_eq!(second["tables"][1]["previous-rows"], 2000);

    // CodeDeploy was asked for the group's completed deployments created since the day before
    let asked: Vec<Value> = w
        .codedeploy
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.headers.get("x-amz-target").unwrap() == "CodeDeploy_20141006.ListDeployments")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0]["applicationName"], "checkout");
    assert_eq!(asked[0]["deploymentGroupName"], "checkout-prod");
    assert_eq!(
        asked[0]["includeOnlyStatuses"],
        json!(["Succeeded", "Failed", "Stopped"])
    );
    assert_eq!(
        asked[0]["createTimeRange"]["start"].as_f64(),
        Some((night(1) - chrono::Duration::days(1)).timestamp() as f64)
    );

    // the run is one guard event: both findings, worst first, naming the deployment
    let events = w.inbox.events().await;
    assert_eq!(events.len(), 1, "one run, one event: {events:?}");
    let e = &events[0];
    assert_eq!(e.deployment_id.as_deref(), Some("d-BADMIGRATE"));
    let Outcome::IntegrityFindings {
        since_deployments,
        database,
        findings,
        more,
        problems,
    } = &e.outcome
    else {
        panic!("{e:?}")
    };
    assert_eq!(since_deployments, &["d-BADMIGRATE"]);
    assert_eq!(database, "checkout-db");
    assert_eq!(findings.len(), 2, "{findings:?}");
    let tables: Vec<&str> = findings.iter().map(|f| f.table.as_str()).collect();
    assert_eq!(tables, [w.table("orders").as_str(), "orphaned-order-items"]);
    assert_eq!((*more, problems), (0, &None));

    // the metrics: row counts, null counts, the query and the run, in EMF
    let docs: Vec<Value> = w
        .metrics
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let row_count = docs
        .iter()
        .rev()
        .find(|d| d["Table"] == w.table("orders") && d.get("RowCount").is_some())
        .unwrap();
    assert_eq!(row_count["RowCount"], 1900);
    assert_eq!(
        row_count["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "Safeship/Integrity"
    );
    assert_eq!(docs.last().unwrap()["Anomalies"], 2);

    // a redelivered schedule event does nothing again
    let again = w.run("night-2", night(2)).await;
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["report"]["findings"], 2);
    assert!(w.inbox.events().await.is_empty());
}

#[tokio::test]
async fn nulls_in_a_required_column_are_an_anomaly() {
    let w = world(shop_rules()).await;
    w.sql(SHOP).await;
    w.run("n1", night(3)).await;
    // no deployment since: the anomaly names none
    mount_completed_deployments(&w.codedeploy, &[]).await;
    w.sql("UPDATE @s.orders SET customer_id = NULL WHERE id <= 20")
        .await;
    let report = w.run("n2", night(4)).await;
    assert_eq!(report["findings"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["findings"][0]["column"], "customer_id");
    assert_eq!(
        report["findings"][0]["description"],
        "customer_id holds 20 NULL(s) (1.00% of 2000 rows); it must hold none"
    );
    let events = w.inbox.events().await;
    assert!(
        matches!(&events[0].outcome, Outcome::IntegrityFindings { findings, .. }
            if matches!(&findings[..], [f] if f.column.as_deref() == Some("customer_id")))
    );
}

#[tokio::test]
async fn large_tables_are_estimated_from_a_sample_and_say_so() {
    let w = world(
        "      estimate-above-rows: 10000
      sample-rows: 2000
      tables:
        @s.events: {not-null: [kind]}
        @s.ledger: {exact: true}
",
    )
    .await;
    w.sql("CREATE SCHEMA @s;
        CREATE TABLE @s.events (id int, kind text);
        INSERT INTO @s.events SELECT g, CASE WHEN g % 10 = 0 THEN NULL ELSE 'click' END FROM generate_series(1, 100000) g;
        CREATE TABLE @s.ledger AS SELECT g AS id FROM generate_series(1, 50000) g;
        ANALYZE @s.events; ANALYZE @s.ledger;")
        .await;
    let report = w.run("n1", night(5)).await;
    let events = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == w.table("events"))
        .unwrap();
    assert_eq!(events["estimated"], true, "{report}");
    let rows = events["rows"].as_i64().unwrap();
    assert!(
        (95_000..=105_000).contains(&rows),
        "reltuples estimate {rows}"
    );
    let sampled = events["sample-rows"].as_i64().unwrap();
    assert!(sampled > 0 && sampled < 20_000, "sampled {sampled} rows");
    let null_rate = events["nulls"]["kind"].as_f64().unwrap() / rows as f64;
    assert!((0.05..0.15).contains(&null_rate), "null rate {null_rate}");
    assert!(report["findings"][0]["description"]
        .as_str()
        .unwrap()
        .ends_with(&format!("(estimated from a sample of {sampled} rows)")));
    let ledger = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == w.table("ledger"))
        .unwrap();
    assert_eq!(
        (ledger["estimated"].clone(), ledger["rows"].clone()),
        (json!(false), json!(50000))
    );
}

#[tokio::test]
async fn a_statement_timeout_on_one_table_leaves_the_others_reported() {
    let w = world("      schemas: [@s]\n      statement-timeout-ms: 400\n").await;
    w.sql(
        "CREATE SCHEMA @s;
        CREATE TABLE @s.a AS SELECT 1 AS x; CREATE TABLE @s.b AS SELECT 1 AS x;
        CREATE TABLE @s.locked AS SELECT 1 AS x;",
    )
    .await;
    // A migration holds an exclusive lock on one table for the whole run.
    let holder = admin().await;
    holder
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {}.locked IN ACCESS EXCLUSIVE MODE",
            w.schema
        ))
        .await
        .unwrap();
    let report = w.run("n1", night(6)).await;
    holder.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(report["status"], "incomplete", "{report}");
    let counted: Vec<&str> = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(counted, [w.table("a"), w.table("b")]);
    assert_eq!(
        report["failed"],
        json!([{"check": w.table("locked"), "error": "statement timeout: not counted within 400 ms"}])
    );
    let events = w.inbox.events().await;
    assert_eq!(events.len(), 1);
    let Outcome::IntegrityRunFailed { error, .. } = &events[0].outcome else {
        panic!("{events:?}")
    };
    assert!(error.contains("locked: statement timeout"), "{error}");
}

#[tokio::test]
async fn connection_refused_is_a_failed_run_and_an_alert() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let pg = postgres();
    let connection = format!(
        "{}\n        host: 127.0.0.1\n        port: {port}",
        secret_connection(&pg.user).await
    );
    let w = world_with(&connection, "      schemas: [public]\n").await;
    let report = w.run("n1", night(7)).await;
    assert_eq!(report["status"], "failed");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!(
            "database checkout-db: connecting: 127.0.0.1:{port}/"
        )),
        "{error}"
    );
    assert!(
        error.to_lowercase().contains("connection refused"),
        "{error}"
    );
    let events = w.inbox.events().await;
    assert!(
        matches!(&events[..], [e] if matches!(&e.outcome, Outcome::IntegrityRunFailed { error: e2, .. } if e2 == error))
    );
    let docs = w.metrics.lock().unwrap().clone();
    let run: Value = serde_json::from_str(docs.last().unwrap()).unwrap();
    assert_eq!(run["RunFailed"], 1);
}

#[tokio::test]
async fn an_authentication_failure_says_so_and_never_shows_the_password() {
    let w = world_with(
        &secret_connection("no_such_role").await,
        "      schemas: [public]\n",
    )
    .await;
    let report = w.run("n1", night(8)).await;
    assert_eq!(report["status"], "failed");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("FATAL 28000") && error.contains("no_such_role"),
        "{error}"
    );
    assert!(!error.contains("not-checked-by-trust-auth"), "{error}");
}

#[tokio::test]
async fn a_dropped_connection_costs_one_check_and_the_rest_are_counted() {
    let w = world(
        "      schemas: [@s]
      concurrency: 1
      queries:
        - {name: slow-orphans, sql: SELECT count(*) FROM pg_sleep(30)}
",
    )
    .await;
    w.sql(
        "CREATE SCHEMA @s; CREATE TABLE @s.a AS SELECT 1 AS x; CREATE TABLE @s.b AS SELECT 1 AS x;",
    )
    .await;
    // The database drops the connection while the slow query runs (a failover, a restart).
    let killer = tokio::spawn(async {
        let admin = admin().await;
        for _ in 0..200 {
            let killed = admin
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                     WHERE application_name = 'safeship-integrity-check' AND query LIKE '%pg_sleep(30)%'",
                    &[],
                )
                .await
                .unwrap()
                .get::<_, i64>(0);
            if killed > 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    });
    let report = w.run("n1", night(9)).await;
    assert!(
        killer.await.unwrap(),
        "the slow query was seen and terminated"
    );
    assert_eq!(report["failed"][0]["check"], "slow-orphans", "{report}");
    assert!(
        report["failed"][0]["error"]
            .as_str()
            .unwrap()
            .starts_with("connection lost while counting"),
        "{report}"
    );
    assert_eq!(report["tables"].as_array().unwrap().len(), 2, "{report}");
}

#[tokio::test]
async fn unknown_tables_columns_and_broken_queries_are_configuration_errors_and_the_rest_runs() {
    let w = world(
        "      tables:
        @s.orders: {not-null: [customer_id, customer_uuid]}
        @s.ghosts: {}
      queries:
        - {name: typo, sql: SELECT count(*) FROM @s.order_itemz}
",
    )
    .await;
    w.sql(SHOP).await;
    let report = w.run("n1", night(10)).await;
    assert_eq!(report["status"], "incomplete");
    assert_eq!(report["tables"].as_array().unwrap().len(), 1);
    assert_eq!(report["tables"][0]["nulls"], json!({"customer_id": 0}));
    let errors: Vec<&str> = report["configuration-errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].contains(".ghosts: no table"), "{errors:?}");
    assert!(
        errors[1].contains("no column \"customer_uuid\""),
        "{errors:?}"
    );
    assert!(
        errors[2].starts_with("queries.typo: ERROR 42P01"),
        "{errors:?}"
    );
}

#[tokio::test]
async fn the_deadline_names_what_it_cut_off() {
    let w = world(
        "      schemas: [@s]
      concurrency: 1
      queries:
        - {name: endless, sql: SELECT count(*) FROM pg_sleep(30)}
",
    )
    .await;
    w.sql("CREATE SCHEMA @s; CREATE TABLE @s.a AS SELECT 1 AS x;")
        .await;
    let started = std::time::Instant::now();
    let report = w
        .run_within("n1", night(11), Duration::from_millis(800))
        .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        report["unfinished"],
        json!(["endless", w.table("a")]),
        "{report}"
    );
    assert_eq!(report["status"], "incomplete");
}

#[tokio::test]
async fn tls_require_and_iam_authentication_connect_and_verify_full_checks_the_certificate() {
    // The local server's own certificate (self-signed, issued to its host name, not 127.0.0.1).
    let cert_file: String = admin()
        .await
        .query_one("SHOW ssl_cert_file", &[])
        .await
        .unwrap()
        .get(0);
    let pg = postgres();
    let sdk = sdk_config(&moto_endpoint()).await;
    let iam = safeship::policy::DbConnection {
        host: Some(pg.host.clone()),
        port: Some(pg.port),
        dbname: Some(pg.dbname.clone()),
        secret_arn: None,
        iam_user: Some(pg.user.clone()),
        sslmode: safeship::policy::SslMode::Require,
        ca_file: None,
    };
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let target = integrity_check::connect::target("checkout-db", &iam, None, &secrets, &sdk)
        .await
        .unwrap();
    let client = target
        .connect("checkout-db", Duration::from_secs(5))
        .await
        .unwrap();
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "sslmode require: the connection is encrypted");

    let verify = safeship::policy::DbConnection {
        sslmode: safeship::policy::SslMode::VerifyFull,
        ca_file: Some(cert_file),
        ..iam
    };
    let target = integrity_check::connect::target("checkout-db", &verify, None, &secrets, &sdk)
        .await
        .unwrap();
    let err = target
        .connect("checkout-db", Duration::from_secs(5))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.to_lowercase().contains("certificate"),
        "verify-full refuses a name mismatch: {err}"
    );
}

/// The `connection:` lines of a database that accepts connections and never answers.
async fn silent_connection(port: u16) -> String {
    let pg = postgres();
    format!(
        "{}\n        host: 127.0.0.1\n        port: {port}",
        secret_connection(&pg.user).await
    )
}

#[tokio::test]
async fn a_database_that_accepts_and_never_answers_fails_its_run_by_the_deadline_naming_the_step() {
    let (port, silent) = silent_server().await;
    let w = world_with(&silent_connection(port).await, "      schemas: [public]\n").await;
    let started = std::time::Instant::now();
    let report = tokio::time::timeout(
        Duration::from_secs(20),
        w.run_within("n1", night(12), Duration::from_millis(1_500)),
    )
    .await
    .expect("the run ends by its deadline, not when the database answers");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(silent.accepted() >= 1, "the login reached the server");
    assert_eq!(report["status"], "failed", "{report}");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!(
            "database checkout-db: connecting: 127.0.0.1:{port}/"
        )) && error.contains("no answer before the run's deadline"),
        "{error}"
    );
    // The alert: a guard event naming the database and the step, and the RunFailed metric.
    let events = w.inbox.events().await;
    assert!(
        matches!(&events[..], [e] if matches!(&e.outcome,
            Outcome::IntegrityRunFailed { database, error: said } if database == "checkout-db" && said == error)),
        "{events:?}"
    );
    let docs = w.metrics.lock().unwrap().clone();
    let run: Value = serde_json::from_str(docs.last().unwrap()).unwrap();
    assert_eq!(run["RunFailed"], 1);
}

const TWO_TABLES: &str =
    "CREATE SCHEMA @s; CREATE TABLE @s.a AS SELECT 1 AS x; CREATE TABLE @s.b AS SELECT 1 AS x;";

/// The `integrity:` section lines of a database reached through `connection`.
fn section(connection: &str, rules: &str) -> String {
    format!("      connection:\n{connection}\n{rules}")
}

#[tokio::test]
async fn one_hanging_database_does_not_starve_the_healthy_one() {
    let (port, _silent) = silent_server().await;
    let pg = postgres();
    // The hanging database sorts first: checked one after another it took the whole deadline.
    let doc = policy_of(&[
        (
            "a-stuck-db",
            &section(&silent_connection(port).await, "      schemas: [public]\n"),
        ),
        (
            "b-healthy-db",
            &section(&secret_connection(&pg.user).await, "      schemas: [@s]\n"),
        ),
    ]);
    let w = world_of(&doc, fresh_schema()).await;
    w.sql(TWO_TABLES).await;
    let answer = tokio::time::timeout(
        Duration::from_secs(20),
        integrity_check::run(
            &w.deps,
            "n1",
            night(13),
            Instant::now() + Duration::from_secs(3),
        ),
    )
    .await
    .expect("the run ends by its deadline")
    .unwrap();
    let runs = answer["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{answer}");
    assert_eq!(runs[0]["database"], "a-stuck-db");
    assert_eq!(runs[0]["status"], "failed", "{answer}");
    assert_eq!(runs[1]["database"], "b-healthy-db");
    assert_eq!(runs[1]["status"], "clean", "{answer}");
    let counted: Vec<&str> = runs[1]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(counted, [w.table("a"), w.table("b")]);
}

#[tokio::test]
async fn an_anomaly_that_cannot_be_published_fails_the_run_and_the_retry_publishes_it_with_the_same_id(
) {
    let mut w = world(shop_rules()).await;
    w.sql(SHOP).await;
    w.sql("UPDATE @s.orders SET customer_id = NULL WHERE id <= 20")
        .await;
    // EventBridge refuses the events: the bus does not exist.
    let inbox = w.deps.common.guard.clone();
    w.deps.common.guard = safeship::guard::GuardPublisher::new(
        aws_sdk_eventbridge::Client::new(&sdk_config(&moto_endpoint()).await),
        unique("no-such-bus"),
    );
    let err = integrity_check::run(
        &w.deps,
        "n1",
        night(14),
        Instant::now() + Duration::from_secs(30),
    )
    .await
    .expect_err("an anomaly nobody hears of is no success")
    .to_string();
    assert!(err.contains("events:PutEvents"), "{err}");
    assert!(w.inbox.events().await.is_empty());

    // The retry publishes the recorded events, without counting again.
    w.deps.common.guard = inbox;
    w.sql("UPDATE @s.orders SET customer_id = NULL WHERE id <= 1000")
        .await;
    let retry = w.run("n1", night(14)).await;
    assert_eq!(retry["duplicate"], true, "{retry}");
    let events = w.inbox.events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    let run = night(14).format("%Y-%m-%dT%H:%M:%SZ");
    assert_eq!(
        events[0].id,
        format!("integrity:checkout-db:{run}:findings")
    );
    let Outcome::IntegrityFindings { findings, .. } = &events[0].outcome else {
        panic!("{events:?}")
    };
    let description = &findings[0].description;
    assert!(
        description.starts_with("customer_id holds 20 NULL(s)"),
        "the first attempt's finding, not a recount: {description}"
    );
    // A third delivery publishes nothing again.
    let again = w.run("n1", night(14)).await;
    assert_eq!(again["duplicate"], true);
    assert!(w.inbox.events().await.is_empty());
}

/// The real binary under the local Runtime API: one database accepts and never answers, the
/// other is healthy. The invocation answers before its deadline, with the stuck one failed
/// (naming the step) and the healthy one counted; the log and a guard event say so.
#[tokio::test]
async fn the_binary_answers_before_its_deadline_when_a_database_never_answers() {
    let (port, _silent) = silent_server().await;
    let pg = postgres();
    let schema = fresh_schema();
    let doc = policy_of(&[
        (
            "a-stuck-db",
            &section(&silent_connection(port).await, "      schemas: [public]\n"),
        ),
        (
            "b-healthy-db",
            &section(&secret_connection(&pg.user).await, "      schemas: [@s]\n"),
        ),
    ])
    .replace("@s", &schema);
    admin()
        .await
        .batch_execute(&TWO_TABLES.replace("@s", &schema))
        .await
        .unwrap();
    let sdk = sdk_config(&moto_endpoint()).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let idempotency = unique("idem");
    create_idempotency_table(&ddb, &idempotency).await;
    let history = create_history_table(&ddb).await;
    let inbox = GuardInbox::create(&sdk).await;
    let env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", moto_endpoint()),
        ("AWS_REGION", REGION.into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("SAFESHIP_POLICY", doc),
        ("SAFESHIP_IDEMPOTENCY_TABLE", idempotency),
        ("SAFESHIP_INTEGRITY_TABLE", history),
        ("SAFESHIP_EVENT_BUS", inbox.bus.clone()),
        ("SAFESHIP_INTEGRITY_MARGIN_MS", "2500".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let runtime = LocalRuntime::start().await;
    let mut process =
        runtime.spawn_function(&function_binary("integrity-check"), "integrity-check", &env);
    runtime
        .ready(Duration::from_secs(20))
        .await
        .expect("integrity-check started");
    let mut event = sample_event("scheduled-event.json");
    event["id"] = json!(unique("schedule"));
    let deadline = Duration::from_secs(7);
    let started = std::time::Instant::now();
    let answer = runtime.invoke(event, deadline).await;
    let took = started.elapsed();
    assert!(took < deadline, "answered after {took:?}");
    let Answer::Response(body) = answer else {
        panic!("no answer: {answer:?}")
    };
    let runs = body["runs"].as_array().unwrap();
    assert_eq!(runs[0]["database"], "a-stuck-db", "{body}");
    assert_eq!(runs[0]["status"], "failed", "{body}");
    let error = runs[0]["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!(
            "database a-stuck-db: connecting: 127.0.0.1:{port}/"
        )) && error.contains("no answer before the run's deadline"),
        "{error}"
    );
    assert_eq!(runs[1]["database"], "b-healthy-db");
    assert_eq!(runs[1]["status"], "clean", "{body}");
    assert_eq!(runs[1]["tables"].as_array().unwrap().len(), 2, "{body}");
    let events = inbox.events().await;
    assert!(
        matches!(&events[..], [e] if matches!(&e.outcome,
            Outcome::IntegrityRunFailed { database, error: said } if database == "a-stuck-db" && said == error)),
        "{events:?}"
    );
    process.kill().await.unwrap();
    let output = runtime.output_after_exit().await;
    assert!(
        output.contains("integrity run failed") && output.contains("a-stuck-db"),
        "{output}"
    );
}

/// The environment of the real integrity-check binary for `policy`, against moto.
fn binary_env(
    policy: String,
    idempotency: String,
    history: String,
    bus: String,
    margin_ms: u64,
) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", moto_endpoint()),
        ("AWS_REGION", REGION.into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("SAFESHIP_POLICY", policy),
        ("SAFESHIP_IDEMPOTENCY_TABLE", idempotency),
        ("SAFESHIP_INTEGRITY_TABLE", history),
        ("SAFESHIP_EVENT_BUS", bus),
        ("SAFESHIP_INTEGRITY_MARGIN_MS", margin_ms.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Waits until one of the integrity check's counts is blocked on a lock; `false` after `timeout`.
async fn a_count_waits_on_a_lock(admin: &tokio_postgres::Client, timeout: Duration) -> bool {
    let until = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < until {
        let waiting: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE application_name = 'safeship-integrity-check' AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The real binary is killed while its count waits on a migration's lock. A delivery made while
/// it still holds the run is refused as in progress elsewhere (an error, so it is retried); the
/// delivery after the dead invocation's deadline, on a fresh process, runs the whole check once:
/// one run item in the history, each guard event once, and a further delivery is a duplicate.
#[tokio::test]
async fn a_retry_after_a_crash_of_the_binary_mid_run_finishes_the_run_exactly_once() {
    let pg = postgres();
    let schema = fresh_schema();
    let doc = policy(&format!(
        "      connection:\n{}\n      schemas: [@s]\n      concurrency: 1\n      tables:\n        @s.orders: {{not-null: [customer_id]}}\n",
        secret_connection(&pg.user).await
    ))
    .replace("@s", &schema);
    let admin_client = admin().await;
    admin_client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.orders (id int, customer_id int);
             INSERT INTO {schema}.orders SELECT g, CASE WHEN g > 3 THEN g END FROM generate_series(1, 50) g;
             CREATE TABLE {schema}.notes AS SELECT 1 AS x;"
        ))
        .await
        .unwrap();
    let sdk = sdk_config(&moto_endpoint()).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let idempotency = unique("idem");
    create_idempotency_table(&ddb, &idempotency).await;
    let history = create_history_table(&ddb).await;
    let inbox = GuardInbox::create(&sdk).await;
    let env = binary_env(doc, idempotency, history.clone(), inbox.bus.clone(), 1_000);
    let binary = function_binary("integrity-check");
    let runtime = std::sync::Arc::new(LocalRuntime::start().await);
    let mut event = sample_event("scheduled-event.json");
    event["id"] = json!(unique("schedule"));

    // A migration holds an exclusive lock on the orders table: the first run's count waits.
    let migration = admin().await;
    migration
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {schema}.orders IN ACCESS EXCLUSIVE MODE"
        ))
        .await
        .unwrap();
    let mut first = runtime.spawn_function(&binary, "integrity-check", &env);
    runtime
        .ready(Duration::from_secs(20))
        .await
        .expect("the first integrity-check process started");
    let first_deadline = Duration::from_secs(8);
    let delivered = std::time::Instant::now();
    let first_answer = tokio::spawn({
        let runtime = runtime.clone();
        let event = event.clone();
        async move { runtime.invoke(event, first_deadline).await }
    });
    assert!(
        a_count_waits_on_a_lock(&admin_client, Duration::from_secs(6)).await,
        "the first run's count waits on the migration's lock"
    );

    // A second process, and the same event delivered again while the first still holds the run.
    let spawned = std::time::Instant::now();
    let mut second = runtime.spawn_function(&binary, "integrity-check", &env);
    assert!(
        runtime
            .polled_since(spawned, 1, Duration::from_secs(20))
            .await,
        "the second integrity-check process started"
    );
    let meanwhile = runtime.invoke(event.clone(), Duration::from_secs(8)).await;
    assert!(
        delivered.elapsed() < first_deadline - Duration::from_secs(1),
        "the first invocation was still within its run when the second delivery answered ({:?})",
        delivered.elapsed()
    );
    let Answer::Error { error_type, .. } = &meanwhile else {
        panic!("a delivery while the run is held elsewhere is an error: {meanwhile:?}")
    };
    assert_eq!(
        error_type, "safeship.integrity-check.InProgressElsewhere",
        "{meanwhile:?}"
    );

    // The first process dies mid-count; then the migration ends.
    first.kill().await.unwrap();
    migration.batch_execute("ROLLBACK").await.unwrap();

    // Lambda's retry, after the dead invocation's deadline, on the live process.
    let retry_at = delivered + first_deadline + Duration::from_secs(1);
    tokio::time::sleep_until(tokio::time::Instant::from_std(retry_at)).await;
    let retry = runtime.invoke(event.clone(), Duration::from_secs(30)).await;
    let Answer::Response(body) = &retry else {
        panic!("the retry finishes the run: {retry:?}")
    };
    let run = &body["runs"][0];
    assert_eq!(run["database"], "checkout-db", "{body}");
    assert!(run.get("duplicate").is_none(), "{body}");
    assert_eq!(run["status"], "anomalies", "{body}");
    assert_eq!(run["run-at"], "2026-11-20T03:00:00Z", "{body}");
    let counted: Vec<(&str, i64)> = run["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["table"].as_str().unwrap(), t["rows"].as_i64().unwrap()))
        .collect();
    let orders = format!("{schema}.orders");
    let notes = format!("{schema}.notes");
    assert_eq!(
        counted,
        [(notes.as_str(), 1), (orders.as_str(), 50)],
        "{body}"
    );
    assert_eq!(run["findings"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(
        first_answer.await.unwrap(),
        Answer::Error {
            error_type: "Timeout".into(),
            error_message: format!("no answer within {first_deadline:?}"),
        },
        "the killed process never answered"
    );

    // Exactly one run item for that run time in the history.
    let items = ddb
        .query()
        .table_name(&history)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S("checkout-db#run".into()),
        )
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    let run_times: Vec<&str> = items
        .iter()
        .map(|i| i["sk"].as_s().unwrap().as_str())
        .collect();
    assert_eq!(run_times, ["2026-11-20T03:00:00.000Z"]);

    // Each of the run's guard events once.
    let events = inbox.events().await;
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        ["integrity:checkout-db:2026-11-20T03:00:00Z:findings"],
        "{events:?}"
    );
    assert!(
        matches!(&events[0].outcome, Outcome::IntegrityFindings { findings, .. }
            if findings.iter().any(|f| f.table == orders && f.column.as_deref() == Some("customer_id"))),
        "{events:?}"
    );

    // A further delivery is a duplicate and publishes nothing.
    let again = runtime.invoke(event, Duration::from_secs(30)).await;
    let Answer::Response(again) = &again else {
        panic!("a further delivery answers: {again:?}")
    };
    assert_eq!(again["runs"][0]["duplicate"], true, "{again}");
    assert!(inbox.events().await.is_empty());
    second.kill().await.unwrap();
}

/// A run whose history write fails, or whose record is lost after it counted, is counted again
/// by its retry; its metrics reach CloudWatch once, from the delivery whose run was recorded, and
/// a redelivery of the recorded run emits none.
#[tokio::test]
async fn a_run_retried_after_a_failed_record_emits_its_metrics_once() {
    let mut w = world(shop_rules()).await;
    w.sql(SHOP).await;
    let sdk = sdk_config(&moto_endpoint()).await;
    let through = safeship_testkit::split::SplitEndpoint::recording(&moto_endpoint()).await;
    let faults = safeship_testkit::split::Faults::default();
    through.share_faults(&faults);
    let ddb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::from(&sdk)
            .to_builder()
            .endpoint_url(through.uri())
            .build(),
    );
    w.deps.history =
        integrity_check::history::HistoryStore::new(ddb.clone(), &w.deps.config.table, 30);
    let lease = Duration::from_millis(300);
    w.deps.common.idempotency = safeship::idempotency::IdempotencyStore::new(
        ddb,
        &w.deps.common.config.idempotency_table,
        "integrity-check",
    )
    .with_lease(lease);
    let denied = safeship_testkit::split::Fault::AccessDenied;
    async fn attempt(w: &World) -> Result<Value, integrity_check::Error> {
        integrity_check::run(
            &w.deps,
            "n1",
            night(3),
            Instant::now() + Duration::from_secs(30),
        )
        .await
    }

    // The history is not written: the run is not done, and released for the retry.
    faults.arm("BatchWriteItem", denied, Some(1));
    let err = attempt(&w)
        .await
        .expect_err("a run whose history is not kept is not done");
    assert!(err.to_string().contains("dynamodb:BatchWriteItem"), "{err}");
    // Counted and written, but its record (the step's second PutItem) is refused: the claim
    // lapses and the retry counts again.
    faults.arm_after("PutItem", 1, denied, Some(1));
    let err = attempt(&w)
        .await
        .expect_err("a run whose record is lost is not done");
    assert!(
        err.to_string().contains("dynamodb:PutItem (complete)"),
        "{err}"
    );
    assert!(
        w.metrics.lock().unwrap().is_empty(),
        "nothing emitted for a run that is not recorded"
    );
    tokio::time::sleep(lease + Duration::from_millis(200)).await;

    let retry = w.run("n1", night(3)).await;
    assert!(
        retry.get("duplicate").is_none(),
        "the retry counted: {retry}"
    );
    let again = w.run("n1", night(3)).await;
    assert_eq!(again["duplicate"], true, "{again}");
    let docs: Vec<Value> = w
        .metrics
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let orders = docs
        .iter()
        .filter(|d| d["Table"] == w.table("orders") && d.get("RowCount").is_some())
        .count();
    let runs = docs
        .iter()
        .filter(|d| d.get("RunDuration").is_some())
        .count();
    assert_eq!((orders, runs), (1, 1), "each datapoint once: {docs:?}");
}
