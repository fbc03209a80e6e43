//! The idempotency store against moto's DynamoDB (conditional PutItem, GetItem, DeleteItem).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use safeship::idempotency::{within_invocation, Claim, IdempotencyStore, Once};
use safeship_testkit::emulators::{create_idempotency_table, moto_endpoint, sdk_config, unique};
use serde_json::json;

async fn store() -> IdempotencyStore {
    let sdk = sdk_config(&moto_endpoint()).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = unique("idem");
    create_idempotency_table(&ddb, &table).await;
    IdempotencyStore::new(ddb, table, "test")
}

fn acquired(claim: &Claim) -> bool {
    matches!(claim, Claim::Acquired { .. })
}

#[tokio::test]
async fn second_claim_sees_in_progress_then_completed_outcome() {
    let store = store().await;
    assert!(acquired(&store.claim("alarm@t1").await.unwrap()));
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
    assert!(acquired(&store.claim("alarm@t2").await.unwrap()));
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
async fn a_dead_invocations_claim_is_taken_over_once_its_lease_runs_out() {
    // A worker that died mid-way leaves IN_PROGRESS behind and renews it no more; a retry after
    // the lease takes the work over and does it (a fixed 15-minute lease made it answer
    // "in progress" and do nothing).
    let store = store().await.with_lease(Duration::from_millis(300));
    assert!(acquired(&store.claim("k").await.unwrap()));
    assert!(matches!(
        store.claim("k").await.unwrap(),
        Claim::InProgress { .. }
    ));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let retried = store
        .once("k", || async {
            Ok::<_, safeship::Error>("done by the retry".to_string())
        })
        .await
        .unwrap();
    assert_eq!(retried, Once::Ran("done by the retry".to_string()));
}

#[tokio::test]
async fn a_claim_never_outlasts_the_invocation_that_took_it() {
    // Default lease (30 s), but the claiming invocation's deadline is 300 ms away: once that
    // has passed, the invocation is gone and the claim is free.
    let store = store().await;
    let deadline_ms = chrono::Utc::now().timestamp_millis() as u64 + 300;
    let claim = within_invocation(deadline_ms, store.claim("k"))
        .await
        .unwrap();
    assert!(acquired(&claim));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(acquired(&store.claim("k").await.unwrap()));
}

#[tokio::test]
async fn a_live_claim_is_an_error_for_the_other_delivery_never_a_success() {
    // The holder keeps working past several leases (it renews); a delivery meanwhile fails, so
    // Lambda delivers it again later, and does not answer "duplicate" for work not yet done.
    let store = store().await.with_lease(Duration::from_millis(300));
    let holder = store.once("k", || async {
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        Ok::<_, safeship::Error>("done".to_string())
    });
    let other = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        store
            .once("k", || async {
                Ok::<_, safeship::Error>("done twice".to_string())
            })
            .await
    };
    let (held, other) = tokio::join!(holder, other);
    assert_eq!(held.unwrap(), Once::Ran("done".to_string()));
    let err = other.unwrap_err();
    assert_eq!(err.kind(), "InProgressElsewhere", "{err}");
    assert!(
        err.to_string()
            .contains("another invocation holds this work until"),
        "{err}"
    );
    // Afterwards a redelivery gets the recorded outcome.
    assert_eq!(
        store
            .once("k", || async {
                Ok::<_, safeship::Error>("done twice".to_string())
            })
            .await
            .unwrap(),
        Once::AlreadyDone("done".to_string())
    );
}

#[tokio::test]
async fn work_that_panics_releases_its_claim_for_the_retry() {
    let store = store().await;
    let panicked: Result<Once<u32>, safeship::Error> = store
        .once("k", || async { panic!("attempt to allocate 64 GB") })
        .await;
    let err = panicked.unwrap_err();
    assert_eq!(err.kind(), "Panicked");
    assert!(
        err.to_string().contains("attempt to allocate 64 GB"),
        "{err}"
    );
    let retried = store
        .once("k", || async { Ok::<_, safeship::Error>(7) })
        .await
        .unwrap();
    assert_eq!(retried, Once::Ran(7));
}

#[tokio::test]
async fn a_claim_taken_over_stops_the_work_instead_of_doing_it_twice() {
    let sdk = sdk_config(&moto_endpoint()).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = unique("idem");
    create_idempotency_table(&ddb, &table).await;
    let store =
        IdempotencyStore::new(ddb.clone(), &table, "test").with_lease(Duration::from_millis(300));
    let finished = AtomicU32::new(0);
    let outcome: Result<Once<()>, safeship::Error> = store
        .once("k", || async {
            // Meanwhile the lease lapsed (say DynamoDB was out of reach) and another delivery
            // took the key over under its own owner.
            ddb.put_item()
                .table_name(&table)
                .item(
                    "pk",
                    aws_sdk_dynamodb::types::AttributeValue::S("test#k".into()),
                )
                .item(
                    "status",
                    aws_sdk_dynamodb::types::AttributeValue::S("IN_PROGRESS".into()),
                )
                .item(
                    "owner",
                    aws_sdk_dynamodb::types::AttributeValue::S("someone-else".into()),
                )
                .item(
                    "lease_until_ms",
                    aws_sdk_dynamodb::types::AttributeValue::N(i64::MAX.to_string()),
                )
                .send()
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
            finished.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .await;
    assert_eq!(outcome.unwrap_err().kind(), "ClaimLost");
    assert_eq!(finished.load(Ordering::SeqCst), 0, "the work was stopped");
    // The new holder's claim was not released by the loser.
    assert!(matches!(
        store.claim("k").await.unwrap(),
        Claim::InProgress { .. }
    ));
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
    let outcomes = [a, b, c];
    assert_eq!(runs.load(Ordering::SeqCst), 1, "{outcomes:?}");
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, Ok(Once::Ran(()))))
            .count(),
        1
    );
    // The others were told to come back, not that it was done.
    assert!(outcomes
        .iter()
        .filter(|o| o.is_err())
        .all(|o| o.as_ref().unwrap_err().kind() == "InProgressElsewhere"));
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

