//! The fault matrix (issue 18, part 3): for every operation each function calls on the way of
//! each sample (AWS through the emulated endpoints, Slack's Web API, the service under smoke
//! test and the database's connection), in a whole emulated
//! installation through the real binaries, each fault: throttling, HTTP 500, HTTP 503 and a
//! connection closed without an answer once (what a retry gets past), and an answer slower than
//! any client waits and access denied on every call. Each cell asserts its outcome and prints
//! it; `scripts/faults` prints the whole matrix (README: how to read it).
//!
//! - A fault met once must be got past: the delivery succeeds doing exactly what one delivery
//!   does (the SDK or safeship retried), or it fails with an error naming the operation and
//!   Lambda's retry then does exactly that.
//! - A fault met on every call must end in an error naming the operation (or, for a hook and a
//!   pipeline's snapshot, an answer that reports the failure naming it), within the deadline,
//!   with nothing done twice; and a hook reports, unless its report is the faulted call.

use std::collections::BTreeMap;
use std::sync::Arc;

use safeship_testkit::runtime::Answer;
use safeship_testkit::samples::{
    cases, deliver_until_answered, delivered, short_deadline, webhook_cases, world_for, Case,
};
use safeship_testkit::split::Fault;
use tokio::sync::Semaphore;

/// Cells tried at once (each in a world of its own).
const AT_ONCE: usize = 8;

/// Whether a fault is met once (a retry gets past it) or on every call.
fn once(fault: Fault) -> bool {
    !matches!(fault, Fault::Slow | Fault::AccessDenied)
}

/// What an error about `operation` (a short name) may call it.
fn names_of(operation: &str) -> Vec<String> {
    let (method, name) = operation.split_once(' ').unwrap_or(("", operation));
    match (method, name) {
        ("POST", "deployments") => vec!["StartDeployment".into()],
        ("GET", "deployments") => vec!["ListDeployments".into(), "GetDeployment".into()],
        ("POST", "hostedconfigurationversions") => vec!["CreateHostedConfigurationVersion".into()],
        ("GET", "hostedconfigurationversions") => vec![
            "ListHostedConfigurationVersions".into(),
            "GetHostedConfigurationVersion".into(),
        ],
        (_, n) if n.starts_with("chat.") || n.starts_with("conversations.") => {
            vec!["Slack".into(), n.to_owned()]
        }
        ("POST", "webhook") => vec!["Slack".into()],
        // The database: the step that met it.
        ("postgres", "connect") => vec!["connecting".into()],
        (_, n) => vec![n.to_owned()],
    }
}

/// One cell's outcome.
struct Cell {
    outcome: String,
    /// What is wrong with it, if anything.
    wrong: Option<String>,
}

