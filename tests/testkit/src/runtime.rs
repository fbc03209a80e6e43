//! A local implementation of the Lambda Runtime API, so the real function binaries run here as
//! they run in Lambda: the process polls `/runtime/invocation/next`, we hand it an event, and it
//! posts its response or error back.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, Notify};

/// What a function answered to one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Response(Value),
    Error {
        error_type: String,
        error_message: String,
    },
}

/// How much of a function's output is kept for [`LocalRuntime::output_after_exit`].
const OUTPUT_KEPT: usize = 4 << 20;

struct Pending {
    request_id: String,
    payload: Value,
    deadline: Duration,
}

#[derive(Default)]
struct Shared {
    output_bytes: AtomicU64,
    output: Mutex<Vec<u8>>,
    drains: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    queue: Mutex<VecDeque<Pending>>,
    queued: Notify,
    waiting: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    init_error: Mutex<Option<Answer>>,
    init_failed: Notify,
    first_poll: Mutex<Option<Instant>>,
    /// Every `/next` call so far, by when it came (several processes may poll one runtime).
    polls: Mutex<Vec<Instant>>,
    polled: Notify,
    /// When each request was handed to the function and when its answer came back.
    handed: Mutex<HashMap<String, Instant>>,
    answered: Mutex<HashMap<String, Instant>>,
}

/// When the function got an event and when it answered (for the benchmark).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub handed: Instant,
    pub answered: Instant,
}

pub struct LocalRuntime {
    addr: SocketAddr,
    shared: Arc<Shared>,
    next_id: std::sync::atomic::AtomicU64,
}

