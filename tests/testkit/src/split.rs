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

type Observer = Arc<dyn Fn(&Wait) + Send + Sync>;

struct Split {
    /// A plain web service (a smoke target), not an AWS or Slack API: faults are answered as
    /// a web server answers them.
    web: std::sync::atomic::AtomicBool,
    tripwire: Mutex<Tripwire>,
    faults: Mutex<Faults>,
    observer: Mutex<Option<Observer>>,
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
    split: Arc<Split>,
}

/// When a crash happens, relative to the call it is armed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The call never reaches the service.
    Before,
    /// The service carried the call out; its answer is lost with the process.
    After,
}

type Crash = Arc<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Trip {
    /// Calls that change something, counted since the tripwire was armed.
    changes: usize,
    armed: Option<(usize, Phase, Crash)>,
    tripped: Option<String>,
}

/// A crash armed at the `n`th call that changes something (any write: not `Get*`, `List*`,
/// `Describe*`, `Query`, `Scan` or an HTTP `GET`), across the endpoints that share it: the
/// crash runs before the call is forwarded or after its answer came back, and the caller is
/// answered 502 (its process is gone by then). Every other call passes untouched.
#[derive(Clone, Default)]
pub struct Tripwire(Arc<Mutex<Trip>>);

impl Tripwire {
    /// Arms the crash at the `n`th change from now (0: the next one).
    pub fn arm(&self, n: usize, phase: Phase, crash: Crash) {
        let mut trip = self.0.lock().unwrap();
        *trip = Trip {
            changes: 0,
            armed: Some((n, phase, crash)),
            tripped: None,
        };
    }

    /// The changes counted since arming (how many a delivery makes, when it never tripped).
    pub fn changes(&self) -> usize {
        self.0.lock().unwrap().changes
    }

    /// The operation it tripped at, if it did.
    pub fn tripped(&self) -> Option<String> {
        self.0.lock().unwrap().tripped.clone()
    }

    /// Counts a call; the phase to crash in and the crash, if it is the armed one.
    fn count(&self, operation: &str, method: &axum::http::Method) -> Option<(Phase, Crash)> {
        if !changes_something(operation, method) {
            return None;
        }
        let mut trip = self.0.lock().unwrap();
        let n = trip.changes;
        trip.changes += 1;
        match trip.armed.take() {
            Some((at, phase, crash)) if at == n => {
                trip.tripped = Some(operation.to_owned());
                Some((phase, crash))
            }
            other => {
                trip.armed = other;
                None
            }
        }
    }
}