async fn try_cell(case: &Case, operation: &str, fault: Fault) -> Cell {
    let (mut world, d) = world_for(case).await;
    world.start(case.function, 1).await.unwrap();
    let event = delivered(case.sample, &d, chrono::Utc::now());
    world.arm_fault(operation, fault, once(fault).then_some(1));
    let answer = world
        .function(case.function)
        .runtime
        .invoke(event.clone(), short_deadline(case.function))
        .await;
    let text = format!("{answer:?}");
    let named = names_of(operation)
        .iter()
        .any(|n| text.contains(n.as_str()));
    let effects = world.effects().await;
    let what = |s: &str| {
        format!(
            "{} {}, {operation} {}: {s}: {text:.600}",
            case.function,
            case.sample,
            fault.name()
        )
    };
    if operation == SMOKE_TARGET {
        return smoke_target_cell(&world, case, &answer, named, fault, &what);
    }
    if operation == safeship_testkit::pg_proxy::CONNECT {
        return database_cell(case, &answer, named, effects, fault, &what);
    }
    if once(fault) {
        return match &answer {
            Answer::Response(_) if effects == case.once => Cell {
                outcome: "got past".into(),
                wrong: None,
            },
            Answer::Response(_) => Cell {
                outcome: format!("did {effects}"),
                wrong: Some(what(&format!(
                    "did {effects}, one delivery does {}",
                    case.once
                ))),
            },
            Answer::Error { error_type, .. } if error_type == "Timeout" => Cell {
                outcome: "no answer".into(),
                wrong: Some(what("no answer before the deadline")),
            },
            Answer::Error { .. } => {
                // Lambda retries an error: the retry must finish the work, once.
                let (_, _) = deliver_until_answered(&world, case.function, &event).await;
                let after = world.effects().await;
                Cell {
                    outcome: if named { "error, retried".into() } else { "error (unnamed), retried".into() },
                    wrong: (after != case.once || !named).then(|| {
                        what(&format!("named: {named}; after Lambda's retry did {after}, one delivery does {}", case.once))
                    }),
                }
            }
        };
    }
    // Met on every call: the failure must be told, naming the operation, and nothing done twice.
    let twice = [
        (effects.hook_reports, case.once.hook_reports),
        (effects.stops, case.once.stops),
        (effects.flag_versions, case.once.flag_versions),
        (effects.flag_deployments, case.once.flag_deployments),
        (effects.snapshots_created, case.once.snapshots_created),
        (effects.emails, case.once.emails),
        (effects.slack_posts, case.once.slack_posts),
    ]
    .iter()
    .any(|(did, once)| did > once);
    let reports_due =
        case.once.hook_reports > 0 && operation != "PutLifecycleEventHookExecutionStatus";
    let (outcome, ok) = match &answer {
        Answer::Error { error_type, .. } if error_type == "Timeout" => {
            ("no answer".to_owned(), false)
        }
        Answer::Error { .. } => (
            if named {
                "error names it".into()
            } else {
                "error (unnamed)".into()
            },
            named,
        ),
        Answer::Response(body) => {
            // A hook's or a snapshot's status, or (the integrity check) its run's.
            let status = body["status"]
                .as_str()
                .or(body["hook-status"].as_str())
                .or(body["runs"][0]["status"].as_str())
                .unwrap_or("");
            // A hook that reports Failed was affected, whatever the counts say.
            let hook_as_usual = !reports_due || world.hook_statuses() == ["Succeeded"];
            if effects == case.once && hook_as_usual {
                // The fault did not matter to this delivery (a call it can do without).
                ("unaffected".into(), true)
            } else if matches!(status, "creating" | "continued") && body["hook-status"].is_null() {
                // The snapshot's wait goes on in a continuation (Lambda took it), which reports:
                // not a failure to name.
                ("handed on".into(), true)
            } else {
                (
                    format!("answered {status}, names it: {named}"),
                    named && !status.is_empty(),
                )
            }
        }
    };
    let handed_on = outcome.starts_with("handed on");
    let reported = !reports_due || handed_on || effects.hook_reports == 1;
    let wrong = (!ok || twice || !reported).then(|| {
        what(&format!(
            "{outcome}; did {effects} (one delivery does {}); hook reported: {reported}",
            case.once
        ))
    });
    Cell {
        outcome: if reports_due {
            format!(
                "{outcome}, hook reported {}",
                world.hook_statuses().join(", ")
            )
        } else {
            outcome
        },
        wrong,
    }
}

/// The service under smoke test, as the world's endpoint names its calls.
const SMOKE_TARGET: &str = "GET health";

/// A fault at the service under smoke test, once or on every call: a smoke check does not
/// retry a failing service into passing, so the hook reports `Failed` once, naming the check,
/// before its deadline — and nothing else is done.
fn smoke_target_cell(
    world: &safeship_testkit::world::World,
    case: &Case,
    answer: &Answer,
    named: bool,
    fault: Fault,
    what: &dyn Fn(&str) -> String,
) -> Cell {
    let statuses = world.hook_statuses();
    let ok = matches!(answer, Answer::Response(_)) && named && statuses == ["Failed"];
    Cell {
        outcome: if ok {
            "hook reported Failed, names it".into()
        } else {
            format!("hook reported {statuses:?}")
        },
        wrong: (!ok).then(|| {
            what(&format!(
                "{} met {}: hook reports {statuses:?}, names the check: {named}; one report of Failed is due",
                case.function,
                fault.name()
            ))
        }),
    }
}

