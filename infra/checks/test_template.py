"""Checks of the transformed template (scripts/test runs them after the SAM transform).

    SAFESHIP_TRANSFORMED_TEMPLATE=build.json python -m unittest infra/checks/test_template.py

Without the variable, the template is transformed here first. Needs aws-sam-translator and
parliament (for its copy of the Service Authorization Reference) in the Python environment.

How the code side is read (`code_operations`): a Rust file that names an `aws_sdk_<service>`
crate is an edge file of that service (safeship keeps AWS calls at the edge, one service per
file); every `.operation_name()` call in it whose name is an action of that service in the
Service Authorization Reference is an SDK operation it calls. Shared modules count for a function
by what the function uses of them: the idempotency store and the policy source for every
function, the guard publisher for a function calling `guard.publish(`, and each function of
`safeship::aws::codedeploy` by name.
"""

import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stack  # noqa: E402

ROOT = stack.ROOT

CRATES = {
    "TrafficHookFunction": "traffic-hook",
    "AlarmRollbackFunction": "alarm-rollback",
    "PredeploySnapshotFunction": "predeploy-snapshot",
    "DeployNotifyFunction": "deploy-notify",
    "IntegrityCheckFunction": "integrity-check",
}

ONCE = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
POLICY = {"ssm:GetParameter", "appconfig:StartConfigurationSession", "appconfig:GetLatestConfiguration"}
PUBLISH = {"events:PutEvents"}

# Function -> the IAM actions its code calls (each an SDK operation), and nothing else.
CALLS = {
    "TrafficHookFunction": ONCE | POLICY | PUBLISH | {
        "codedeploy:GetDeployment",
        "codedeploy:PutLifecycleEventHookExecutionStatus",
        "lambda:InvokeFunction",
        "cloudwatch:DescribeAlarms",
        "ecs:DescribeServiceRevisions",
    },
    "AlarmRollbackFunction": ONCE | POLICY | PUBLISH | {
        "codedeploy:ListDeployments",
        "codedeploy:BatchGetDeployments",
        "codedeploy:GetDeployment",
        "codedeploy:StopDeployment",
        "codedeploy:CreateDeployment",
        "appconfig:ListHostedConfigurationVersions",
        "appconfig:GetHostedConfigurationVersion",
        "appconfig:CreateHostedConfigurationVersion",
        "appconfig:StartDeployment",
        "appconfig:ListDeployments",
        "appconfig:GetDeployment",
        "cloudwatch:ListTagsForResource",
        "sts:AssumeRole",
        "ecs:ListServiceDeployments",
        "ecs:DescribeServiceDeployments",
        "ecs:DescribeServiceRevisions",
        "ecs:DescribeServices",
        "ecs:UpdateService",
    },
    "PredeploySnapshotFunction": ONCE | POLICY | PUBLISH | {
        "rds:CreateDBSnapshot",
        "rds:CreateDBClusterSnapshot",
        "rds:DescribeDBSnapshots",
        "rds:DescribeDBClusterSnapshots",
        "rds:DeleteDBSnapshot",
        "rds:DeleteDBClusterSnapshot",
        "codedeploy:GetDeployment",
        "codedeploy:PutLifecycleEventHookExecutionStatus",
        "lambda:InvokeFunction",
        "ecs:DescribeServiceRevisions",
    },
    "DeployNotifyFunction": ONCE | POLICY | {
        "codedeploy:GetDeployment",
        "sts:AssumeRole",
        "secretsmanager:GetSecretValue",
        "sns:Publish",
    },
    "IntegrityCheckFunction": ONCE | POLICY | PUBLISH | {
        "dynamodb:Query",
        "dynamodb:BatchWriteItem",
        "codedeploy:ListDeployments",
        "codedeploy:BatchGetDeployments",
        "secretsmanager:GetSecretValue",
    },
}

