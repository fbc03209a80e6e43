//! One safeship for an organisation: an alarm from a member account is acted on in the account
//! and region it came from, through the role assumed there, and nowhere else.
//!
//! moto serves STS `AssumeRole` and keeps each resource in the account of the credentials that
//! created it: the same CodeDeploy application and group exist in two member accounts (and two
//! regions of one), each with a deployment in flight, and the plan can only find the one where
//! the alarm is. `StopDeployment`, which moto lacks, goes to wiremock, which is asked which
//! credentials signed it; moto's `GetCallerIdentity` says whose they are. A second moto that
//! enforces IAM plays a member role that refuses.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_codedeploy::types::ComputePlatform;
use aws_smithy_async::time::{SharedTimeSource, TimeSource};
use safeship::event::{normalise, AlarmStateChange, Inbound};
use safeship_testkit::codedeploy;
use safeship_testkit::emulators::{
    common_with_policy, moto_endpoint, sample_event, sdk_config, unique, MEMBER_EXTERNAL_ID,
};
use safeship_testkit::guard_inbox::GuardInbox;
use safeship_testkit::org::{accounts_section, member_sdk, IamMoto, MEMBER_A, MEMBER_B, STRANGER};
use safeship_testkit::split::SplitEndpoint;
use serde_json::json;
use wiremock::matchers::{body_json, header};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SITES: [(&str, &str); 3] = [
    (MEMBER_A, "eu-west-1"),
    (MEMBER_A, "us-east-1"),
    (MEMBER_B, "eu-west-1"),
];

struct Org {
    hub: aws_config::SdkConfig,
    mock: MockServer,
    split: SplitEndpoint,
    alarm: String,
    /// The deployment in flight at each of [`SITES`].
    deployments: Vec<String>,
    deps: alarm_rollback::Deps,
}

/// The hub with its policy, and the same group deployed at every site with a deployment in
/// flight there.
async fn org() -> Org {
    let moto = moto_endpoint();
    let hub = sdk_config(&moto).await;
    let mock = MockServer::start().await;
    let split = SplitEndpoint::json_operations(&moto, &mock.uri(), &["StopDeployment"]).await;
    let hub_split = sdk_config(&split.uri()).await;
    let (app, group, alarm) = (
        unique("ledger"),
        unique("ledger-prod"),
        unique("ledger-5xx"),
    );
    let mut deployments = Vec::new();
    for (account, region) in SITES {
        let member = aws_sdk_codedeploy::Client::new(&member_sdk(&hub, account, region).await);
        codedeploy::named_group(&member, &app, &group, ComputePlatform::Lambda).await;
        deployments.push(
            codedeploy::deployment(&member, &app, &group, &codedeploy::lambda_appspec("4"))
                .await
                .expect("moto CreateDeployment in the member account"),
        );
    }
    let policy = format!(
        "version: 1
{accounts}applications:
  {app}:
    accounts: [payments-prod, '{MEMBER_B}']
    deployment-groups:
      {group}:
        environment: prod
        rollback: {{alarms: [{{name: {alarm}}}]}}
",
        accounts = accounts_section()
    );
    let deps = alarm_rollback::Deps {
        common: common_with_policy(&hub_split, &policy).await,
        codedeploy: aws_sdk_codedeploy::Client::new(&hub_split),
        appconfig: aws_sdk_appconfig::Client::new(&hub_split),
        cloudwatch: aws_sdk_cloudwatch::Client::new(&hub_split),
        ecs: aws_sdk_ecs::Client::new(&hub_split),
    };
    for id in &deployments {
        Mock::given(header("x-amz-target", "CodeDeploy_20141006.StopDeployment"))
            .and(body_json(
                json!({"deploymentId": id, "autoRollbackEnabled": true}),
            ))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("content-type", "application/x-amz-json-1.1")
                    .set_body_json(json!({"status": "Pending"})),
            )
            .named(id.as_str())
            .mount(&mock)
            .await;
    }
    Org {
        hub,
        mock,
        split,
        alarm,
        deployments,
        deps,
    }
}

