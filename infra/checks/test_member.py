"""Checks of the member stack (infra/member.yaml) against the hub's (scripts/test runs them).

    SAFESHIP_MEMBER_TEMPLATE=member.json SAFESHIP_TRANSFORMED_TEMPLATE=hub.json \
        python -m unittest infra/checks/test_member.py

The member role must let the hub do in a member account what its functions do at home, scoped
the same way, and nothing else; only the hub's function roles, with the external id, may assume
it; the events forwarded must be exactly those the hub's rules act on.
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stack  # noqa: E402
import test_template as hub_checks  # noqa: E402

# The hub functions that act in member accounts (through `safeship::members`).
ACTING_IN_MEMBERS = ("AlarmRollbackFunction", "DeployNotifyFunction")
# What those functions do only at the hub: its own table, bus, policy, secret, topic, and the
# assuming itself.
HUB_ONLY = hub_checks.ONCE | hub_checks.POLICY | hub_checks.PUBLISH | {
    "sts:AssumeRole",
    "secretsmanager:GetSecretValue",
    "sns:Publish",
}
# Hub rules whose events the member stack forwards: function, SAM event name.
FORWARDED = {
    ("AlarmRollbackFunction", "AlarmToAlarm"),
    ("DeployNotifyFunction", "DeploymentStateChange"),
    ("DeployNotifyFunction", "EcsDeploymentStateChange"),
}


def member():
    path = os.environ.get("SAFESHIP_MEMBER_TEMPLATE")
    if not path:
        path = os.path.join(tempfile.mkdtemp(), "member.json")
        subprocess.run(
            [sys.executable, os.path.join(stack.ROOT, "infra/checks/transform.py"), os.path.join(stack.ROOT, "infra/member.yaml"), path],
            check=True,
        )
    return stack.load(path)


def hub_source():
    """The hub's SAM source as JSON (its rules' patterns live on the functions' Events)."""
    from samtranslator.yaml_helper import yaml_parse

    with open(os.path.join(stack.ROOT, "infra/template.yaml")) as f:
        return yaml_parse(f.read())


def role_statements(template, role):
    props = template["Resources"][role]["Properties"]
    out = []
    for p in props.get("Policies", []):
        out.extend(stack.statements(p["PolicyDocument"]))
    return out


def hub_statements(hub, function):
    """The hub function's statements as written (Fn::If taken as true), unresolved."""
    role = stack.function_roles(hub)[function]
    out = []
    for s in role_statements(hub, role):
        if isinstance(s, dict) and "Fn::If" in s:
            s = s["Fn::If"][1]
        if isinstance(s, dict) and "Effect" in s:
            out.append(s)
    return out


def resources_as_written(statement):
    """The statement's resources as their Fn::Sub strings (or literals)."""
    out = []
    for r in stack.as_list(statement["Resource"]):
        out.append(r["Fn::Sub"] if isinstance(r, dict) and "Fn::Sub" in r else r)
    return out