# Granted although the code makes no such SDK call, each with why.
ALSO_GRANTED = {
    "AlarmRollbackFunction": {
        "ecs:StopServiceDeployment": "called by the code (alarm-rollback's ecs.rs), but newer than parliament's copy of the Service Authorization Reference, which the code reading goes by",
        "iam:PassRole": "no request of its own: UpdateService to a task definition with a task or execution role passes it (to ecs-tasks.amazonaws.com only)",
    },
    "PredeploySnapshotFunction": {
        "rds:AddTagsToResource": "dependent action of CreateDBSnapshot/CreateDBClusterSnapshot, which tag at creation",
    },
    "IntegrityCheckFunction": {
        "rds-db:connect": "IAM database authentication: the token is signed locally (aws_sdk_rds::auth_token), no request",
    },
}
DLQ_GRANT = "sqs:SendMessage"  # every function: Lambda sends a failed async invocation to its DLQ with the role

# The only actions granted on Resource "*": AWS offers no resource-level permission for them.
RESOURCE_STAR = {
    "codedeploy:PutLifecycleEventHookExecutionStatus": "no resource types in the Service Authorization Reference",
    "codedeploy:StopDeployment": "no resource types in the Service Authorization Reference",
}

MANAGED = "arn:aws:iam::aws:policy/service-role/"

# Properties that set a physical name, by resource type.
NAME_PROPERTIES = {
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Events::EventBus": "Name",
    "AWS::Events::Rule": "Name",
    "AWS::Events::Archive": "ArchiveName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::Scheduler::Schedule": "Name",
    "AWS::SSM::Parameter": "Name",
}


def iam_definition():
    import parliament

    return {svc["prefix"]: {p["privilege"]: p for p in svc["privileges"]} for svc in parliament.iam_definition}


def transformed():
    path = os.environ.get("SAFESHIP_TRANSFORMED_TEMPLATE")
    if path:
        return stack.load(path)
    out = os.path.join(tempfile.mkdtemp(), "template.json")
    subprocess.run(
        [sys.executable, os.path.join(ROOT, "infra/checks/transform.py"), os.path.join(ROOT, "infra/template.yaml"), out],
        check=True,
    )
    return stack.load(out)


def granted(template, function):
    """[(action, resources, condition)] the function's role allows, Fn::If taken as true."""
    role = stack.function_roles(template)[function]
    out = []
    for _, doc in stack.role_policies(template, role):
        for s in stack.statements(doc):
            if s.get("Effect") != "Allow":
                continue
            for a in stack.as_list(s["Action"]):
                out.append((a, stack.as_list(s["Resource"]), s.get("Condition")))
    return out


# --- the code side ---------------------------------------------------------------------------
SERVICE_OF_CRATE = {"eventbridge": "events", "appconfigdata": "appconfig"}
SPECIAL_OPS = {("lambda", "invoke"): "InvokeFunction"}


def _ops_in(text, actions):
    """IAM actions of the SDK operations a Rust edge file calls."""
    crates = set(re.findall(r"aws_sdk_([a-z0-9]+)", text))
    found = set()
    calls = set(re.findall(r"\.([a-z][a-z0-9_]*)\(\)", text))
    for crate in crates:
        service = SERVICE_OF_CRATE.get(crate, crate)
        by_flat = {name.lower(): name for name in actions.get(service, {})}
        for call in calls:
            name = SPECIAL_OPS.get((service, call)) or by_flat.get(call.replace("_", ""))
            if name:
                found.add(f"{service}:{name}")
    return found


def _read(path):
    with open(path) as f:
        return f.read()


def shared_codedeploy_ops(actions):
    """{pub fn of safeship::aws::codedeploy: the IAM actions it calls, with the pub fns it calls}."""
    text = _read(os.path.join(ROOT, "shared/src/aws/codedeploy.rs"))
    parts = re.split(r"\npub (?:async )?fn (\w+)", text)
    bodies = dict(zip(parts[1::2], parts[2::2]))
    header = "use aws_sdk_codedeploy;\n"
    direct = {name: _ops_in(header + body, actions) for name, body in bodies.items()}
    out = {}
    for name, body in bodies.items():
        ops = set(direct[name])
        for other in bodies:
            if other != name and re.search(rf"\b{other}\(", body):
                ops |= direct[other]
        out[name] = ops
    return out