impl Org {
    /// The alarm's EventBridge transition as `account` in `region` sends it to the hub's bus.
    fn alarm_from(&self, account: &str, region: &str, at: &str) -> AlarmStateChange {
        let mut event = sample_event("alarm-eventbridge-metric.json");
        let arn = format!("arn:aws:cloudwatch:{region}:{account}:alarm:{}", self.alarm);
        event["account"] = json!(account);
        event["region"] = json!(region);
        event["resources"] = json!([arn]);
        event["detail"]["alarmName"] = json!(self.alarm);
        event["detail"]["state"]["timestamp"] = json!(at);
        let Inbound::AlarmStateChange(alarm) = normalise(&event).unwrap().event else {
            panic!("the sample is an alarm")
        };
        alarm
    }

    /// alarm-rollback's answer to that alarm (an error fails the test).
    async fn deliver(
        &self,
        account: &str,
        region: &str,
        at: &str,
    ) -> alarm_rollback::RollbackReport {
        alarm_rollback::handle_alarm(&self.deps, &self.alarm_from(account, region, at))
            .await
            .unwrap()
    }

    /// Each `StopDeployment` wiremock received: the deployment, and the account and region of
    /// the credentials that signed it (moto's `GetCallerIdentity` of the access key).
    async fn stops(&self) -> Vec<(String, String, String)> {
        let mut stops = Vec::new();
        for request in self.mock.received_requests().await.unwrap_or_default() {
            let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
            let authorization = request.headers["authorization"]
                .to_str()
                .unwrap()
                .to_owned();
            // AWS4-HMAC-SHA256 Credential=<key id>/<date>/<region>/codedeploy/aws4_request, …
            let scope: Vec<&str> = authorization
                .split("Credential=")
                .nth(1)
                .and_then(|c| c.split(',').next())
                .unwrap()
                .split('/')
                .collect();
            let (key_id, region) = (scope[0], scope[2]);
            let whose = account_of_key(&self.hub, key_id).await;
            stops.push((
                body["deploymentId"].as_str().unwrap().to_owned(),
                whose,
                region.to_owned(),
            ));
        }
        stops
    }
}

/// The account moto holds access key `key_id` in (moto checks no signature, only the key).
async fn account_of_key(hub: &aws_config::SdkConfig, key_id: &str) -> String {
    let sdk = hub
        .clone()
        .into_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new(key_id, "unknown", None, None, "wiremock"),
            ),
        )
        .build();
    let out = aws_sdk_sts::Client::new(&sdk)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    out.account.unwrap()
}

#[tokio::test]
async fn an_alarm_is_rolled_back_in_the_account_and_region_it_came_from_and_nowhere_else() {
    let mut o = org().await;
    let inbox = GuardInbox::create(&o.hub).await;
    o.deps.common.guard = inbox.publisher();
    let (a_eu, a_us, b_eu) = (
        o.deployments[0].clone(),
        o.deployments[1].clone(),
        o.deployments[2].clone(),
    );

    let report = o
        .deliver(MEMBER_A, "eu-west-1", "2026-12-07T10:00:00.000+0000")
        .await;
    assert!(report
        .actions
        .iter()
        .any(|a| a.succeeded && a.action == format!("stop-deployment {a_eu} (with rollback)")));
    assert_eq!(
        o.stops().await,
        [(a_eu.clone(), MEMBER_A.to_owned(), "eu-west-1".to_owned())],
        "only the deployment in account A's eu-west-1 is stopped, as account A's member role"
    );
    // The guard event says where: the notifier names the account from it.
    let events = inbox.events().await;
    let performed = events
        .iter()
        .find(|e| {
            matches!(
                e.outcome,
                safeship::guard::Outcome::RollbackPerformed { .. }
            )
        })
        .unwrap_or_else(|| panic!("no rollback-performed event in {events:?}"));
    assert_eq!(
        (performed.account.as_deref(), performed.region.as_deref()),
        (Some(MEMBER_A), Some("eu-west-1"))
    );
    assert_eq!(performed.deployment_id.as_deref(), Some(a_eu.as_str()));

    // The same alarm name in B: B's deployment, with B's role; A's other region is untouched.
    o.deliver(MEMBER_B, "eu-west-1", "2026-12-07T10:00:00.000+0000")
        .await;
    let stops = o.stops().await;
    assert_eq!(stops.len(), 2, "{stops:?}");
    assert_eq!(
        stops[1],
        (b_eu.clone(), MEMBER_B.to_owned(), "eu-west-1".to_owned())
    );

    o.deliver(MEMBER_A, "us-east-1", "2026-12-07T10:00:00.000+0000")
        .await;
    let stops = o.stops().await;
    assert_eq!(
        stops[2],
        (a_us.clone(), MEMBER_A.to_owned(), "us-east-1".to_owned())
    );
    assert_eq!(stops.len(), 3, "{stops:?}");
    // Each account's role was assumed once, for both of A's regions.
    assert_eq!(o.deps.common.members.assumptions(MEMBER_A), 1);
    assert_eq!(o.deps.common.members.assumptions(MEMBER_B), 1);
}

