//! The Slack webhook URL never reaches the logs, whatever happens to the delivery. In a test
//! binary of its own: the capturing subscriber is the process's global one, so no other test's
//! thread can race it for tracing's per-callsite interest.

use safeship_testkit::emulators::sample_event;
use safeship_testkit::notify::world;

/// Collects everything logged (no redaction: the code itself must not log the URL; the redacting
/// writer in production is a second line of defence).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_webhook_url_never_appears_in_the_logs() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("debug")
        .json()
        .with_writer(move || sink.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber here");

    let w = world().await;
    w.channels.slack.answer(500, None, "internal_error", 4);
    w.channels.slack.answer(404, None, "channel_not_found", 1);
    let failure = sample_event("codedeploy-deployment-failure.json");
    let _ = w.deliver(failure.clone()).await;
    let _ = w.deliver(failure.clone()).await;
    let _ = w.deliver(failure).await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("channel_not_found"),
        "the logs were captured: {logs}"
    );
    assert!(!logs.contains("XXXXSECRETXXXX"), "{logs}");
    assert!(!logs.contains(&w.channels.slack.url), "{logs}");
}
