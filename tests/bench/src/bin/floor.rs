//! The benchmark's floor: an empty `lambda_runtime` function (it echoes its event), built with the
//! same profile as the guard rails, so their figures can be read as ratios to it.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

// The runtime the guard rails use (one thread), so the ratios compare like with like.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}
