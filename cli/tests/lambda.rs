//! `safeship lambda rollback` against moto's Lambda (functions, published versions, aliases with
//! weighted routing; moto runs no code, none is needed here) and its IAM (the role a function
//! must name).

use std::process::Output;

use safeship_testkit::emulators::{moto_endpoint, sdk_config, unique, REGION};

/// A function with versions 1, 2 and 3 and an alias `live` on `live_on`, shifting `weight` of
/// the traffic to `weighted_to` when given.
async fn function(
    live_on: &str,
    weighted_to: Option<(&str, f64)>,
) -> (String, aws_sdk_lambda::Client) {
    let sdk = sdk_config(&moto_endpoint()).await;
    let role = aws_sdk_iam::Client::new(&sdk)
        .create_role()
        .role_name(unique("fn-role"))
        .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#)
        .send()
        .await
        .expect("moto CreateRole")
        .role
        .unwrap()
        .arn;
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let name = unique("checkout-api");
    let zip = empty_package();
    lambda
        .create_function()
        .function_name(&name)
        .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
        .role(role)
        .handler("bootstrap")
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(aws_sdk_lambda::primitives::Blob::new(zip.clone()))
                .build(),
        )
        .send()
        .await
        .expect("moto CreateFunction");
    for _ in 0..3 {
        lambda
            .update_function_code()
            .function_name(&name)
            .zip_file(aws_sdk_lambda::primitives::Blob::new(zip.clone()))
            .send()
            .await
            .expect("moto UpdateFunctionCode");
        lambda
            .publish_version()
            .function_name(&name)
            .send()
            .await
            .expect("moto PublishVersion");
    }
    let mut alias = lambda
        .create_alias()
        .function_name(&name)
        .name("live")
        .function_version(live_on);
    if let Some((to, weight)) = weighted_to {
        alias = alias.routing_config(
            aws_sdk_lambda::types::AliasRoutingConfiguration::builder()
                .additional_version_weights(to, weight)
                .build(),
        );
    }
    alias.send().await.expect("moto CreateAlias");
    (name, lambda)
}

/// A deployment package: an empty zip archive (its end-of-central-directory record alone). moto
/// runs no code, and the alias under test never invokes any.
fn empty_package() -> Vec<u8> {
    let mut zip = b"PK\x05\x06".to_vec();
    zip.resize(22, 0);
    zip
}

async fn run(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_safeship"))
        .args(args)
        .env_clear()
        .envs([
            ("AWS_ENDPOINT_URL", moto_endpoint().as_str()),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("safeship runs")
}

async fn live(
    lambda: &aws_sdk_lambda::Client,
    name: &str,
) -> aws_sdk_lambda::operation::get_alias::GetAliasOutput {
    lambda
        .get_alias()
        .function_name(name)
        .name("live")
        .send()
        .await
        .unwrap()
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn the_alias_goes_back_one_version_then_to_a_named_one_and_refuses_when_there_is_none() {
    let (name, lambda) = function("3", None).await;
    let out = run(&["lambda", "rollback", "--function", &name, "--alias", "live"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    assert!(
        said(&out).contains("moved from version 3 to 2"),
        "{}",
        said(&out)
    );
    assert_eq!(live(&lambda, &name).await.function_version(), Some("2"));

    let out = run(&[
        "lambda",
        "rollback",
        "--function",
        &name,
        "--alias",
        "live",
        "--to-version",
        "1",
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    assert_eq!(live(&lambda, &name).await.function_version(), Some("1"));

    // Nothing before version 1: refused, exit 1, the alias untouched.
    let out = run(&["lambda", "rollback", "--function", &name, "--alias", "live"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(
        said(&out).contains("no published version before 1"),
        "{}",
        said(&out)
    );
    assert_eq!(live(&lambda, &name).await.function_version(), Some("1"));

    let out = run(&[
        "lambda",
        "rollback",
        "--function",
        "no-such-function",
        "--alias",
        "live",
    ])
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(
        said(&out).contains("alias live of function no-such-function: no such function or alias"),
        "{}",
        said(&out)
    );
}

#[tokio::test]
async fn a_weighted_shift_in_progress_is_stopped_with_all_traffic_on_the_primary() {
    let (name, lambda) = function("2", Some(("3", 0.1))).await;
    let out = run(&["lambda", "rollback", "--function", &name, "--alias", "live"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    assert!(
        said(&out).contains("the shift to version 3 stopped; all traffic on version 2"),
        "{}",
        said(&out)
    );
    let alias = live(&lambda, &name).await;
    assert_eq!(alias.function_version(), Some("2"));
    let weights = alias
        .routing_config()
        .and_then(|r| r.additional_version_weights())
        .map(|w| w.len())
        .unwrap_or(0);
    assert_eq!(weights, 0, "{alias:?}");
}
