//! The idempotency store against moto's DynamoDB (conditional PutItem, GetItem, DeleteItem).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use safeship::idempotency::{Claim, IdempotencyStore, Once};
use safeship_testkit::emulators::{create_idempotency_table, moto_endpoint, sdk_config, unique};
use serde_json::json;

async fn store() -> IdempotencyStore {
    let sdk = sdk_config(&moto_endpoint()).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = unique("idem");
    create_idempotency_table(&ddb, &table).await;
    IdempotencyStore::new(ddb, table, "test")
}

#[tokio::test]
async fn second_claim_sees_in_progress_then_completed_outcome() {
    let store = store().await;
    assert_eq!(store.claim("alarm@t1").await.unwrap(), Claim::Acquired);
    assert!(matches!(
        store.claim("alarm@t1").await.unwrap(),
        Claim::InProgress { .. }
    ));
    store
        .complete("alarm@t1", &json!({"stopped": "d-1"}))
        .await
        .unwrap();
    assert_eq!(
        store.claim("alarm@t1").await.unwrap(),
        Claim::Completed(json!({"stopped": "d-1"}))
    );
    // Another key is independent.
    assert_eq!(store.claim("alarm@t2").await.unwrap(), Claim::Acquired);
}

#[tokio::test]
async fn once_runs_the_work_a_single_time_across_duplicate_deliveries() {
    let store = store().await;
    let runs = AtomicU32::new(0);
    let work = || async {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok::<_, safeship::Error>("rolled back d-1".to_string())
    };
    assert_eq!(
        store.once("k", work).await.unwrap(),
        Once::Ran("rolled back d-1".into())
    );
    assert_eq!(
        store.once("k", work).await.unwrap(),
        Once::AlreadyDone("rolled back d-1".into())
    );
    assert_eq!(
        store.once("k", work).await.unwrap(),
        Once::AlreadyDone("rolled back d-1".into())
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn failed_work_releases_the_claim_so_the_retry_runs_it() {
    let store = store().await;
    let failed: Result<Once<String>, safeship::Error> = store
        .once("k", || async {
            Err(safeship::Error::unexpected("test", "k", "boom"))
        })
        .await;
    assert!(failed.unwrap_err().to_string().contains("boom"));
    let retried = store
        .once("k", || async { Ok::<_, safeship::Error>(7) })
        .await
        .unwrap();
    assert_eq!(retried, Once::Ran(7));
}

#[tokio::test]
async fn an_expired_lease_can_be_taken_over() {
    // A worker that died mid-way leaves IN_PROGRESS behind; after its lease, a retry takes over.
    let store = store().await.with_lease(Duration::from_secs(0));
    assert_eq!(store.claim("k").await.unwrap(), Claim::Acquired);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(store.claim("k").await.unwrap(), Claim::Acquired);
}

#[tokio::test]
async fn concurrent_deliveries_run_the_work_once() {
    let store = store().await;
    let runs = AtomicU32::new(0);
    let attempt = || {
        store.once("same-event", || async {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok::<_, safeship::Error>(())
        })
    };
    let (a, b, c) = tokio::join!(attempt(), attempt(), attempt());
    let outcomes = [a.unwrap(), b.unwrap(), c.unwrap()];
    assert_eq!(runs.load(Ordering::SeqCst), 1, "{outcomes:?}");
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, Once::Ran(())))
            .count(),
        1
    );
}

#[tokio::test]
async fn a_missing_table_is_an_error_naming_it() {
    let sdk = sdk_config(&moto_endpoint()).await;
    let store = IdempotencyStore::new(aws_sdk_dynamodb::Client::new(&sdk), "no-such-table", "test");
    let err = store.claim("k").await.unwrap_err().to_string();
    assert!(
        err.contains("dynamodb:PutItem (claim) on table no-such-table key test#k failed"),
        "{err}"
    );
}