#[tokio::test]
async fn a_table_that_never_answers_fails_the_claim_before_the_invocations_deadline() {
    // A DynamoDB endpoint that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let sdk = sdk_config(&endpoint).await;
    let store = IdempotencyStore::new(aws_sdk_dynamodb::Client::new(&sdk), "t", "test");
    let deadline_ms = chrono::Utc::now().timestamp_millis() as u64 + 1_500;
    let started = std::time::Instant::now();
    let outcome: Result<Once<()>, safeship::Error> =
        within_invocation(deadline_ms, store.once("k", || async { Ok(()) })).await;
    let err = outcome.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "answered after the deadline: {:?}",
        started.elapsed()
    );
    assert!(
        err.to_string().contains("dynamodb:PutItem (claim) on table t key test#k failed: no answer before the invocation's deadline"),
        "{err}"
    );
}

#[tokio::test]
async fn work_still_running_at_the_deadline_is_stopped_and_its_claim_released() {
    // A dependency that never answers must not keep the invocation from answering: the work is
    // stopped shortly before the deadline, and the retry finds the claim free.
    let store = store().await;
    let deadline_ms = chrono::Utc::now().timestamp_millis() as u64 + 1_200;
    let started = std::time::Instant::now();
    let outcome: Result<Once<()>, safeship::Error> = within_invocation(
        deadline_ms,
        store.once("k", || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        }),
    )
    .await;
    let err = outcome.unwrap_err();
    assert_eq!(err.kind(), "Unfinished", "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(1_200),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        store
            .once("k", || async { Ok::<_, safeship::Error>(()) })
            .await
            .unwrap(),
        Once::Ran(())
    );
}

#[tokio::test]
async fn a_renewal_that_hangs_neither_holds_the_work_up_nor_delays_the_cut_off() {
    use wiremock::matchers::header;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    // DynamoDB as wiremock: the claim and the release answer, every renewal hangs.
    let ddb = MockServer::start().await;
    let answer = |body: &str| {
        ResponseTemplate::new(200)
            .insert_header("content-type", "application/x-amz-json-1.0")
            .set_body_string(body.to_owned())
    };
    for op in ["PutItem", "DeleteItem"] {
        Mock::given(header(
            "x-amz-target",
            format!("DynamoDB_20120810.{op}").as_str(),
        ))
        .respond_with(answer("{}"))
        .mount(&ddb)
        .await;
    }
    Mock::given(header("x-amz-target", "DynamoDB_20120810.UpdateItem"))
        .respond_with(answer("{}").set_delay(Duration::from_secs(60)))
        .mount(&ddb)
        .await;
    let sdk = sdk_config(&ddb.uri()).await;
    // Renewals every second; the invocation ends 1.6 s from now, its work is cut off at 1.1 s.
    let store = IdempotencyStore::new(aws_sdk_dynamodb::Client::new(&sdk), "t", "test")
        .with_lease(Duration::from_secs(3));
    let deadline_ms = chrono::Utc::now().timestamp_millis() as u64 + 1_600;
    let started = std::time::Instant::now();
    let outcome: Result<Once<()>, safeship::Error> = within_invocation(
        deadline_ms,
        store.once("k", || async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(())
        }),
    )
    .await;
    assert_eq!(outcome.unwrap_err().kind(), "Unfinished");
    // Before, the renewal at 1 s ran in the loop's body and held the cut-off until it gave up.
    assert!(
        started.elapsed() < Duration::from_millis(1_600),
        "answered after the deadline: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_taken_over_claim_keeps_the_time_of_the_first_claim_across_takeovers() {
    let store = store().await.with_lease(Duration::from_millis(300));
    let Claim::Acquired { held: first, .. } = store.claim("hook:h1").await.unwrap() else {
        panic!("a fresh key is acquired")
    };
    assert!(!first.taken_over);
    // The holder dies; a retry takes over after its lease, then dies too; a third takes over.
    for retry in 1..=2 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let Claim::Acquired { held, .. } = store.claim("hook:h1").await.unwrap() else {
            panic!("retry {retry}: a lapsed claim is taken over")
        };
        assert!(held.taken_over, "retry {retry}");
        assert_eq!(
            held.since.timestamp_millis(),
            first.since.timestamp_millis(),
            "retry {retry} counts from the first claim, not its own"
        );
    }
    // A key whose work was given back (released after an error) starts afresh.
    let Claim::Acquired { owner, .. } = store.claim("hook:h2").await.unwrap() else {
        panic!("a fresh key is acquired")
    };
    let released_at = chrono::Utc::now();
    store.release("hook:h2", &owner).await.unwrap();
    let Claim::Acquired { held, .. } = store.claim("hook:h2").await.unwrap() else {
        panic!("a released key is acquired")
    };
    assert!(!held.taken_over && held.since >= released_at - chrono::Duration::milliseconds(5));
}