#[tokio::test]
async fn an_alarm_from_an_account_the_policy_does_not_know_is_ignored_without_any_call() {
    let o = org().await;
    let before = o.split.waits().len();
    for (account, region) in [(STRANGER, "eu-west-1"), (MEMBER_B, "us-east-1")] {
        let report = o
            .deliver(account, region, "2026-12-07T11:00:00.000+0000")
            .await;
        let alarm_rollback::Decision::Ignore { reason } = &report.outcome else {
            panic!("acted on an alarm from {account} in {region}: {report:?}")
        };
        assert!(
            reason.contains(&format!("account {STRANGER} is not one the policy guards"))
                || reason.contains(&format!(
                    "region us-east-1 is not one the policy guards in account {MEMBER_B}"
                )),
            "{reason}"
        );
        assert!(report.actions.is_empty());
    }
    assert_eq!(
        o.split.waits().len(),
        before,
        "no AWS call (not even STS) for an alarm from elsewhere"
    );
    assert_eq!(o.deps.common.members.assumptions(STRANGER), 0);
    assert!(o.stops().await.is_empty());
}

/// A clock the test moves: the hub's credentials cache reads it.
#[derive(Debug, Clone)]
struct Clock(Arc<Mutex<SystemTime>>);

impl TimeSource for Clock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

#[tokio::test]
async fn credentials_are_reused_while_fresh_and_assumed_again_once_expired() {
    let mut o = org().await;
    let clock = Clock(Arc::new(Mutex::new(SystemTime::now())));
    let hub_split = sdk_config(&o.split.uri())
        .await
        .into_builder()
        .time_source(SharedTimeSource::new(clock.clone()))
        .build();
    o.deps.common.members = Arc::new(safeship::members::MemberAccess::new(
        hub_split,
        safeship::members::MemberRoles {
            role_name: "safeship-member".into(),
            external_id: MEMBER_EXTERNAL_ID.into(),
        },
        "alarm-rollback",
    ));
    let members = o.deps.common.members.clone();
    let deliver = |at: &'static str| {
        let alarm = o.alarm_from(MEMBER_A, "eu-west-1", at);
        let deps = &o.deps;
        async move { alarm_rollback::handle_alarm(deps, &alarm).await.unwrap() }
    };
    for at in [
        "2026-12-07T12:00:00.000+0000",
        "2026-12-07T12:01:00.000+0000",
    ] {
        let report = deliver(at).await;
        assert!(report.actions.iter().all(|a| a.succeeded), "{report:?}");
    }
    assert_eq!(
        members.assumptions(MEMBER_A),
        1,
        "fresh credentials are reused"
    );
    // moto's assumed credentials last an hour. 50 minutes on they are still fresh; 61 minutes
    // on they have expired, and the alarm still acts: the role is assumed again first. (moto
    // dates the new credentials by its own clock, an hour from now, which this test's clock
    // has passed already: they too count as near expiry, and are assumed again per call.)
    *clock.0.lock().unwrap() += Duration::from_secs(50 * 60);
    deliver("2026-12-07T12:50:00.000+0000").await;
    assert_eq!(members.assumptions(MEMBER_A), 1, "still fresh: reused");
    *clock.0.lock().unwrap() += Duration::from_secs(11 * 60);
    let report = deliver("2026-12-07T13:01:00.000+0000").await;
    assert!(report.actions.iter().all(|a| a.succeeded), "{report:?}");
    assert!(members.assumptions(MEMBER_A) >= 2, "expired: assumed again");
    // Every stop was signed by account A's role all the same.
    assert!(o
        .stops()
        .await
        .iter()
        .all(|(_, account, region)| account == MEMBER_A && region == "eu-west-1"));
}