/// A fault an endpoint answers instead of the service, as AWS (or Slack) would answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// The service's throttling error (retryable).
    Throttling,
    /// HTTP 500.
    InternalError,
    /// HTTP 503.
    Unavailable,
    /// No answer for this long (longer than any client waits).
    Slow,
    /// The connection closed without an answer.
    Reset,
    /// The caller's role may not call the operation.
    AccessDenied,
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::Throttling,
        Fault::InternalError,
        Fault::Unavailable,
        Fault::Slow,
        Fault::Reset,
        Fault::AccessDenied,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Fault::Throttling => "throttled",
            Fault::InternalError => "HTTP 500",
            Fault::Unavailable => "HTTP 503",
            Fault::Slow => "too slow",
            Fault::Reset => "reset",
            Fault::AccessDenied => "access denied",
        }
    }

    /// The answer in the caller's protocol: JSON (`x-amz-target`), query (XML), REST JSON, or
    /// Slack's Web API.
    async fn answer(&self, parts: &Parts, web: bool) -> Response {
        // A Slack incoming webhook answers as a web server does, in words of its own.
        let webhook = parts.uri.path().starts_with("/services/");
        if web || webhook {
            let plain = |status: u16, text: &str| {
                let builder = Response::builder().status(status);
                let builder = if status == 429 {
                    builder.header("retry-after", "1")
                } else {
                    builder
                };
                builder.body(Body::from(text.to_owned())).unwrap()
            };
            return match self {
                Fault::Throttling => plain(429, "Too Many Requests"),
                Fault::InternalError => plain(500, "Internal Server Error"),
                Fault::Unavailable => plain(503, "Service Unavailable"),
                Fault::AccessDenied if webhook => plain(403, "invalid_token"),
                Fault::AccessDenied => plain(403, "Forbidden"),
                Fault::Slow => {
                    tokio::time::sleep(std::time::Duration::from_secs(120)).await;
                    plain(504, "too late")
                }
                Fault::Reset => panic!("injected fault: connection reset"),
            };
        }
        let json = parts.headers.contains_key("x-amz-target");
        let slack = parts.uri.path().starts_with("/api/");
        let form = parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        let error = |status: u16, code: &str, message: &str| {
            let builder = Response::builder().status(status);
            let body = if slack {
                format!(r#"{{"ok":false,"error":"{}"}}"#, code.to_lowercase())
            } else if form {
                format!("<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault</RequestId></ErrorResponse>")
            } else {
                format!(r#"{{"__type":"{code}","message":"{message}","Message":"{message}"}}"#)
            };
            let builder = if json {
                builder.header("content-type", "application/x-amz-json-1.1")
            } else if form {
                builder.header("content-type", "text/xml")
            } else {
                builder
                    .header("content-type", "application/json")
                    .header("x-amzn-errortype", code)
            };
            builder.body(Body::from(body)).unwrap()
        };
        match self {
            Fault::Throttling if slack => Response::builder()
                .status(429)
                .header("retry-after", "1")
                .body(Body::from("ratelimited"))
                .unwrap(),
            Fault::Throttling if form => error(400, "Throttling", "Rate exceeded"),
            Fault::Throttling => error(400, "ThrottlingException", "Rate exceeded"),
            Fault::InternalError => error(500, "InternalFailure", "We encountered an internal error"),
            Fault::Unavailable => error(503, "ServiceUnavailable", "Service unavailable"),
            Fault::AccessDenied if slack => error(200, "not_authed", "not authed"),
            Fault::AccessDenied => error(
                if form { 403 } else { 400 },
                if form { "AccessDenied" } else { "AccessDeniedException" },
                "User: arn:aws:sts::123456789012:assumed-role/safeship/function is not authorized to perform this operation",
            ),
            Fault::Slow => {
                tokio::time::sleep(std::time::Duration::from_secs(120)).await;
                error(500, "InternalFailure", "too late")
            }
            // The connection task ends without an answer (the panic is the fault, not a bug).
            Fault::Reset => panic!("injected fault: connection reset"),
        }
    }
}

/// A fault armed for one operation (its name as [`Wait::name`] gives it, or a REST path's
/// last segment), `times` calls long (`None`: every call), across the endpoints sharing it.
#[derive(Clone, Default)]
pub struct Faults(Arc<Mutex<Option<ArmedFault>>>);

/// The operation, the fault, how many of its calls pass before the fault, and how many calls
/// are left to meet it (`None`: every one).
type ArmedFault = (String, Fault, usize, Option<usize>);

impl Faults {
    pub fn arm(&self, operation: &str, fault: Fault, times: Option<usize>) {
        self.arm_after(operation, 0, fault, times);
    }

    /// As [`Self::arm`], with the first `passing` calls of `operation` answered as usual (the
    /// second `PutItem` of a once-only step is its record, the first its claim).
    pub fn arm_after(&self, operation: &str, passing: usize, fault: Fault, times: Option<usize>) {
        *self.0.lock().unwrap() = Some((operation.to_owned(), fault, passing, times));
    }

    /// The fault for a call of `operation`, if one is armed and left.
    pub(crate) fn take(&self, operation: &str) -> Option<Fault> {
        let mut armed = self.0.lock().unwrap();
        let (wanted, fault, passing, times) = armed.as_mut()?;
        if short_name(operation) != wanted.as_str() {
            return None;
        }
        if *passing > 0 {
            *passing -= 1;
            return None;
        }
        match times {
            Some(0) => None,
            Some(n) => {
                *n -= 1;
                Some(*fault)
            }
            None => Some(*fault),
        }
    }
}

/// An operation's short name: `PutItem` of `DynamoDB_20120810.PutItem`; for a REST call, its
/// method and path with ids left out (`POST hostedconfigurationversions`).
pub fn short_name(operation: &str) -> String {
    // A Slack incoming webhook's path is its secret: named for what it is.
    if operation.starts_with("POST /services/") {
        return "POST webhook".into();
    }
    match operation.split_once(' ') {
        Some((method, path)) => {
            let last = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or(path);
            // A trailing number is an id (`deployments/1`): name the collection.
            let named = if last.chars().all(|c| c.is_ascii_digit()) {
                path.rsplit('/').nth(1).unwrap_or(last)
            } else {
                last
            };
            format!("{method} {named}")
        }
        None => operation.rsplit('.').next().unwrap_or(operation).to_owned(),
    }
}

/// A call that writes: everything but reads.
fn changes_something(operation: &str, method: &axum::http::Method) -> bool {
    if let Some((verb, _path)) = operation.split_once(' ') {
        return verb != "GET" && verb != "HEAD";
    }
    let name = operation.rsplit('.').next().unwrap_or(operation);
    let reads = ["Get", "List", "Describe", "BatchGet", "Query", "Scan"];
    method != axum::http::Method::GET && !reads.iter().any(|r| name.starts_with(r))
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
            web: std::sync::atomic::AtomicBool::new(false),
            tripwire: Mutex::new(Tripwire::default()),
            faults: Mutex::new(Faults::default()),
            observer: Mutex::new(None),
            moto: moto.trim_end_matches('/').to_owned(),
            mock: mock.trim_end_matches('/').to_owned(),
            to_mock: Box::new(to_mock),
            adjust,
            client: reqwest::Client::new(),
            waits: waits.clone(),
        });
        let app = Router::new().fallback(forward).with_state(split.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        SplitEndpoint { addr, waits, split }
    }

    /// `observer` is told of every call once it is answered (an emulation keeping state of what
    /// passed through).
    pub fn observe(&self, observer: Observer) {
        *self.split.observer.lock().unwrap() = Some(observer);
    }

    /// From now on this endpoint's calls may meet `faults` (shared by several endpoints).
    pub fn share_faults(&self, faults: &Faults) {
        *self.split.faults.lock().unwrap() = faults.clone();
    }

    /// From now on this endpoint's calls count on (and may trip) `tripwire`; several endpoints
    /// given one tripwire count their calls together.
    pub fn share_tripwire(&self, tripwire: &Tripwire) {
        *self.split.tripwire.lock().unwrap() = tripwire.clone();
    }

    /// Everything to `upstream`: a pass-through that records how long each call took.
    pub async fn recording(upstream: &str) -> Self {
        Self::start(upstream, upstream, |_| false).await
    }

    /// As [`Self::recording`], in front of a plain web service (a smoke target): a fault is
    /// answered as a web server would (429 with `Retry-After`, 500, 503, 403).
    pub async fn web(upstream: &str) -> Self {
        let endpoint = Self::recording(upstream).await;
        endpoint
            .split
            .web
            .store(true, std::sync::atomic::Ordering::Relaxed);
        endpoint
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
    let faults = split.faults.lock().unwrap().clone();
    if let Some(fault) = faults.take(&operation_of(&parts, &sent)) {
        let web = split.web.load(std::sync::atomic::Ordering::Relaxed);
        return fault.answer(&parts, web).await;
    }
    // Carried out to its end and recorded even when the caller goes away mid-call (a process
    // killed while the call was on its way): the service did it, so it is counted.
    tokio::spawn(forward_and_record(split, parts, sent, start))
        .await
        .unwrap_or_else(|e| {
            Response::builder()
                .status(502)
                .body(Body::from(format!("split endpoint: {e}")))
                .unwrap()
        })
}

async fn forward_and_record(
    split: Arc<Split>,
    parts: Parts,
    sent: Bytes,
    start: Instant,
) -> Response {
    let operation = operation_of(&parts, &sent);
    let tripwire = split.tripwire.lock().unwrap().clone();
    let crash = tripwire.count(&operation, &parts.method);
    // The status recorded is the service's: 502 when the call never reached it.
    let (response, status) = match crash {
        Some((Phase::Before, crash)) => {
            crash();
            (crashed(), 502)
        }
        Some((Phase::After, crash)) => {
            let carried_out = forward_parts(&split, parts, sent.clone()).await;
            crash();
            (crashed(), carried_out.status().as_u16())
        }
        None => {
            let response = forward_parts(&split, parts, sent.clone()).await;
            let status = response.status().as_u16();
            (response, status)
        }
    };
    let call = Wait {
        operation,
        status,
        request: sent,
        start,
        end: Instant::now(),
    };
    let observer = split.observer.lock().unwrap().clone();
    if let Some(observer) = observer {
        observer(&call);
    }
    split.waits.lock().unwrap().push(call);
    response
}

fn crashed() -> Response {
    Response::builder()
        .status(502)
        .body(Body::from("the caller crashed (tripwire)"))
        .unwrap()
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