def code_operations(function, actions):
    crate = CRATES[function]
    files = glob.glob(os.path.join(ROOT, "functions", crate, "src", "**", "*.rs"), recursive=True)
    texts = [_read(f) for f in files]
    ops = set()
    for t in texts:
        ops |= _ops_in(t, actions)
    whole = "\n".join(texts)
    shared = lambda p: _ops_in(_read(os.path.join(ROOT, "shared/src", p)), actions)  # noqa: E731
    ops |= shared("policy/source.rs")  # every cold start reads the policy
    if re.search(r"\.once(_resuming|_claiming_by)?\(", whole):
        ops |= shared("idempotency.rs")
    if re.search(r"guard\s*\.publish\(", whole):
        ops |= shared("guard/publisher.rs")
    # A member account's clients (safeship::members): aws-config's AssumeRoleProvider calls STS.
    if re.search(r"\.members\s*\.sdk_for\(|deps\.at\(", whole):
        ops.add("sts:AssumeRole")
    if re.search(r"revert::ecs_revert_(of|within)\(", whole):  # an ECS hook asks whether it is safeship's revert
        ops |= shared("revert.rs")
    for name, fn_ops in shared_codedeploy_ops(actions).items():
        if re.search(rf"codedeploy::{name}\b", whole):
            ops |= fn_ops
    return ops


