//! `scripts/bench`: cold start, invocation latency, safeship's own time, peak memory and reaction
//! time of every function binary, measured beside an empty `lambda_runtime` function (the floor).
//!
//! Each function runs as Lambda runs it, under the local Runtime API. Every call it makes leaves
//! through a recording endpoint (moto, wiremock, the service under smoke test), so the time it
//! spent *waiting* is known; its own time is the invocation's latency minus those waits.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use safeship_testkit::appconfig::{self, flags_document, FlagProfile};
use safeship_testkit::checkout;
use safeship_testkit::emulators::{
    create_idempotency_table, example_policy, function_binary, moto_endpoint, sample_event,
    sdk_config, unique, REGION,
};
use safeship_testkit::integrity::{
    checkout_schema, create_history_table, database_secret, local_integrity, postgres,
};
use safeship_testkit::runtime::{peak_rss_mib, Answer, LocalRuntime, Timing};
use safeship_testkit::slack::Channels;
use safeship_testkit::split::{SplitEndpoint, Wait};
use serde::Serialize;
use serde_json::{json, Value};
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

const RUNS: usize = 5;
const WARM: usize = 10;
const DEADLINE: Duration = Duration::from_secs(60);

/// Everything the functions talk to, each behind a recording endpoint.
struct Emulated {
    endpoints: Vec<SplitEndpoint>,
    env: Vec<(String, String)>,
    deployment_id: String,
    _mocks: Vec<MockServer>,
    _channels: Channels,
}

impl Emulated {
    fn waits(&self) -> Vec<Wait> {
        self.endpoints
            .iter()
            .flat_map(SplitEndpoint::waits)
            .collect()
    }
}

async fn emulate() -> anyhow::Result<Emulated> {
    let moto = moto_endpoint();
    let sdk = sdk_config(&moto).await;

    let service = SplitEndpoint::recording(&checkout::serve_health("4").await).await;
    let flags = FlagProfile::create(&sdk, &flags_document(true)).await;
    let appconfig_mock = MockServer::start().await;
    flags.mount_accepting_deployments(&appconfig_mock).await;
    let codedeploy_mock = MockServer::start().await;
    Mock::given(header(
        "x-amz-target",
        "CodeDeploy_20141006.PutLifecycleEventHookExecutionStatus",
    ))
    .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
    .mount(&codedeploy_mock)
    .await;
    Mock::given(header("x-amz-target", "CodeDeploy_20141006.StopDeployment"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "Pending"})))
        .mount(&codedeploy_mock)
        .await;
    let lambda_mock = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "ok"})))
        .mount(&lambda_mock)
        .await;

    let codedeploy = aws_sdk_codedeploy::Client::new(&sdk);
    checkout::register_in_codedeploy(&codedeploy).await?;
    // A fresh group would be cleaner, but the example policy names checkout/checkout-prod: on a
    // reused moto, earlier deployments stay in flight and the rollback stops each of them.
    let deployment_id = checkout::lambda_deployment(&codedeploy, "4").await?;
    checkout::quiet_alarm(
        &aws_sdk_cloudwatch::Client::new(&sdk),
        "checkout-prod-5xx-rate",
    )
    .await?;
    let channels = Channels::create(&sdk).await;
    let table = unique("bench-idempotency");
    create_idempotency_table(&aws_sdk_dynamodb::Client::new(&sdk), &table).await;

    let moto_proxy = SplitEndpoint::recording(&moto).await;
    let codedeploy_split = SplitEndpoint::json_operations(
        &moto,
        &codedeploy_mock.uri(),
        &["PutLifecycleEventHookExecutionStatus", "StopDeployment"],
    )
    .await;
    let appconfig_split = appconfig::split_endpoint(&moto, &appconfig_mock).await;
    let lambda_proxy = SplitEndpoint::recording(&lambda_mock.uri()).await;
    // The nightly check counts the checkout tables in the local PostgreSQL.
    let shop = checkout_schema().await;
    let history = create_history_table(&aws_sdk_dynamodb::Client::new(&sdk)).await;
    let secret = database_secret(&sdk, &postgres().user).await;
    let policy = flags.into_policy(&local_integrity(
        &example_policy().replace("http://127.0.0.1:8081", &service.uri()),
        &shop,
        &secret,
    ));
    let mut env = vec![
        ("AWS_ENDPOINT_URL".into(), moto_proxy.uri()),
        ("AWS_ENDPOINT_URL_CODEDEPLOY".into(), codedeploy_split.uri()),
        ("AWS_ENDPOINT_URL_APPCONFIG".into(), appconfig_split.uri()),
        ("AWS_ENDPOINT_URL_LAMBDA".into(), lambda_proxy.uri()),
        ("AWS_REGION".into(), REGION.into()),
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ("SAFESHIP_POLICY".into(), policy),
        ("SAFESHIP_IDEMPOTENCY_TABLE".into(), table),
        ("SAFESHIP_INTEGRITY_TABLE".into(), history),
    ];
    env.extend(channels.env());
    Ok(Emulated {
        endpoints: vec![
            moto_proxy,
            codedeploy_split,
            appconfig_split,
            lambda_proxy,
            service,
        ],
        env,
        deployment_id,
        _mocks: vec![appconfig_mock, codedeploy_mock, lambda_mock],
        _channels: channels,
    })
}

