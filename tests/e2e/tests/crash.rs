//! Crash and retry (issue 18, part 2): every sample's function killed at each point between its
//! side effects, then the event delivered again as Lambda's retry would, in a whole emulated
//! installation (`safeship_testkit::world`) through the real binaries.
//!
//! The points are found, not listed: one delivery is run once to count the calls it makes that
//! change something (every write: the idempotency store's claims and records, CodeDeploy's
//! reports and stops, AppConfig's versions and deployments, snapshots, SNS, EventBridge, Slack).
//! Then, in a fresh world for each, the process is killed just before each such call reaches
//! its service (so "before the first" and "before the outcome is recorded" are among them) and
//! just after each was carried out, its answer lost with the process (so "after the last").
//! Lambda answers the killed invocation `Runtime.ExitError` and starts a new process; its retry
//! comes after the dead invocation's deadline (Lambda's first retry comes a minute later, past
//! the deadline of any safeship function whose timeout is under a minute; here time is
//! compressed: the killed invocation is told it has a few seconds), and a second retry later
//! still. After
//! them, the side effects must be exactly one delivery's: nothing skipped, nothing done twice;
//! for a hook, its report made.

use std::time::{Duration, Instant};

use safeship_testkit::effects::Effects;
use safeship_testkit::runtime::Answer;
use safeship_testkit::samples::{
    cases, deliver_until_answered, delivered, short_deadline, webhook_cases, world_for, Case,
    SlackMode,
};
use safeship_testkit::split::Phase;
use tokio::sync::Semaphore;

/// Crash points tried at once (each in a world of its own; most of their time is the wait for
/// the killed invocation's deadline).
const AT_ONCE: usize = 8;

/// How one crash point ended.
struct Tried {
    case: usize,
    at: usize,
    phase: Phase,
    /// The operation the process died at (`None`: the delivery took a path without that call).
    operation: Option<String>,
    /// Killed before it answered (rather than answering first, its own deadline come).
    killed: bool,
    effects: Effects,
    /// What the first delivery was answered, and the guard events published (for a diagnosis).
    answer: String,
    published: Vec<String>,
    /// Emails that say they may repeat one (sent again by a delivery that resumed).
    marked_emails: usize,
    /// Slack messages that say so (a webhook's: it cannot be read back).
    marked_posts: usize,
}

/// How many calls that change something one delivery of `case` makes.
async fn changes_of(case: &Case) -> usize {
    let (mut world, d) = world_for(case).await;
    world.start(case.function, 1).await.unwrap();
    world.arm_crash(case.function, usize::MAX, Phase::Before);
    let answer = world
        .invoke(
            case.function,
            delivered(case.sample, &d, chrono::Utc::now()),
        )
        .await;
    assert!(
        matches!(answer, Answer::Response(_)),
        "{} {}: {answer:?}",
        case.function,
        case.sample
    );
    world.changes()
}