class TransformedTemplate(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.t = transformed()
        cls.actions = iam_definition()

    def test_every_function_is_in_the_table(self):
        self.assertEqual(set(stack.function_roles(self.t)), set(CALLS))

    def test_no_statement_grants_an_action_wildcard(self):
        # Every policy document of the template: roles, queue policies, and the rest.
        def documents(v, where):
            if isinstance(v, dict):
                if "Statement" in v:
                    yield where, v
                for k, x in v.items():
                    yield from documents(x, f"{where}.{k}")
            elif isinstance(v, list):
                for i, x in enumerate(v):
                    yield from documents(x, f"{where}[{i}]")

        found = list(documents(stack.Resolver(self.t).resolve(self.t["Resources"]), "Resources"))
        self.assertGreaterEqual(len(found), 6)
        for where, doc in found:
            for s in stack.statements(doc):
                for action in stack.as_list(s.get("Action", [])):
                    self.assertNotIn("*", action, f"{where} allows the wildcard action {action}")
                self.assertNotIn("NotAction", s, where)
        for r in self.t["Resources"].values():
            if r["Type"] == "AWS::Lambda::Permission":
                self.assertNotIn("*", r["Properties"]["Action"])

    def test_every_sns_subscription_to_a_function_has_a_redrive_policy(self):
        subs = [r["Properties"] for r in self.t["Resources"].values() if r["Type"] == "AWS::SNS::Subscription"]
        self.assertTrue(subs)
        for sub in subs:
            if sub.get("Protocol") == "lambda":
                self.assertIn("deadLetterTargetArn", sub.get("RedrivePolicy", {}), sub)

    def test_resource_star_only_for_actions_without_resource_level_permissions(self):
        for function in CALLS:
            for action, resources, _ in granted(self.t, function):
                if "*" in resources:
                    self.assertIn(action, RESOURCE_STAR, f"{function}: {action} on Resource '*'")
        for action in RESOURCE_STAR:
            service, name = action.split(":")
            types = [r["resource_type"] for r in self.actions[service][name]["resource_types"] if r["resource_type"]]
            self.assertEqual(types, [], f"{action} takes resource types {types}: scope it")

    def test_each_function_is_granted_exactly_what_its_code_calls(self):
        for function, calls in CALLS.items():
            expected = calls | set(ALSO_GRANTED.get(function, {})) | {DLQ_GRANT}
            got = {a for a, _, _ in granted(self.t, function)}
            self.assertEqual(
                got,
                expected,
                f"{function}: granted but not in the table {sorted(got - expected)}, "
                f"in the table but not granted {sorted(expected - got)}",
            )

    def test_tagging_at_creation_is_what_the_reference_says_creation_needs(self):
        for create in ("CreateDBSnapshot", "CreateDBClusterSnapshot"):
            dependent = {d for r in self.actions["rds"][create]["resource_types"] for d in r["dependent_actions"]}
            self.assertIn("rds:AddTagsToResource", dependent, create)
        # And CreateDeployment needs no other CodeDeploy action (so none is granted for it).
        dependent = {d for r in self.actions["codedeploy"]["CreateDeployment"]["resource_types"] for d in r["dependent_actions"]}
        self.assertEqual(dependent, set())

    def test_the_table_matches_the_sdk_calls_in_the_code(self):
        for function, calls in CALLS.items():
            found = code_operations(function, self.actions)
            self.assertEqual(
                found,
                calls,
                f"{function}: called but not in the table {sorted(found - calls)}, "
                f"in the table but never called {sorted(calls - found)}",
            )

    def test_snapshot_deletes_only_safeship_tagged_snapshots(self):
        # The tag pruning picks its own snapshots by, as the code names it.
        rds = _read(os.path.join(ROOT, "functions/predeploy-snapshot/src/rds.rs"))
        tag = re.search(r'pub const DEPLOYMENT_TAG: &str = "([^"]+)";', rds).group(1)
        deletes = 0
        for action, _, condition in granted(self.t, "PredeploySnapshotFunction"):
            if action.startswith("rds:Delete"):
                deletes += 1
                self.assertEqual(condition, {"Null": {f"aws:ResourceTag/{tag}": "false"}}, action)
        self.assertEqual(deletes, 2)

    def test_own_alarms_reach_slack_through_the_notifier_except_the_notifiers_own(self):
        resources = self.t["Resources"]
        alarms = {n for n, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
        # The notifier's own alarms (its function, its queue, the event-delivery queue its rules
        # share) would have a failing notifier announce its own failure: email alone.
        notifiers = {
            n for n in alarms
            if "DeployNotify" in json.dumps(resources[n]["Properties"].get("Dimensions", []))
            or "EventDeliveryDLQ" in json.dumps(resources[n]["Properties"].get("Dimensions", []))
        }
        self.assertEqual(notifiers, {"DeployNotifyErrorsAlarm", "DeployNotifyThrottlesAlarm", "DeployNotifyDLQAlarm", "EventDeliveryDLQAlarm"})
        rules = [
            r["Properties"] for r in resources.values()
            if r["Type"] == "AWS::Events::Rule"
            and r["Properties"].get("EventPattern", {}).get("source") == ["aws.cloudwatch"]
            and any(t["Arn"] == {"Fn::GetAtt": ["DeployNotifyFunction", "Arn"]} for t in r["Properties"]["Targets"])
        ]
        self.assertEqual(len(rules), 1, rules)
        routed = {a["Fn::GetAtt"][0] for a in rules[0]["EventPattern"]["resources"]}
        self.assertEqual(routed, alarms - notifiers)
        env = resources["DeployNotifyFunction"]["Properties"]["Environment"]["Variables"]
        self.assertEqual(env["SAFESHIP_OWN_ALARM_PREFIX"], {"Fn::Sub": "${AWS::StackName}-"})
        # Every alarm still emails: the Slack route adds to the alarm action, never replaces it.
        for n in alarms:
            self.assertIn({"Ref": "EmailTopic"}, resources[n]["Properties"]["AlarmActions"], n)

    def test_the_snapshot_hook_invokes_only_itself_and_the_traffic_hook(self):
        resolver = stack.Resolver(self.t)
        arn = f"arn:aws:lambda:{stack.REGION}:{stack.ACCOUNT}:function:"
        invoked = []
        for action, resources, _ in granted(self.t, "PredeploySnapshotFunction"):
            if action == "lambda:InvokeFunction":
                invoked += resources
        self.assertEqual(
            sorted(invoked),
            sorted([arn + resolver.ref("PredeploySnapshotFunction"), arn + resolver.ref("TrafficHookFunction")]),
        )
        # The hand-over names the very function the grant allows.
        env = self.t["Resources"]["PredeploySnapshotFunction"]["Properties"]["Environment"]["Variables"]
        self.assertEqual(env["SAFESHIP_TRAFFIC_HOOK_FUNCTION"], {"Ref": "TrafficHookFunction"})

    def test_managed_policies_are_basic_execution_and_vpc_only_in_a_vpc(self):
        for function, role in stack.function_roles(self.t).items():
            arns = self.t["Resources"][role]["Properties"].get("ManagedPolicyArns", [])
            flat = json.dumps(arns)
            self.assertEqual(flat.count("AWSLambdaBasicExecutionRole"), 1, f"{role}: {flat}")
            vpc = flat.count("AWSLambdaVPCAccessExecutionRole")
            if function == "IntegrityCheckFunction":
                self.assertEqual(vpc, 1, f"{role}: {flat}")
                guarded = [a for a in arns if isinstance(a, dict) and "Fn::If" in a]
                self.assertTrue(
                    any(g["Fn::If"][0] == "InVpc" and "AWSLambdaVPCAccessExecutionRole" in json.dumps(g) for g in guarded),
                    f"{role}: the VPC policy must be attached only InVpc: {flat}",
                )
            else:
                self.assertEqual(vpc, 0, f"{role}: {flat}")

    def test_no_fixed_physical_names(self):
        for name, r in self.t["Resources"].items():
            prop = NAME_PROPERTIES.get(r["Type"])
            value = (r.get("Properties") or {}).get(prop) if prop else None
            if value is None:
                continue
            self.assertIn("AWS::StackName", json.dumps(value), f"{name}.{prop} is fixed: {value}")

    def test_hook_functions_are_named_for_codedeploys_role(self):
        resolver = stack.Resolver(self.t)
        for function in ("TrafficHookFunction", "PredeploySnapshotFunction"):
            name = resolver.ref(function)
            self.assertTrue(name.startswith("CodeDeployHook_"), name)
            self.assertLessEqual(len(name.replace(stack.STACK, "x" * 40)), 64, name)

    def test_every_function_has_a_dlq_an_invoke_config_and_a_log_group_with_retention(self):
        res = self.t["Resources"]
        configs = {
            c["Properties"]["FunctionName"]["Ref"]: c["Properties"]
            for c in res.values()
            if c["Type"] == "AWS::Lambda::EventInvokeConfig"
        }
        for function in CALLS:
            props = res[function]["Properties"]
            self.assertIn("TargetArn", props.get("DeadLetterConfig", {}), f"{function} has no DLQ")
            self.assertIn(function, configs, f"{function} has no EventInvokeConfig")
            self.assertIn("MaximumEventAgeInSeconds", configs[function])
            self.assertIn("MaximumRetryAttempts", configs[function])
            group = props.get("LoggingConfig", {}).get("LogGroup", {}).get("Ref")
            self.assertIsNotNone(group, f"{function} logs to no log group of the stack")
            self.assertIn("RetentionInDays", res[group]["Properties"])

    def test_every_rule_target_retries_and_has_a_dlq(self):
        rules = [(n, r) for n, r in self.t["Resources"].items() if r["Type"] == "AWS::Events::Rule"]
        self.assertGreaterEqual(len(rules), 5)
        for name, r in rules:
            for target in r["Properties"]["Targets"]:
                self.assertIn("RetryPolicy", target, name)
                self.assertIn("DeadLetterConfig", target, name)

    def test_every_queue_and_function_has_its_alarms(self):
        res = self.t["Resources"]
        alarms = [r["Properties"] for r in res.values() if r["Type"] == "AWS::CloudWatch::Alarm"]

        def alarmed(metric, dimension, ref):
            return any(
                a.get("MetricName") == metric
                and any(d["Name"] == dimension and ref in json.dumps(d["Value"]) for d in a.get("Dimensions", []))
                and a.get("AlarmActions")
                for a in alarms
            )

        for q, r in res.items():
            if r["Type"] == "AWS::SQS::Queue":
                self.assertTrue(alarmed("ApproximateNumberOfMessagesVisible", "QueueName", q), f"no alarm on {q}")
        for function in CALLS:
            self.assertTrue(alarmed("Errors", "FunctionName", function), f"no Errors alarm on {function}")
            self.assertTrue(alarmed("Throttles", "FunctionName", function), f"no Throttles alarm on {function}")
        for hook in ("TrafficHookFunction", "PredeploySnapshotFunction"):
            self.assertTrue(alarmed("Duration", "FunctionName", hook), f"no Duration alarm on {hook}")
        self.assertTrue(any(a.get("MetricName") == "GuardEventsUnpublished" for a in alarms))

    def test_rollback_and_hooks_have_reserved_concurrency(self):
        for function in ("AlarmRollbackFunction", "TrafficHookFunction", "PredeploySnapshotFunction"):
            self.assertIn("ReservedConcurrentExecutions", self.t["Resources"][function]["Properties"], function)

    def test_cloudwatch_alarm_actions_may_invoke_alarm_rollback(self):
        perms = [
            r["Properties"]
            for r in self.t["Resources"].values()
            if r["Type"] == "AWS::Lambda::Permission"
            and r["Properties"].get("Principal") == "lambda.alarms.cloudwatch.amazonaws.com"
        ]
        self.assertEqual(len(perms), 1)
        self.assertEqual(perms[0]["FunctionName"], {"Ref": "AlarmRollbackFunction"})
        self.assertIn("SourceArn", perms[0])
        self.assertIn("SourceAccount", perms[0])

    def test_outputs_name_what_users_wire_up(self):
        outputs = set(self.t.get("Outputs", {}))
        for o in (
            "TrafficHookFunctionArn",
            "PredeploySnapshotFunctionArn",
            "AlarmRollbackFunctionArn",
            "AlarmTopicArn",
            "EmailTopicArn",
            "GuardEventBusName",
            "GuardHistoryTableName",
        ):
            self.assertIn(o, outputs)

    def test_the_notifier_writes_the_guard_history_it_is_told_of(self):
        notifier = self.t["Resources"]["DeployNotifyFunction"]["Properties"]
        self.assertEqual(
            notifier["Environment"]["Variables"]["SAFESHIP_GUARD_HISTORY_TABLE"],
            {"Ref": "GuardHistoryTable"},
        )
        resolver = stack.Resolver(self.t)
        history = [r for a, r, _ in granted(self.t, "DeployNotifyFunction") if a == "dynamodb:PutItem"]
        self.assertIn(
            [f"arn:aws:dynamodb:{stack.REGION}:{stack.ACCOUNT}:table/{resolver.ref('GuardHistoryTable')}"],
            history,
        )
        table = self.t["Resources"]["GuardHistoryTable"]["Properties"]
        self.assertTrue(table["TimeToLiveSpecification"]["Enabled"])

    def test_history_table_is_retained_and_recoverable(self):
        t = self.t["Resources"]["IntegrityHistoryTable"]
        self.assertEqual(t.get("DeletionPolicy"), "Retain")
        self.assertEqual(t.get("UpdateReplacePolicy"), "Retain")
        self.assertTrue(t["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"])

    def test_guard_event_bus_has_an_archive_with_retention(self):
        archives = [r["Properties"] for r in self.t["Resources"].values() if r["Type"] == "AWS::Events::Archive"]
        self.assertEqual(len(archives), 1)
        self.assertIn("RetentionDays", archives[0])

    def test_slack_secret_is_optional_and_environment_and_boundary_are_parameters(self):
        p = self.t["Parameters"]
        self.assertIn("Default", p["SlackWebhookSecretArn"])
        self.assertIn("Environment", p)
        self.assertIn("PermissionsBoundary", p)


if __name__ == "__main__":
    unittest.main()