impl LocalRuntime {
    pub async fn start() -> LocalRuntime {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind runtime API");
        let addr = listener.local_addr().expect("runtime API address");
        tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("runtime API server")
        });
        LocalRuntime {
            addr,
            shared,
            next_id: Default::default(),
        }
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn api(&self) -> String {
        self.addr.to_string()
    }

    /// Starts a function binary against this runtime, as Lambda would.
    pub fn spawn_function(&self, binary: &Path, name: &str, env: &[(String, String)]) -> Child {
        self.spawn_wrapped(&[], binary, name, env)
    }

    /// As [`Self::spawn_function`], with the binary run under `wrapper` (the benchmark's
    /// profiling runs it under valgrind).
    pub fn spawn_wrapped(
        &self,
        wrapper: &[String],
        binary: &Path,
        name: &str,
        env: &[(String, String)],
    ) -> Child {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", self.api())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        // Drained, so a talkative function never blocks on a full pipe; kept for the tests that
        // read what a function printed, and counted for the benchmark.
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let shared = self.shared.clone();
            let drain = tokio::spawn(async move {
                let mut pipe = pipe;
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n @ 1..) = pipe.read(&mut buf).await {
                    shared.output_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    let mut kept = shared.output.lock().unwrap();
                    if kept.len() < OUTPUT_KEPT {
                        kept.extend_from_slice(&buf[..n]);
                    }
                }
            });
            self.shared.drains.lock().unwrap().push(drain);
        }
        child
    }

    /// What Lambda does when a function's process dies mid-invocation, as a callback for
    /// whoever kills it: every invocation handed out and not answered yet is answered with
    /// `Runtime.ExitError`.
    pub fn on_exit(&self) -> impl Fn() + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || {
            let in_flight: Vec<String> = shared.handed.lock().unwrap().keys().cloned().collect();
            for id in in_flight {
                let waiting = shared.waiting.lock().unwrap().remove(&id);
                if let Some(tx) = waiting {
                    let _ = tx.send(Answer::Error {
                        error_type: "Runtime.ExitError".into(),
                        error_message: "the function's process exited during the invocation".into(),
                    });
                }
            }
        }
    }

    /// Bytes the function has written to stdout and stderr (its logs) so far.
    pub fn output_bytes(&self) -> u64 {
        self.shared.output_bytes.load(Ordering::Relaxed)
    }

    /// Everything the function wrote to stdout and stderr (the first 4 MiB), once it has exited
    /// and both pipes are read to their end.
    pub async fn output_after_exit(&self) -> String {
        let drains: Vec<_> = std::mem::take(&mut *self.shared.drains.lock().unwrap());
        for drain in drains {
            let _ = drain.await;
        }
        String::from_utf8_lossy(&self.shared.output.lock().unwrap()).into_owned()
    }

    /// Waits for the function's first poll (its init is done) or its init error.
    pub async fn ready(&self, timeout: Duration) -> Result<Instant, Answer> {
        let wait = async {
            loop {
                let polled = self.shared.polled.notified();
                let failed = self.shared.init_failed.notified();
                if let Some(at) = *self.shared.first_poll.lock().unwrap() {
                    return Ok(at);
                }
                if let Some(err) = self.shared.init_error.lock().unwrap().clone() {
                    return Err(err);
                }
                tokio::select! { _ = polled => {}, _ = failed => {} }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or_else(|_| {
                Err(Answer::Error {
                    error_type: "Timeout".into(),
                    error_message: format!("the function did not start within {timeout:?}"),
                })
            })
    }

    /// Waits until `count` polls of `/next` have come at or after `since`: a process started (or
    /// restarted) after `since` is ready, or `count` processes are. `false` after `timeout`.
    pub async fn polled_since(&self, since: Instant, count: usize, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let polled = self.shared.polled.notified();
                let n = self
                    .shared
                    .polls
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|at| **at >= since)
                    .count();
                if n >= count {
                    return;
                }
                polled.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// Delivers one event and waits for the answer. `deadline` is what the function is told it
    /// has (the `Lambda-Runtime-Deadline-Ms` header); we wait a little longer than that.
    pub async fn invoke(&self, payload: Value, deadline: Duration) -> Answer {
        self.invoke_timed(payload, deadline).await.0
    }

    /// As [`invoke`](Self::invoke), with when the event was handed over and answered.
    pub async fn invoke_timed(
        &self,
        payload: Value,
        deadline: Duration,
    ) -> (Answer, Option<Timing>) {
        let n = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let request_id = format!("req-{n:04}");
        let id = request_id.clone();
        let (tx, rx) = oneshot::channel();
        self.shared
            .waiting
            .lock()
            .unwrap()
            .insert(request_id.clone(), tx);
        self.shared.queue.lock().unwrap().push_back(Pending {
            request_id,
            payload,
            deadline,
        });
        self.shared.queued.notify_one();
        let answer = match tokio::time::timeout(deadline + Duration::from_secs(5), rx).await {
            Ok(Ok(answer)) => answer,
            _ => Answer::Error {
                error_type: "Timeout".into(),
                error_message: format!("no answer within {deadline:?}"),
            },
        };
        let handed = self.shared.handed.lock().unwrap().remove(&id);
        let answered = self.shared.answered.lock().unwrap().remove(&id);
        let timing = handed
            .zip(answered)
            .map(|(handed, answered)| Timing { handed, answered });
        (answer, timing)
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    shared
        .first_poll
        .lock()
        .unwrap()
        .get_or_insert_with(Instant::now);
    shared.polls.lock().unwrap().push(Instant::now());
    shared.polled.notify_waiters();
    let pending = loop {
        let queued = shared.queued.notified();
        if let Some(p) = shared.queue.lock().unwrap().pop_front() {
            break p;
        }
        queued.await;
    };
    shared
        .handed
        .lock()
        .unwrap()
        .insert(pending.request_id.clone(), Instant::now());
    let deadline_ms = chrono::Utc::now().timestamp_millis() + pending.deadline.as_millis() as i64;
    let mut headers = HeaderMap::new();
    headers.insert(
        "lambda-runtime-aws-request-id",
        pending.request_id.parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-deadline-ms",
        deadline_ms.to_string().parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:eu-west-1:123456789012:function:local"
            .parse()
            .unwrap(),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000".parse().unwrap(),
    );
    (headers, pending.payload.to_string())
}

async fn response(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    answer(&shared, &id, Answer::Response(value))
}

async fn error(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    answer(&shared, &id, parse_error(&body))
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    *shared.init_error.lock().unwrap() = Some(parse_error(&body));
    shared.init_failed.notify_waiters();
    StatusCode::ACCEPTED
}

fn answer(shared: &Shared, id: &str, answer: Answer) -> StatusCode {
    shared
        .answered
        .lock()
        .unwrap()
        .insert(id.to_owned(), Instant::now());
    match shared.waiting.lock().unwrap().remove(id) {
        Some(tx) => {
            let _ = tx.send(answer);
            StatusCode::ACCEPTED
        }
        None => StatusCode::NOT_FOUND,
    }
}

fn parse_error(body: &[u8]) -> Answer {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    Answer::Error {
        error_type: v["errorType"].as_str().unwrap_or("unknown").to_owned(),
        error_message: v["errorMessage"].as_str().unwrap_or("").to_owned(),
    }
}

/// A process's peak resident memory (`VmHWM`), in MiB.
pub fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    use anyhow::Context as _;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .context("no VmHWM in /proc status")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib / 1024.0)
}