/// The event for a function's `n`th invocation: each one new (a fresh hook execution, a fresh
/// alarm transition), so every invocation does the full work rather than the duplicate path.
fn event(function: &str, n: usize, deployment_id: &str) -> Value {
    match function {
        "traffic-hook" => {
            let mut e = sample_event("codedeploy-lifecycle-before-allow-traffic.json");
            e["DeploymentId"] = json!(deployment_id);
            e["LifecycleEventHookExecutionId"] = json!(unique("bench-hook"));
            e
        }
        "alarm-rollback" => {
            let mut e = sample_event("alarm-eventbridge-metric.json");
            let at = chrono::Utc::now() + chrono::Duration::milliseconds(n as i64);
            e["detail"]["state"]["timestamp"] =
                json!(at.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string());
            e
        }
        "predeploy-snapshot" => {
            let mut e = sample_event("predeploy-snapshot-direct.json");
            e["deployment_id"] = json!(format!("d-BENCH{n:05}"));
            e
        }
        "deploy-notify" => {
            let mut e = sample_event("codedeploy-deployment-start.json");
            e["detail"]["deploymentId"] = json!(format!("d-BENCH{n:05}"));
            e
        }
        "integrity-check" => {
            let mut e = sample_event("scheduled-event.json");
            e["id"] = json!(unique("bench-schedule"));
            e["time"] = json!((chrono::Utc::now() + chrono::Duration::seconds(n as i64))
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string());
            e
        }
        _ => json!({"ping": n}),
    }
}

/// The part of [start, end] covered by the waits (overlapping waits counted once).
fn waited(waits: &[Wait], start: Instant, end: Instant) -> Duration {
    let mut spans: Vec<(Instant, Instant)> = waits
        .iter()
        .filter(|w| w.end > start && w.start < end)
        .map(|w| (w.start.max(start), w.end.min(end)))
        .collect();
    spans.sort();
    let mut total = Duration::ZERO;
    let mut current: Option<(Instant, Instant)> = None;
    for (s, e) in spans {
        match current {
            Some((cs, ce)) if s <= ce => current = Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                total += ce - cs;
                current = Some((s, e));
            }
            None => current = Some((s, e)),
        }
    }
    if let Some((cs, ce)) = current {
        total += ce - cs;
    }
    total
}

