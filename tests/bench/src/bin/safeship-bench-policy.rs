//! `scripts/bench policy`: safeship at policy scale (issue 20). For policies of 1, 100, 1,000 and
//! 10,000 groups (ten alarms named per group, a prefix every 100 groups, a tag every 500):
//!
//! - **cold start** of the real `alarm-rollback` binary under the local Lambda Runtime API, the
//!   policy read from `SAFESHIP_POLICY_FILE` (no AWS call before the first poll), and its peak
//!   memory (`VmHWM`);
//! - **parse and index**, timed in a fresh process of this binary (`measure <file>`), and its
//!   peak memory;
//! - **the decision per alarm event** (`alarm_rollback::decide_alarm`: which groups, and whether the
//!   tags must be read), over a mix of names that hit a group, hit by prefix, and miss.
//!
//! Figures are printed and written to `SAFESHIP_BENCH_POLICY_OUT` (default
//! `bench-policy.json`), never asserted.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use safeship::event::{normalise, Inbound};
use safeship_testkit::emulators::{function_binary, sample_event, REGION};
use safeship_testkit::runtime::{peak_rss_mib, LocalRuntime};
use serde::{Deserialize, Serialize};

const SIZES: [usize; 4] = [1, 100, 1_000, 10_000];
const COLD_RUNS: usize = 5;
const DECISIONS: usize = 20_000;

/// A policy of `groups` deployment groups, ten per application.
fn policy_of(groups: usize) -> String {
    let mut doc = String::from("version: 1\napplications:\n");
    for g in 0..groups {
        if g % 10 == 0 {
            let _ = writeln!(doc, "  app-{:05}:\n    deployment-groups:", g / 10);
        }
        let mut alarms: Vec<String> = (0..10).map(|k| format!("{{name: a-{g:05}-{k}}}")).collect();
        if g % 100 == 0 {
            alarms.push(format!("{{prefix: p-{g:05}-}}"));
        }
        if g % 500 == 0 {
            alarms.push(format!("{{tag: {{key: team, value: t-{g:05}}}}}"));
        }
        let _ = writeln!(
            doc,
            "      grp-{g:05}:\n        environment: prod\n        rollback:\n          alarms: [{}]",
            alarms.join(", ")
        );
    }
    doc
}

/// The same policy as [`policy_of`], as JSON (which the policy parser reads with a JSON parser).
fn policy_json_of(groups: usize) -> String {
    let mut applications = serde_json::Map::new();
    for g in 0..groups {
        let mut alarms: Vec<serde_json::Value> = (0..10)
            .map(|k| serde_json::json!({"name": format!("a-{g:05}-{k}")}))
            .collect();
        if g % 100 == 0 {
            alarms.push(serde_json::json!({"prefix": format!("p-{g:05}-")}));
        }
        if g % 500 == 0 {
            alarms.push(serde_json::json!({"tag": {"key": "team", "value": format!("t-{g:05}")}}));
        }
        let app = applications
            .entry(format!("app-{:05}", g / 10))
            .or_insert_with(|| serde_json::json!({"deployment-groups": {}}));
        app["deployment-groups"][format!("grp-{g:05}")] =
            serde_json::json!({"environment": "prod", "rollback": {"alarms": alarms}});
    }
    serde_json::json!({"version": 1, "applications": applications}).to_string()
}

/// What a fresh process measures of one policy file.
#[derive(Debug, Serialize, Deserialize)]
struct Measured {
    bytes: usize,
    parse_ms: f64,
    index_ms: f64,
    peak_rss_mib: f64,
    decision_ns_median: f64,
    decision_ns_p99: f64,
}