/// A fault at the database's connection. Met once (too many clients, an internal error, the
/// server starting up, a connection closed), the run connects again and does what one run
/// does; met on every connection (a server that never answers, a refused password), the run
/// is recorded failed naming the step, and announced.
fn database_cell(
    case: &Case,
    answer: &Answer,
    named: bool,
    effects: safeship_testkit::effects::Effects,
    fault: Fault,
    what: &dyn Fn(&str) -> String,
) -> Cell {
    let status = match answer {
        Answer::Response(body) => body["runs"][0]["status"].as_str().unwrap_or("").to_owned(),
        _ => String::new(),
    };
    if once(fault) {
        let ok = status != "failed" && !status.is_empty() && effects == case.once;
        return Cell {
            outcome: if ok {
                "got past".into()
            } else {
                format!("answered {status:?}, did {effects}")
            },
            wrong: (!ok).then(|| {
                what(&format!(
                    "answered {status:?}, did {effects}; one run does {}",
                    case.once
                ))
            }),
        };
    }
    let ok = status == "failed" && named && effects.guard_events == 1;
    Cell {
        outcome: if ok {
            "run failed, names it, announced".into()
        } else {
            format!("answered {status:?}, names it: {named}, did {effects}")
        },
        wrong: (!ok).then(|| {
            what(&format!(
                "answered {status:?}, names it: {named}, did {effects}"
            ))
        }),
    }
}

/// The operations one delivery of `case` calls (after its function's cold start).
async fn operations_of(case: &Case) -> Vec<String> {
    let (mut world, d) = world_for(case).await;
    world.start(case.function, 1).await.unwrap();
    let at_start = world.operations_called();
    let answer = world
        .invoke(
            case.function,
            delivered(case.sample, &d, chrono::Utc::now()),
        )
        .await;
    assert!(matches!(answer, Answer::Response(_)), "{answer:?}");
    world
        .operations_called()
        .into_iter()
        .filter(|op| !at_start.contains(op) || op.contains("Item"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_in_every_call_has_its_documented_outcome() {
    // A closed connection is played by the endpoint's handler ending; say nothing of it.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains("injected fault") {
            default_hook(info);
        }
    }));
    let only = std::env::var("SAFESHIP_FAULTS_ONLY").ok();
    let cases: Vec<Case> = cases().into_iter().chain(webhook_cases()).collect();
    let cases = Arc::new(cases);
    // Each (function, operation) once: the first sample whose delivery calls it.
    let mut rows: Vec<(usize, String)> = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        if only.as_deref().is_some_and(|f| f != case.function) {
            continue;
        }
        for op in operations_of(case).await {
            if !rows
                .iter()
                .any(|(i, o)| cases[*i].function == case.function && *o == op)
            {
                rows.push((index, op));
            }
        }
    }
    let permits = Arc::new(Semaphore::new(AT_ONCE));
    let mut running = tokio::task::JoinSet::new();
    for (row, (index, op)) in rows.iter().enumerate() {
        for fault in Fault::ALL {
            let (cases, permits, op, index) = (cases.clone(), permits.clone(), op.clone(), *index);
            running.spawn(async move {
                let _permit = permits.acquire().await.unwrap();
                (row, fault, try_cell(&cases[index], &op, fault).await)
            });
        }
    }
    let mut matrix: BTreeMap<(usize, Fault), Cell> = BTreeMap::new();
    while let Some(done) = running.join_next().await {
        let (row, fault, cell) = done.expect("a cell ran to its end");
        matrix.insert((row, fault), cell);
    }

    let width = rows
        .iter()
        .map(|(i, op)| cases[*i].function.len() + op.len() + 1)
        .max()
        .unwrap_or(0);
    println!("\nfault matrix: {} operations × {} faults = {} cells (throttled, HTTP 500, HTTP 503 and reset met once; too slow and access denied on every call)\n", rows.len(), Fault::ALL.len(), matrix.len());
    print!("| {:width$} |", "function operation");
    for fault in Fault::ALL {
        print!(" {} |", fault.name());
    }
    println!();
    print!("|{}|", "-".repeat(width + 2));
    for _ in Fault::ALL {
        print!("---|");
    }
    println!();
    let mut wrong = Vec::new();
    for (row, (index, op)) in rows.iter().enumerate() {
        print!("| {:width$} |", format!("{} {op}", cases[*index].function));
        for fault in Fault::ALL {
            let cell = &matrix[&(row, fault)];
            print!(
                " {}{} |",
                cell.outcome,
                if cell.wrong.is_some() { " ✗" } else { "" }
            );
            if let Some(w) = &cell.wrong {
                wrong.push(w.clone());
            }
        }
        println!();
    }
    println!("\n{} cells, {} wrong", matrix.len(), wrong.len());
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