/// Kills `case`'s function at its `at`th change (`phase`), then retries as Lambda does.
async fn crash_and_retry(index: usize, case: &Case, at: usize, phase: Phase) -> Tried {
    let (mut world, d) = world_for(case).await;
    world.start(case.function, 1).await.unwrap();
    let event = delivered(case.sample, &d, chrono::Utc::now());
    world.arm_crash(case.function, at, phase);
    let handed = Instant::now();
    let deadline = short_deadline(case.function);
    let answer = world
        .function(case.function)
        .runtime
        .invoke(event.clone(), deadline)
        .await;
    let operation = world.crashed_at();
    let what = format!(
        "{} {} killed {phase:?} change {at} ({operation:?})",
        case.function, case.sample
    );
    // Killed mid-delivery: Lambda's `Runtime.ExitError`. A function whose own deadline came
    // while the call was on its way (a slow moto) has answered before it died: its answer then
    // says what it left for the retry.
    let killed =
        matches!(&answer, Answer::Error { error_type, .. } if error_type == "Runtime.ExitError");
    assert!(
        killed || matches!(answer, Answer::Response(_)),
        "{what}: answered {answer:?}"
    );
    assert!(
        operation.is_some() || !killed,
        "{what}: killed without a crash"
    );
    let mut retries = String::new();
    if operation.is_some() {
        world.restart(case.function).await.unwrap();
        // Lambda's first retry: after the dead invocation's deadline.
        tokio::time::sleep_until((handed + deadline + Duration::from_millis(100)).into()).await;
        let (_, first) = deliver_until_answered(&world, case.function, &event).await;
        // And its second, later still: nothing more to do.
        let (_, second) = deliver_until_answered(&world, case.function, &event).await;
        retries = format!("{first}\n    then {second}")
            .chars()
            .take(1200)
            .collect();
    }
    Tried {
        case: index,
        at,
        phase,
        operation,
        killed,
        effects: world.effects().await,
        answer: format!("{answer:?}\n    retried: {retries}")
            .chars()
            .take(1600)
            .collect(),
        published: world.guard_events_published(),
        marked_emails: world
            .channels
            .emails()
            .await
            .iter()
            .filter(|e| {
                e["Message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(deploy_notify::MAYBE_REPEATED))
            })
            .count(),
        marked_posts: world
            .channels
            .slack
            .received()
            .iter()
            .filter(|m| m.to_string().contains(deploy_notify::MAYBE_REPEATED))
            .count(),
    }
}

/// The one documented exception to "exactly once": killed after SNS took an email (or an
/// incoming webhook a message) and before the notifier recorded it (the channels go side by
/// side, so that is whichever point falls there), the retry cannot know whether it went out
/// (SNS and a webhook keep no record to read back, unlike the Web API's history), so it sends
/// it again, saying so in its first line. Everything else must still be exactly one delivery's.
fn sent_again_as_documented(case: &Case, t: &Tried) -> bool {
    let webhook = case.slack == SlackMode::Webhook;
    let extra_emails = t.effects.emails.saturating_sub(case.once.emails);
    let extra_posts = t.effects.slack_posts.saturating_sub(case.once.slack_posts);
    let expected_but_marked_repeats = Effects {
        emails: case.once.emails + extra_emails,
        slack_posts: case.once.slack_posts + extra_posts,
        ..case.once
    };
    case.function == "deploy-notify"
        && extra_emails + extra_posts > 0
        && extra_emails <= 1
        && extra_posts <= usize::from(webhook)
        && t.effects == expected_but_marked_repeats
        // Every message sent again says so; one marked may be the only one (the dead delivery
        // died before it went out: the retry cannot know).
        && t.marked_emails >= extra_emails
        && t.marked_posts >= extra_posts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_killed_between_any_two_side_effects_finishes_on_retry_exactly_once() {
    // SAFESHIP_CRASH_ONLY=<function> tries that function's points only (a diagnosis).
    let only = std::env::var("SAFESHIP_CRASH_ONLY").ok();
    let cases: Vec<Case> = cases().into_iter().chain(webhook_cases()).collect();
    let mut points = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        if only.as_deref().is_some_and(|f| f != case.function) {
            continue;
        }
        // A delivery that changes nothing (an alarm whose actions are suppressed) has no point
        // between side effects to die at.
        let changes = changes_of(case).await;
        for at in 0..changes {
            for phase in [Phase::Before, Phase::After] {
                points.push((index, at, phase));
            }
        }
    }
    let cases = std::sync::Arc::new(cases);
    let permits = std::sync::Arc::new(Semaphore::new(AT_ONCE));
    let mut running = tokio::task::JoinSet::new();
    for (index, at, phase) in points {
        let cases = cases.clone();
        let permits = permits.clone();
        running.spawn(async move {
            let _permit = permits.acquire().await.unwrap();
            crash_and_retry(index, &cases[index], at, phase).await
        });
    }
    let mut tried = Vec::new();
    while let Some(result) = running.join_next().await {
        tried.push(result.expect("a crash point ran to its end"));
    }
    tried.sort_by_key(|t| (t.case, t.at, t.phase == Phase::After));

    let mut wrong = Vec::new();
    let mut repeated = 0;
    for t in &tried {
        let case = &cases[t.case];
        if t.effects != case.once && sent_again_as_documented(case, t) {
            repeated += 1;
            continue;
        }
        if t.effects != case.once {
            wrong.push(format!(
                "{} {} ({:?} Slack) killed {:?} change {} ({}): did {}, one delivery does {}\n    first answered {}\n    guard events {:?}",
                case.function,
                case.sample,
                case.slack,
                t.phase,
                t.at,
                t.operation.as_deref().unwrap_or("not reached"),
                t.effects,
                case.once,
                t.answer,
                t.published
            ));
        }
    }
    let killed = tried.iter().filter(|t| t.killed).count();
    println!(
        "crash and retry: {} crash points of {} cases (the notifier's with a Web API bot and with an incoming webhook), {killed} killed mid-delivery; {repeated} sent an email or a webhook message again, marked as maybe repeated (SNS and a webhook keep nothing to read back); {} wrong",
        tried.len(),
        cases.len(),
        wrong.len()
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