/// The child's part: parse, index, decide.
fn measure(file: &str) -> anyhow::Result<Measured> {
    let text = std::fs::read_to_string(file)?;
    let started = Instant::now();
    let policy = safeship::policy::Policy::parse(&text, file)?;
    let parse_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    policy.build_index();
    let index_ms = started.elapsed().as_secs_f64() * 1e3;
    let groups = policy.groups().count();
    let Inbound::AlarmStateChange(mut alarm) =
        normalise(&sample_event("alarm-eventbridge-metric.json"))?.event
    else {
        anyhow::bail!("the sample is not an alarm")
    };
    // A mix: a named alarm of some group, one matched by a prefix, one no group maps.
    let names: Vec<String> = (0..97)
        .map(|i| match i % 3 {
            0 => format!("a-{:05}-{}", (i * 7919) % groups, i % 10),
            1 => format!("p-{:05}-latency", ((i * 104_729) % groups) / 100 * 100),
            _ => format!("zz-unmapped-{i}"),
        })
        .collect();
    let tags = BTreeMap::new();
    // The sample's own account and region are the hub's (a policy of one account).
    let hub = safeship::policy::Hub {
        account: alarm.account.clone(),
        region: alarm.region.clone(),
    };
    let mut times = Vec::with_capacity(DECISIONS);
    let mut acted = 0usize;
    for i in 0..DECISIONS {
        alarm.alarm_name.clone_from(&names[i % names.len()]);
        let started = Instant::now();
        // (With tag-mapping groups in the policy most alarms need their tags read first; the
        // decision on the tags found is the same lookup again.)
        let (_needs_tags, decision) = alarm_rollback::decide_alarm(&policy, &hub, &alarm, &tags);
        times.push(started.elapsed());
        acted += usize::from(!matches!(decision, alarm_rollback::Decision::Ignore { .. }));
    }
    anyhow::ensure!(
        acted > 0,
        "no alarm of the mix was mapped: the policy is not what was meant"
    );
    times.sort_unstable();
    let ns = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_nanos() as f64;
    Ok(Measured {
        bytes: text.len(),
        parse_ms,
        index_ms,
        peak_rss_mib: peak_rss_mib(std::process::id())?,
        decision_ns_median: ns(0.5),
        decision_ns_p99: ns(0.99),
    })
}

#[derive(Debug, Serialize)]
struct Row {
    format: &'static str,
    groups: usize,
    alarms: usize,
    #[serde(flatten)]
    measured: Measured,
    cold_start_ms_median: f64,
    cold_start_peak_rss_mib: f64,
}

/// The `alarm-rollback` binary's cold start (spawn to its first poll of the Runtime API) with
/// the policy in `file`: the median of `COLD_RUNS`, and the peak memory of the last.
async fn cold_start(file: &std::path::Path) -> anyhow::Result<(f64, f64)> {
    let env: Vec<(String, String)> = [
        ("AWS_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("SAFESHIP_IDEMPOTENCY_TABLE", "safeship-bench-policy"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain([(
        "SAFESHIP_POLICY_FILE".to_owned(),
        file.display().to_string(),
    )])
    .collect();
    let binary = function_binary("alarm-rollback");
    let mut times = Vec::new();
    let mut rss = 0.0;
    for _ in 0..COLD_RUNS {
        let runtime = LocalRuntime::start().await;
        let started = Instant::now();
        let mut child = runtime.spawn_function(&binary, "alarm-rollback", &env);
        runtime
            .ready(Duration::from_secs(60))
            .await
            .map_err(|e| anyhow::anyhow!("alarm-rollback did not start: {e:?}"))?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        rss = peak_rss_mib(child.id().context("alarm-rollback exited")?)?;
        let _ = child.kill().await;
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], rss))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("measure") {
        let file = args.get(2).context("measure <policy file>")?;
        println!("{}", serde_json::to_string(&measure(file)?)?);
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("safeship-bench-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut rows = Vec::new();
    for (format, groups) in SIZES
        .iter()
        .map(|&n| ("YAML", n))
        .chain(SIZES.iter().map(|&n| ("JSON", n)))
    {
        let file = dir.join(format!("policy-{groups}.{}", format.to_lowercase()));
        let document = if format == "JSON" {
            policy_json_of(groups)
        } else {
            policy_of(groups)
        };
        std::fs::write(&file, document)?;
        let out = tokio::process::Command::new(std::env::current_exe()?)
            .arg("measure")
            .arg(&file)
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "measuring {groups} groups failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let measured: Measured = serde_json::from_slice(&out.stdout)?;
        let (cold_start_ms_median, cold_start_peak_rss_mib) = cold_start(&file).await?;
        rows.push(Row {
            format,
            groups,
            alarms: groups * 10,
            measured,
            cold_start_ms_median,
            cold_start_peak_rss_mib,
        });
    }
    std::fs::remove_dir_all(&dir)?;
    println!("policy at scale (alarm-rollback): {COLD_RUNS} cold starts each; {DECISIONS} decisions each");
    println!(
        "| policy | groups | alarms | KiB | cold start ms | cold peak RSS MiB | parse ms | index ms | decision ns (median) | decision ns (p99) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.2} | {:.2} | {:.0} | {:.0} |",
            r.format,
            r.groups,
            r.alarms,
            r.measured.bytes as f64 / 1024.0,
            r.cold_start_ms_median,
            r.cold_start_peak_rss_mib,
            r.measured.parse_ms,
            r.measured.index_ms,
            r.measured.decision_ns_median,
            r.measured.decision_ns_p99
        );
    }
    let out =
        std::env::var("SAFESHIP_BENCH_POLICY_OUT").unwrap_or_else(|_| "bench-policy.json".into());
    std::fs::write(&out, serde_json::to_string_pretty(&rows)?)?;
    println!("written to {out}");
    Ok(())
}