/// The calls [`iam_org`] makes before the IAM-enforcing moto authorises every call.
const SETUP_CALLS: u32 = 6;

/// An IAM policy document allowing `action` on everything.
fn allowing(action: &str) -> String {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]})
        .to_string()
}

/// Creates, on an IAM-enforcing moto, the hub's user (allowed `hub_allows`) and, in member
/// account A, the member role allowed only `member_allows`: exactly [`SETUP_CALLS`] calls.
/// Returns the hub's credentials.
async fn iam_org(
    iam_moto: &IamMoto,
    hub_allows: &str,
    member_allows: &str,
) -> aws_config::SdkConfig {
    let setup = iam_moto.sdk().await;
    let iam = aws_sdk_iam::Client::new(&setup);
    iam.create_user()
        .user_name("safeship-hub")
        .send()
        .await
        .unwrap(); // 1
    let key = iam
        .create_access_key()
        .user_name("safeship-hub")
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap(); // 2
    iam.put_user_policy()
        .user_name("safeship-hub")
        .policy_name("assume-member-roles")
        .policy_document(allowing(hub_allows))
        .send()
        .await
        .unwrap(); // 3
    let admin = member_sdk(&setup, MEMBER_A, "eu-west-1").await;
    let member_iam = aws_sdk_iam::Client::new(&admin); // AssumeRole: 4
    member_iam
        .create_role()
        .role_name("safeship-member")
        .assume_role_policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap(); // 5
    member_iam
        .put_role_policy()
        .role_name("safeship-member")
        .policy_name("safeship")
        .policy_document(allowing(member_allows))
        .send()
        .await
        .unwrap(); // 6
    setup
        .into_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new(
                    key.access_key_id,
                    key.secret_access_key,
                    None,
                    None,
                    "iam-user",
                ),
            ),
        )
        .build()
}

/// alarm-rollback on the IAM-enforcing moto as the hub's user, guarding member account A.
async fn iam_deps(hub: &aws_config::SdkConfig, alarm: &str) -> alarm_rollback::Deps {
    let policy = format!(
        "version: 1
{accounts}applications:
  ledger:
    accounts: [payments-prod]
    deployment-groups:
      ledger-prod:
        environment: prod
        rollback: {{alarms: [{{name: {alarm}}}]}}
",
        accounts = accounts_section()
    );
    // The idempotency table and the bus are the hub's own: on the shared moto, with the
    // static keys, so that only the member account's calls meet IAM.
    let shared = sdk_config(&moto_endpoint()).await;
    let mut common = common_with_policy(&shared, &policy).await;
    common.members = Arc::new(safeship::members::MemberAccess::new(
        hub.clone(),
        safeship::members::MemberRoles {
            role_name: "safeship-member".into(),
            external_id: MEMBER_EXTERNAL_ID.into(),
        },
        "alarm-rollback",
    ));
    alarm_rollback::Deps {
        common,
        codedeploy: aws_sdk_codedeploy::Client::new(hub),
        appconfig: aws_sdk_appconfig::Client::new(hub),
        cloudwatch: aws_sdk_cloudwatch::Client::new(hub),
        ecs: aws_sdk_ecs::Client::new(hub),
    }
}

fn iam_alarm(alarm: &str) -> AlarmStateChange {
    let mut event = sample_event("alarm-eventbridge-metric.json");
    event["account"] = json!(MEMBER_A);
    event["resources"] = json!([format!(
        "arn:aws:cloudwatch:eu-west-1:{MEMBER_A}:alarm:{alarm}"
    )]);
    event["detail"]["alarmName"] = json!(alarm);
    let Inbound::AlarmStateChange(alarm) = normalise(&event).unwrap().event else {
        panic!("the sample is an alarm")
    };
    alarm
}

