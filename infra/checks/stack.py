"""The transformed template, read for the checks: each function's role and its IAM statements,
with CloudFormation's intrinsic functions resolved to example values (account 123456789012,
region eu-west-1, stack "safeship-test") so policy linters see real-looking ARNs."""

import json
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ACCOUNT, REGION, PARTITION, STACK = "123456789012", "eu-west-1", "aws", "safeship-test"

# Example values for parameters whose default is empty or a pattern, so every branch resolves.
EXAMPLE_PARAMETERS = {
    "SlackWebhookSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:safeship/slack-AbCdEf",
    "DatabaseSecretArns": [f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:rds/checkout-AbCdEf"],
    "PermissionsBoundary": f"arn:aws:iam::{ACCOUNT}:policy/boundary",
    # The member stack's hub.
    "HubAccountId": "210987654321",
    "HubRegion": "eu-west-1",
    "ExternalId": "safeship-example-external-id",
    "OrganizationId": "o-exampleorgid",
}


def load(path):
    with open(path) as f:
        return json.load(f)


def _arn(resource_type, logical_id, attribute):
    base = f"{STACK}-{logical_id}"
    if resource_type == "AWS::DynamoDB::Table":
        return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{base}" if attribute == "Arn" else base
    if resource_type == "AWS::SNS::Topic":
        return base if attribute == "TopicName" else f"arn:aws:sns:{REGION}:{ACCOUNT}:{base}"
    if resource_type == "AWS::SQS::Queue":
        if attribute == "Arn":
            return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{base}"
        if attribute == "QueueName":
            return base
        return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{base}"
    if resource_type == "AWS::Events::EventBus":
        return f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{base}" if attribute == "Arn" else base
    if resource_type == "AWS::Lambda::Function":
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{base}" if attribute == "Arn" else base
    if resource_type == "AWS::IAM::Role":
        return f"arn:aws:iam::{ACCOUNT}:role/{base}" if attribute == "Arn" else base
    return f"{base}-{attribute or 'ref'}"


class Resolver:
    """Resolves Ref, Fn::Sub, Fn::GetAtt, Fn::Join and Fn::If (every condition true)."""

    def __init__(self, template):
        self.t = template
        self.params = {}
        for name, p in template.get("Parameters", {}).items():
            value = EXAMPLE_PARAMETERS.get(name, p.get("Default", ""))
            if p.get("Type") == "CommaDelimitedList" and isinstance(value, str):
                value = [v for v in value.split(",") if v]
            self.params[name] = value

    def ref(self, name, attribute=None):
        pseudo = {
            "AWS::AccountId": ACCOUNT,
            "AWS::Region": REGION,
            "AWS::Partition": PARTITION,
            "AWS::StackName": STACK,
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.params:
            return self.params[name]
        resource = self.t["Resources"][name]
        if resource["Type"] == "AWS::Lambda::Function" and attribute in (None, "Arn"):
            fname = resource["Properties"].get("FunctionName")
            if fname is not None:
                fname = self.resolve(fname)
                if attribute is None:
                    return fname
                return f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{fname}"
        return _arn(resource["Type"], name, attribute)

    def resolve(self, v):
        if isinstance(v, list):
            out = []
            for item in v:
                r = self.resolve(item)
                if r is NO_VALUE:
                    continue
                out.append(r)
            return out
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (k, arg), = v.items()
            if k == "Ref":
                return NO_VALUE if arg == "AWS::NoValue" else self.ref(arg)
            if k == "Fn::GetAtt":
                name, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.ref(name, attribute)
            if k == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

                def sub(m):
                    key = m.group(1)
                    if key in extra:
                        return str(self.resolve(extra[key]))
                    if "." in key:
                        name, attribute = key.split(".", 1)
                        return str(self.ref(name, attribute))
                    value = self.ref(key)
                    return ",".join(value) if isinstance(value, list) else str(value)

                return re.sub(r"\$\{([^}!]+)\}", sub, text)
            if k == "Fn::Join":
                sep, items = arg
                return sep.join(str(i) for i in self.resolve(items))
            if k == "Fn::If":
                return self.resolve(arg[1])
            if k == "Fn::Select":
                return self.resolve(arg[1])[int(arg[0])]
        return {k: self.resolve(x) for k, x in v.items() if self.resolve(x) is not NO_VALUE}


NO_VALUE = object()


def function_roles(template):
    """{function logical id: role logical id} for every Lambda function of the stack."""
    out = {}
    for name, r in template["Resources"].items():
        if r["Type"] == "AWS::Lambda::Function":
            role = r["Properties"]["Role"]
            out[name] = role["Fn::GetAtt"][0]
    return out


def role_policies(template, role, resolver=None):
    """[(policy name, resolved policy document)] of a role's inline policies."""
    resolver = resolver or Resolver(template)
    props = template["Resources"][role]["Properties"]
    out = []
    for p in props.get("Policies", []):
        doc = resolver.resolve(p["PolicyDocument"])
        out.append((p["PolicyName"], doc))
    return out


def statements(doc):
    s = doc.get("Statement", [])
    return s if isinstance(s, list) else [s]


def as_list(v):
    return v if isinstance(v, list) else [v]