#[derive(Debug, Clone, Default, Serialize)]
struct Figures {
    init_ms: f64,
    first_ms: f64,
    first_own_ms: f64,
    warm_ms: f64,
    warm_own_ms: f64,
    /// CPU time the function's process used (all its threads), from the kernel's scheduler
    /// statistics: what safeship's own code costs, free of the scheduling noise that wall time
    /// minus waits carries on a 2-core machine shared with moto and the recording endpoints.
    /// Process start → first answer (init and the first invocation).
    cold_cpu_ms: f64,
    /// The same, for one warm invocation.
    warm_cpu_ms: f64,
    /// Bytes of log the function wrote per warm invocation.
    warm_log_bytes: f64,
    /// Calls to the emulated AWS and the service under test per warm invocation.
    warm_calls: f64,
    peak_rss_mib: f64,
    /// alarm-rollback only: event handed over → `StopDeployment` received.
    reaction_cold_ms: Option<f64>,
    reaction_warm_ms: Option<f64>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Nanoseconds the process's threads have run on a CPU (first field of each task's schedstat).
fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(stat) = std::fs::read_to_string(task?.path().join("schedstat")) else {
            continue; // a thread that ended between listing and reading
        };
        total += stat
            .split_whitespace()
            .next()
            .context("empty schedstat")?
            .parse::<u64>()?;
    }
    Ok(Duration::from_nanos(total))
}

fn first_stop_after(waits: &[Wait], after: Instant) -> Option<Instant> {
    waits
        .iter()
        .filter(|w| w.operation.ends_with("StopDeployment") && w.start >= after)
        .map(|w| w.start)
        .min()
}

/// One cold process: init, first invocation, `WARM` warm ones, peak memory.
async fn one_run(
    world: &Emulated,
    function: &str,
    binary: &Path,
    counter: &mut usize,
) -> anyhow::Result<Figures> {
    let runtime = LocalRuntime::start().await;
    let mut next_event = || {
        *counter += 1;
        event(function, *counter, &world.deployment_id)
    };
    let first_event = next_event();
    let spawned = Instant::now();
    // The first event is queued before the process starts, as for a cold Lambda invocation.
    let (first, child) = tokio::join!(runtime.invoke_timed(first_event, DEADLINE), async {
        runtime.spawn_function(binary, function, &world.env)
    });
    let ready = runtime
        .ready(Duration::from_secs(5))
        .await
        .map_err(|e| anyhow::anyhow!("{function} did not start: {e:?}"))?;
    let pid = child.id().context("the process has exited")?;
    let (answer, timing) = first;
    check(function, &answer)?;
    let Timing { handed, answered } = timing.context("no timing for the first invocation")?;
    let cold_cpu = cpu_time(pid)?;
    let waits = world.waits();
    let mut f = Figures {
        cold_cpu_ms: ms(cold_cpu),
        init_ms: ms(ready - spawned),
        first_ms: ms(answered - handed),
        first_own_ms: ms((answered - handed).saturating_sub(waited(&waits, handed, answered))),
        ..Figures::default()
    };
    if function == "alarm-rollback" {
        f.reaction_cold_ms = first_stop_after(&waits, spawned).map(|s| ms(s - spawned));
    }
    let mut latency = Vec::new();
    let mut own = Vec::new();
    let mut reaction = Vec::new();
    let mut calls = Vec::new();
    let mut cpu = Vec::new();
    let mut log_bytes = Vec::new();
    for _ in 0..WARM {
        let event = next_event();
        // Between invocations the process sits in its long poll for the next event, so the CPU
        // time it used across one invocation is the invocation's own.
        let before = cpu_time(pid)?;
        let logged = runtime.output_bytes();
        let (answer, timing) = runtime.invoke_timed(event, DEADLINE).await;
        // Its response is posted before the answer arrives here; give the poll that follows a
        // moment to settle so the reading is not mid-syscall.
        tokio::time::sleep(Duration::from_millis(2)).await;
        cpu.push(ms(cpu_time(pid)?.saturating_sub(before)));
        log_bytes.push((runtime.output_bytes() - logged) as f64);
        check(function, &answer)?;
        let Timing { handed, answered } = timing.context("no timing")?;
        let waits = world.waits();
        latency.push(ms(answered - handed));
        let made: Vec<&Wait> = waits
            .iter()
            .filter(|w| w.start >= handed && w.end <= answered)
            .collect();
        calls.push(made.len() as f64);
        if std::env::var_os("SAFESHIP_BENCH_CALLS").is_some() && calls.len() == 1 {
            // What one warm invocation calls, for reading the calls column.
            let mut count = std::collections::BTreeMap::<&str, usize>::new();
            for w in &made {
                *count.entry(w.operation.as_str()).or_default() += 1;
            }
            eprintln!("[bench] {function} warm invocation calls: {count:?}");
        }
        own.push(ms(
            (answered - handed).saturating_sub(waited(&waits, handed, answered))
        ));
        if let Some(stop) = first_stop_after(&waits, handed) {
            reaction.push(ms(stop - handed));
        }
    }
    f.warm_ms = median(latency);
    f.warm_own_ms = median(own);
    f.warm_calls = median(calls);
    f.warm_cpu_ms = median(cpu);
    f.warm_log_bytes = median(log_bytes);
    if !reaction.is_empty() {
        f.reaction_warm_ms = Some(median(reaction));
    }
    f.peak_rss_mib = peak_rss_mib(pid)?;
    drop(child);
    Ok(f)
}

