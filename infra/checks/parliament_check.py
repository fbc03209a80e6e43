"""parliament (PyPI) on every inline policy of the transformed template.

Usage: parliament_check.py TRANSFORMED.json
Findings parliament may report and why they are accepted live in parliament.yaml beside this file.
"""

import json
import os
import sys

import parliament
import yaml
from parliament.cli import is_finding_filtered
from parliament import analyze_policy_string

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stack  # noqa: E402


def is_accepted(accepted, finding, policy):
    actions = finding.location.get("actions")
    if actions is None and "string" in finding.location:
        # UNKNOWN_ACTION names its one action as the policy's string.
        actions = [finding.location["string"]]
    return any(
        a["issue"] == finding.issue and a["policy"] == policy and actions is not None and sorted(a["actions"]) == sorted(actions)
        for a in accepted
    )


def main(path):
    parliament.override_config(
        os.path.join(os.path.dirname(parliament.__file__), "community_auditors", "config_override.yaml")
    )
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "parliament.yaml")) as f:
        accepted = yaml.safe_load(f)["accepted"]
    for a in accepted:
        assert a.get("reason"), f"parliament.yaml: {a} has no reason"
    template = stack.load(path)
    resolver = stack.Resolver(template)
    found = 0
    checked = 0
    for name, r in template["Resources"].items():
        if r["Type"] != "AWS::IAM::Role":
            continue
        for policy_name, doc in stack.role_policies(template, name, resolver):
            checked += 1
            policy = analyze_policy_string(json.dumps(doc), filepath=f"{name}/{policy_name}", include_community_auditors=True)
            for f in policy.findings:
                f = parliament.enhance_finding(f)
                if is_finding_filtered(f) or is_accepted(accepted, f, f"{name}/{policy_name}"):
                    continue
                found += 1
                print(f"{name}/{policy_name}: {f.severity} {f.issue}: {f.detail} {f.location}")
    print(f"parliament: {checked} policies, {found} findings")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
