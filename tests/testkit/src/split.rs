//! One endpoint for a service that moto serves only in part: the operations moto lacks go to a
//! wiremock server (which asserts the exact request), everything else is forwarded to moto.
//!
//! The SDK sends all of a service's operations to one endpoint (`AWS_ENDPOINT_URL_<SERVICE>`), so
//! this split is how a test uses moto's real `GetDeployment` and wiremock's asserted
//! `PutLifecycleEventHookExecutionStatus` through the same CodeDeploy client.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::Router;

type Route = dyn Fn(&Parts) -> bool + Send + Sync;

/// What an endpoint changes on its way through: for emulator behaviour moto lacks but a story
/// needs (e.g. deployments that complete, [`crate::lifecycle::DeploymentLedger`]).
pub trait Adjust: Send + Sync {
    /// The body forwarded for `operation` (the last part of `x-amz-target`).
    fn request(&self, _operation: &str, body: Bytes) -> Bytes {
        body
    }
    /// The body answered for `operation`, given the body the caller sent.
    fn response(&self, _operation: &str, _request: &[u8], body: Bytes) -> Bytes {
        body
    }
}

struct Unchanged;
impl Adjust for Unchanged {}

struct Split {
    moto: String,
    mock: String,
    to_mock: Box<Route>,
    adjust: Arc<dyn Adjust>,
    client: reqwest::Client,
    waits: Arc<Mutex<Vec<Wait>>>,
}

/// One forwarded request: what it was, what it was answered and how long the caller waited.
#[derive(Debug, Clone)]
pub struct Wait {
    /// `x-amz-target` (JSON protocols), the query protocol's `Action` (RDS, SNS, CloudWatch),
    /// else `METHOD path` (REST protocols: AppConfig, Lambda).
    pub operation: String,
    /// The HTTP status answered (502 when the upstream could not be reached).
    pub status: u16,
    /// The request's body as sent.
    pub request: Bytes,
    pub start: Instant,
    pub end: Instant,
}

impl Wait {
    /// The operation's name alone: `PutEvents` of `AWSEvents.PutEvents`.
    pub fn name(&self) -> &str {
        self.operation.rsplit('.').next().unwrap_or(&self.operation)
    }

    /// Answered with a 2xx: the operation took effect.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

pub struct SplitEndpoint {
    addr: SocketAddr,
    waits: Arc<Mutex<Vec<Wait>>>,
}

impl SplitEndpoint {
    /// Requests for which `to_mock` is true go to `mock`, the rest to `moto`.
    pub async fn start(
        moto: &str,
        mock: &str,
        to_mock: impl Fn(&Parts) -> bool + Send + Sync + 'static,
    ) -> SplitEndpoint {
        Self::start_adjusted(moto, mock, to_mock, Arc::new(Unchanged)).await
    }

    /// As [`Self::start`], with `adjust` applied to what passes through.
    pub async fn start_adjusted(
        moto: &str,
        mock: &str,
        to_mock: impl Fn(&Parts) -> bool + Send + Sync + 'static,
        adjust: Arc<dyn Adjust>,
    ) -> SplitEndpoint {
        let waits = Arc::new(Mutex::new(Vec::new()));
        let split = Arc::new(Split {
            moto: moto.trim_end_matches('/').to_owned(),
            mock: mock.trim_end_matches('/').to_owned(),
            to_mock: Box::new(to_mock),
            adjust,
            client: reqwest::Client::new(),
            waits: waits.clone(),
        });
        let app = Router::new().fallback(forward).with_state(split);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        SplitEndpoint { addr, waits }
    }

    /// Everything to `upstream`: a pass-through that records how long each call took.
    pub async fn recording(upstream: &str) -> Self {
        Self::start(upstream, upstream, |_| false).await
    }

    /// JSON 1.1 services (CodeDeploy): by the operation in `x-amz-target`.
    pub async fn json_operations(
        moto: &str,
        mock: &str,
        operations: &'static [&'static str],
    ) -> Self {
        Self::json_operations_adjusted(moto, mock, operations, Arc::new(Unchanged)).await
    }

    /// As [`Self::json_operations`], with `adjust` applied to what passes through.
    pub async fn json_operations_adjusted(
        moto: &str,
        mock: &str,
        operations: &'static [&'static str],
        adjust: Arc<dyn Adjust>,
    ) -> Self {
        Self::start_adjusted(
            moto,
            mock,
            move |parts| {
                operations
                    .iter()
                    .any(|op| json_operation(parts) == Some(*op))
            },
            adjust,
        )
        .await
    }

    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests forwarded so far, with their timings.
    pub fn waits(&self) -> Vec<Wait> {
        self.waits.lock().unwrap().clone()
    }
}

async fn forward(State(split): State<Arc<Split>>, request: Request) -> Response {
    let start = Instant::now();
    let (parts, body) = request.into_parts();
    let sent = to_bytes(body, usize::MAX).await.unwrap_or_default();
    let operation = operation_of(&parts, &sent);
    let response = forward_parts(&split, parts, sent.clone()).await;
    split.waits.lock().unwrap().push(Wait {
        operation,
        status: response.status().as_u16(),
        request: sent,
        start,
        end: Instant::now(),
    });
    response
}

/// What a request asks for, in any of the protocols the SDK speaks.
fn operation_of(parts: &Parts, body: &[u8]) -> String {
    if let Some(target) = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
    {
        return target.to_owned();
    }
    let form = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if form {
        // Action names are plain letters, never percent-encoded.
        if let Some(action) = body
            .split(|b| *b == b'&')
            .find_map(|pair| pair.strip_prefix(b"Action="))
        {
            return String::from_utf8_lossy(action).into_owned();
        }
    }
    format!("{} {}", parts.method, parts.uri.path())
}

/// A JSON 1.1 request's operation: the last part of its `x-amz-target`.
fn json_operation(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
}

async fn forward_parts(split: &Split, parts: Parts, sent: Bytes) -> Response {
    let operation = json_operation(&parts).unwrap_or_default().to_owned();
    let body = split.adjust.request(&operation, sent.clone());
    let base = if (split.to_mock)(&parts) {
        &split.mock
    } else {
        &split.moto
    };
    let url = format!(
        "{base}{}",
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut out = split.client.request(parts.method.clone(), url).body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            out = out.header(name, value);
        }
    }
    match out.send().await {
        Ok(answer) => {
            let mut response = Response::builder().status(answer.status());
            for (name, value) in answer.headers() {
                // moto's development server closes every connection; AWS keeps them open, and
                // so does this endpoint, so a client does not pay a reconnect per call here.
                if name != "transfer-encoding" && name != "content-length" && name != "connection" {
                    response = response.header(name, value);
                }
            }
            let bytes = answer.bytes().await.unwrap_or_default();
            let bytes = split.adjust.response(&operation, &sent, bytes);
            response.body(Body::from(bytes)).unwrap()
        }
        Err(e) => Response::builder()
            .status(502)
            .body(Body::from(format!("split endpoint could not forward: {e}")))
            .unwrap(),
    }
}