fn check(function: &str, answer: &Answer) -> anyhow::Result<()> {
    match answer {
        Answer::Response(_) => Ok(()),
        Answer::Error { error_message, .. } => {
            bail!("{function} answered with an error: {error_message}")
        }
    }
}

fn median_figures(runs: &[Figures]) -> Figures {
    let pick = |f: fn(&Figures) -> f64| median(runs.iter().map(f).collect());
    let pick_opt = |f: fn(&Figures) -> Option<f64>| {
        let v: Vec<f64> = runs.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| median(v))
    };
    Figures {
        init_ms: pick(|f| f.init_ms),
        first_ms: pick(|f| f.first_ms),
        first_own_ms: pick(|f| f.first_own_ms),
        warm_ms: pick(|f| f.warm_ms),
        warm_own_ms: pick(|f| f.warm_own_ms),
        warm_calls: pick(|f| f.warm_calls),
        cold_cpu_ms: pick(|f| f.cold_cpu_ms),
        warm_cpu_ms: pick(|f| f.warm_cpu_ms),
        warm_log_bytes: pick(|f| f.warm_log_bytes),
        peak_rss_mib: pick(|f| f.peak_rss_mib),
        reaction_cold_ms: pick_opt(|f| f.reaction_cold_ms),
        reaction_warm_ms: pick_opt(|f| f.reaction_warm_ms),
    }
}