class MemberTemplate(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m = member()
        cls.hub = hub_checks.transformed()
        cls.actions = hub_checks.iam_definition()

    def member_grants(self):
        return [s for s in role_statements(self.m, "MemberRole") if s.get("Effect") == "Allow"]

    def test_the_member_role_allows_what_the_hub_does_at_home_and_nothing_else(self):
        expected = set()
        for function in ACTING_IN_MEMBERS:
            expected |= hub_checks.CALLS[function] | set(hub_checks.ALSO_GRANTED.get(function, {}))
        expected -= HUB_ONLY
        got = {a for s in self.member_grants() for a in stack.as_list(s["Action"])}
        self.assertEqual(
            got,
            expected,
            f"granted here, not done at home {sorted(got - expected)}; done at home, not granted here {sorted(expected - got)}",
        )

    def test_each_action_is_scoped_as_at_the_hub_in_the_members_own_account_in_any_region(self):
        at_home = {}
        for function in ACTING_IN_MEMBERS:
            for s in hub_statements(self.hub, function):
                for a in stack.as_list(s["Action"]):
                    at_home.setdefault(a, set()).update(
                        r.replace("${AWS::Region}", "*") if isinstance(r, str) else json.dumps(r)
                        for r in resources_as_written(s)
                    )
        for s in self.member_grants():
            for a in stack.as_list(s["Action"]):
                here = set(resources_as_written(s))
                self.assertTrue(here <= at_home[a], f"{a}: {sorted(here - at_home[a])} is not how the hub scopes it")
                for r in here:
                    if r != "*":
                        self.assertIn("${AWS::AccountId}", r, f"{a}: {r} is not this account's")

    def test_resource_star_only_where_iam_has_no_resource_level_permission(self):
        for s in self.member_grants():
            if "*" in stack.as_list(s["Resource"]):
                for a in stack.as_list(s["Action"]):
                    self.assertIn(a, hub_checks.RESOURCE_STAR, f"{a} on Resource '*'")

    def test_no_statement_grants_an_action_wildcard(self):
        resolved = stack.Resolver(self.m).resolve(self.m["Resources"])
        text = json.dumps(resolved)
        self.assertNotIn('"NotAction"', text)
        for r in resolved.values():
            if r["Type"] != "AWS::IAM::Role":
                continue
            for p in r["Properties"].get("Policies", []):
                for s in stack.statements(p["PolicyDocument"]):
                    for a in stack.as_list(s["Action"]):
                        self.assertNotIn("*", a)

    def test_only_the_hubs_rollback_and_notifier_with_the_external_id_may_assume_the_role(self):
        trust = stack.statements(self.m["Resources"]["MemberRole"]["Properties"]["AssumeRolePolicyDocument"])
        self.assertEqual(len(trust), 1, trust)
        (s,) = trust
        self.assertEqual(s["Effect"], "Allow")
        self.assertEqual(s["Action"], "sts:AssumeRole")
        self.assertEqual(s["Principal"], {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${HubAccountId}:root"}})
        self.assertEqual(s["Condition"]["StringEquals"]["sts:ExternalId"], {"Ref": "ExternalId"})
        self.assertEqual(s["Condition"]["StringEquals"]["aws:PrincipalAccount"], {"Ref": "HubAccountId"})
        patterns = [p["Fn::Sub"] for p in s["Condition"]["ArnLike"]["aws:PrincipalArn"]]
        # CloudFormation names a role it names itself <stack>-<logical id>-<suffix>: the hub's
        # functions' roles are these logical ids.
        roles = stack.function_roles(self.hub)
        self.assertEqual(
            sorted(patterns),
            sorted(f"arn:${{AWS::Partition}}:iam::${{HubAccountId}}:role/${{HubStackName}}-{roles[f]}-*" for f in ACTING_IN_MEMBERS),
        )

    def test_the_role_is_named_as_the_hub_assumes_it(self):
        props = self.m["Resources"]["MemberRole"]["Properties"]
        self.assertEqual(props["RoleName"], {"Ref": "MemberRoleName"})
        hub_params = hub_source()["Parameters"]
        self.assertEqual(self.m["Parameters"]["MemberRoleName"]["Default"], hub_params["MemberRoleName"]["Default"])
        self.assertIn("PermissionsBoundary", props)

    def test_it_forwards_exactly_what_the_hubs_rules_act_on(self):
        source = hub_source()["Resources"]
        hub_patterns = sorted(
            json.dumps(source[f]["Properties"]["Events"][e]["Properties"]["Pattern"], sort_keys=True) for f, e in FORWARDED
        )
        rules = {n: r for n, r in self.m["Resources"].items() if r["Type"] == "AWS::Events::Rule"}
        member_patterns = sorted(json.dumps(r["Properties"]["EventPattern"], sort_keys=True) for r in rules.values())
        self.assertEqual(member_patterns, hub_patterns)
        bus = {"Fn::Sub": "arn:${AWS::Partition}:events:${HubRegion}:${HubAccountId}:event-bus/default"}
        for name, r in rules.items():
            for t in r["Properties"]["Targets"]:
                self.assertEqual(t["Arn"], bus, name)
                self.assertEqual(t["RoleArn"], {"Fn::GetAtt": ["ForwardToHubRole", "Arn"]}, name)
                self.assertIn("MaximumRetryAttempts", t.get("RetryPolicy", {}), name)
                self.assertEqual(t["DeadLetterConfig"]["Arn"], {"Fn::GetAtt": ["ForwardingDLQ", "Arn"]}, name)

    def test_the_forwarding_role_puts_only_on_the_hubs_bus(self):
        (s,) = role_statements(self.m, "ForwardToHubRole")
        self.assertEqual(s["Action"], "events:PutEvents")
        self.assertEqual(s["Resource"], {"Fn::Sub": "arn:${AWS::Partition}:events:${HubRegion}:${HubAccountId}:event-bus/default"})
        (trust,) = stack.statements(self.m["Resources"]["ForwardToHubRole"]["Properties"]["AssumeRolePolicyDocument"])
        self.assertEqual(trust["Principal"], {"Service": "events.amazonaws.com"})
        self.assertIn("aws:SourceAccount", trust["Condition"]["StringEquals"])

    def test_nothing_waits_in_the_dlq_unseen(self):
        alarms = [r for r in self.m["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
        watched = [d["Value"] for a in alarms for d in a["Properties"].get("Dimensions", [])]
        self.assertIn({"Fn::GetAtt": ["ForwardingDLQ", "QueueName"]}, watched)

    def test_the_hub_admits_only_its_organisation_and_assumes_only_member_roles_in_it(self):
        res = self.hub["Resources"]
        policy = res["MemberEventsBusPolicy"]
        self.assertEqual(policy["Condition"], "GuardsOrganisation")
        statement = policy["Properties"]["Statement"]
        self.assertEqual(statement["Action"], "events:PutEvents")
        self.assertEqual(statement["Condition"]["StringEquals"]["aws:PrincipalOrgID"], {"Ref": "OrganizationId"})
        for function in ACTING_IN_MEMBERS:
            assumes = [s for s in hub_statements(self.hub, function) if "sts:AssumeRole" in stack.as_list(s["Action"])]
            self.assertEqual(len(assumes), 1, function)
            (s,) = assumes
            self.assertEqual(resources_as_written(s), ["arn:${AWS::Partition}:iam::*:role/${MemberRoleName}"])
            self.assertEqual(s["Condition"]["StringEquals"]["aws:ResourceOrgID"], {"Ref": "OrganizationId"})


if __name__ == "__main__":
    unittest.main()