/// What alarm-rollback answers an alarm from member account A when the hub's user may do
/// `hub_allows` and the member role `member_allows` (on an IAM-enforcing moto), with the role's
/// ARN.
async fn refused(hub_allows: &str, member_allows: &str) -> (String, String) {
    let iam_moto = IamMoto::start(SETUP_CALLS).await;
    let hub = iam_org(&iam_moto, hub_allows, member_allows).await;
    let alarm = unique("ledger-5xx");
    let deps = iam_deps(&hub, &alarm).await;
    let err = alarm_rollback::handle_alarm(&deps, &iam_alarm(&alarm))
        .await
        .unwrap_err()
        .to_string();
    // No credential is ever part of an error.
    assert!(
        !err.contains("SecretAccessKey") && !err.contains("ASIA"),
        "{err}"
    );
    (err, format!("arn:aws:iam::{MEMBER_A}:role/safeship-member"))
}

#[tokio::test]
async fn a_member_role_that_denies_is_an_error_naming_the_account_and_the_role() {
    // The member role may read alarm tags, but nothing of CodeDeploy.
    let (err, role) = refused("sts:AssumeRole", "cloudwatch:ListTagsForResource").await;
    assert!(
        err.contains(&format!("account {MEMBER_A} (payments-prod) in eu-west-1"))
            && err.contains(&role)
            && err.contains("codedeploy:ListDeployments"),
        "{err}"
    );
}

#[tokio::test]
async fn a_hub_refused_the_member_role_is_an_error_naming_the_account_and_the_role() {
    // The hub's own policy does not let it assume roles.
    let (err, role) = refused("cloudwatch:DescribeAlarms", "codedeploy:*").await;
    assert!(
        err.contains(&format!("assuming role {role} in account {MEMBER_A}"))
            && err.contains("AccessDenied"),
        "{err}"
    );
}

#[tokio::test]
async fn a_member_accounts_deployment_is_announced_naming_the_account_and_read_there() {
    let hub = sdk_config(&moto_endpoint()).await;
    let member = aws_sdk_codedeploy::Client::new(&member_sdk(&hub, MEMBER_A, "eu-west-1").await);
    let (app, group) = (unique("checkout"), unique("checkout-prod"));
    codedeploy::named_group(&member, &app, &group, ComputePlatform::Lambda).await;
    let id = codedeploy::deployment(&member, &app, &group, &codedeploy::lambda_appspec("4"))
        .await
        .unwrap();
    let policy = format!(
        "version: 1
{accounts}applications:
  {app}:
    accounts: [payments-prod]
    deployment-groups:
      {group}: {{environment: prod}}
notifications:
  routes:
    - {{channel: slack, min-severity: info}}
    - {{channel: email, min-severity: failure}}
",
        accounts = accounts_section()
    );
    let w = safeship_testkit::notify::world_with_policy(&policy).await;
    let failure_from = |account: &str| {
        let mut event = sample_event("codedeploy-deployment-failure.json");
        event["account"] = json!(account);
        event["resources"] = json!([
            format!("arn:aws:codedeploy:eu-west-1:{account}:application:{app}"),
            format!("arn:aws:codedeploy:eu-west-1:{account}:deploymentgroup:{app}/{group}"),
        ]);
        event["detail"]["application"] = json!(app);
        event["detail"]["deploymentGroup"] = json!(group);
        event["detail"]["deploymentId"] = json!(id);
        event
    };
    let answer = w.deliver(failure_from(MEMBER_A)).await.unwrap();
    assert_eq!(answer["channels"], json!(["slack", "email"]), "{answer}");
    let posted = w.channels.slack.received();
    assert_eq!(posted.len(), 1);
    let fields = posted[0]["blocks"][1]["fields"].to_string();
    assert!(
        fields.contains("*Account*\\npayments-prod (111111111111), eu-west-1"),
        "{fields}"
    );
    let emails = w.channels.emails().await;
    let body = emails[0]["Message"].as_str().unwrap();
    assert!(
        body.contains("Account: payments-prod (111111111111), eu-west-1\n"),
        "{body}"
    );
    // CodeDeploy was asked why in account A, where the deployment is (the hub has none such):
    // an answer, not "could not be read".
    assert!(!body.contains("could not be read"), "{body}");

    // The same event from an account the policy does not know: not announced.
    let answer = w.deliver(failure_from(STRANGER)).await.unwrap();
    assert!(
        answer["ignored"].as_str().is_some_and(
            |why| why.contains(&format!("account {STRANGER} is not one the policy guards"))
        ),
        "{answer}"
    );
    assert_eq!(w.channels.slack.received().len(), 1);
}