/// `SAFESHIP_BENCH_CALLGRIND=<function>`: one cold process of that function under callgrind,
/// its counters dumped after init, after the first invocation and after `WARM` warm ones, so
/// each stage's profile stands on its own (`callgrind_annotate <dir>/callgrind.<function>.*`).
async fn callgrind_run(world: &Emulated, function: &str) -> anyhow::Result<()> {
    let binary = function_binary(function);
    let dir = std::env::var("SAFESHIP_BENCH_CALLGRIND_DIR").unwrap_or_else(|_| "/tmp".into());
    let out = format!("{dir}/callgrind.{function}.out");
    let wrapper = [
        "valgrind".to_owned(),
        "--tool=callgrind".to_owned(),
        // Each dump names its functions in full, so every part can be read on its own.
        "--compress-strings=no".to_owned(),
        format!("--callgrind-out-file={out}"),
    ];
    let runtime = LocalRuntime::start().await;
    let mut counter = 0;
    let mut next_event = || {
        counter += 1;
        event(function, counter, &world.deployment_id)
    };
    let child = runtime.spawn_wrapped(&wrapper, &binary, function, &world.env);
    let pid = child.id().context("valgrind exited at once")?;
    runtime
        .ready(Duration::from_secs(120))
        .await
        .map_err(|e| anyhow::anyhow!("{function} did not start under valgrind: {e:?}"))?;
    let dump = |label: &str| {
        let status = std::process::Command::new("callgrind_control")
            .args([format!("--dump={label}"), pid.to_string()])
            .status();
        anyhow::ensure!(
            status.as_ref().is_ok_and(|s| s.success()),
            "callgrind_control --dump {label} {pid}: {status:?}"
        );
        Ok(())
    };
    dump("init")?;
    let (answer, _) = runtime.invoke_timed(next_event(), DEADLINE * 4).await;
    check(function, &answer)?;
    dump("first")?;
    for _ in 0..WARM {
        let (answer, _) = runtime.invoke_timed(next_event(), DEADLINE * 4).await;
        check(function, &answer)?;
    }
    dump("warm")?;
    drop(child);
    println!("callgrind dumps of {function} (init, first, {WARM} warm invocations): {out}.*");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let world = emulate().await?;
    if let Ok(function) = std::env::var("SAFESHIP_BENCH_CALLGRIND") {
        return callgrind_run(&world, &function).await;
    }
    let functions = [
        "floor",
        "traffic-hook",
        "alarm-rollback",
        "predeploy-snapshot",
        "deploy-notify",
        "integrity-check",
    ];
    // `SAFESHIP_BENCH_ONLY=traffic-hook,alarm-rollback`: those beside the floor.
    let only = std::env::var("SAFESHIP_BENCH_ONLY").ok();
    let chosen =
        |f: &str| f == "floor" || only.as_deref().is_none_or(|o| o.split(',').any(|x| x == f));
    let mut results = Vec::new();
    let mut counter = 0;
    for function in functions.into_iter().filter(|f| chosen(f)) {
        let binary = function_binary(function);
        let mut runs = Vec::new();
        for _ in 0..RUNS {
            runs.push(one_run(&world, function, &binary, &mut counter).await?);
        }
        let size = std::fs::metadata(&binary)?.len();
        results.push((function, median_figures(&runs), size));
        eprintln!("[bench] {function}: done");
    }

    let floor = results[0].1.clone();
    println!(
        "\nmedians of {RUNS} cold processes, each with {WARM} warm invocations; ratio to the empty function in ()\n"
    );
    println!(
        "{:<19} {:>15} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>6} {:>7} {:>15} {:>10} {:>10}",
        "function",
        "init ms",
        "first ms",
        "own ms",
        "cold CPU",
        "warm ms",
        "own ms",
        "warm CPU",
        "calls",
        "log B",
        "peak RSS MiB",
        "binary MB",
        "reaction"
    );
    for (function, f, size) in &results {
        let reaction = match (f.reaction_cold_ms, f.reaction_warm_ms) {
            (Some(c), Some(w)) => format!("{c:.1}/{w:.1}"),
            _ => "-".into(),
        };
        println!(
            "{:<19} {:>6.1} ({:>4.2}x) {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.3} {:>10.3} {:>6.0} {:>7.0} {:>6.1} ({:>4.2}x) {:>10.1} {:>10}",
            function,
            f.init_ms,
            f.init_ms / floor.init_ms,
            f.first_ms,
            f.first_own_ms,
            f.cold_cpu_ms,
            f.warm_ms,
            f.warm_own_ms,
            f.warm_cpu_ms,
            f.warm_calls,
            f.warm_log_bytes,
            f.peak_rss_mib,
            f.peak_rss_mib / floor.peak_rss_mib,
            *size as f64 / 1e6,
            reaction,
        );
    }
    println!("\nown ms: latency minus the time spent waiting on emulated AWS calls and services (wall clock)");
    println!("log B: bytes of log written per warm invocation");
    println!("CPU: CPU time the function's process used (all threads); cold = process start → first answer");
    println!("reaction: alarm event handed to alarm-rollback → StopDeployment received, cold (from process start) / warm, ms");
    let json = json!({
        "runs": RUNS,
        "warm_invocations": WARM,
        "functions": results.iter().map(|(name, f, size)| json!({
            "function": name, "figures": f, "binary_bytes": size,
            "init_ratio": f.init_ms / floor.init_ms,
            "rss_ratio": f.peak_rss_mib / floor.peak_rss_mib,
        })).collect::<Vec<_>>(),
    });
    let out = std::env::var("SAFESHIP_BENCH_OUT").unwrap_or_else(|_| "bench-results.json".into());
    std::fs::write(&out, serde_json::to_string_pretty(&json)?)?;
    println!("figures written to {out}");
    Ok(())
}
