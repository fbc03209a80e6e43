//! A real PostgreSQL is reachable at DATABASE_URL, and the one-pass count the integrity check is
//! built on (row count and per-column NULL counts in a single scan) gives exact figures.

use safeship_e2e::emulators::{database_url, unique};

#[tokio::test]
async fn one_pass_row_and_null_counts() {
    let (client, connection) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to PostgreSQL at DATABASE_URL: {e}"));
    tokio::spawn(connection);
    let table = unique("orders").replace('-', "_");
    client
        .batch_execute(&format!(
            "CREATE TEMP TABLE {table} (id int, email text, shipped_at timestamptz);
             INSERT INTO {table} SELECT g, CASE WHEN g % 10 = 0 THEN NULL ELSE 'a@b' END,
                    CASE WHEN g % 4 = 0 THEN now() END FROM generate_series(1, 1000) g;"
        ))
        .await
        .unwrap();
    let row = client
        .query_one(
            &format!(
                "SELECT count(*), count(*) FILTER (WHERE email IS NULL), count(*) FILTER (WHERE shipped_at IS NULL) FROM {table}"
            ),
            &[],
        )
        .await
        .unwrap();
    let (rows, null_email, null_shipped): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((rows, null_email, null_shipped), (1000, 100, 750));
}
