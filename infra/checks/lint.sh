#!/usr/bin/env bash
# Lints the SAM template as CloudFormation will deploy it (scripts/test runs this):
#   cfn-lint on the SAM source; aws-sam-translator's transform (offline) to CloudFormation JSON;
#   cfn-lint, checkov and parliament on that; then the template checks (IAM both ways against the
#   code, no fixed physical names, DLQs, alarms, retention: test_template.py).
# Usage: infra/checks/lint.sh VENV   (a venv with cfn-lint, aws-sam-translator, checkov, parliament)
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1
venv=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cd "$root"

template=infra/template.yaml
built="$out/template.json"
"$venv/bin/cfn-lint" "$template"
"$venv/bin/python" "$here/transform.py" "$template" "$built"
echo "cfn-lint (transformed)"
"$venv/bin/cfn-lint" "$built"
echo "checkov (transformed)"
"$venv/bin/checkov" --config-file "$here/checkov.yaml" -f "$built"
"$venv/bin/python" "$here/parliament_check.py" "$built"
SAFESHIP_TRANSFORMED_TEMPLATE="$built" "$venv/bin/python" -W ignore::ResourceWarning \
  -m unittest infra/checks/test_template.py

# The member stack (a StackSet in every member account and region): plain CloudFormation, checked
# by the same linters and against the hub's template (test_member.py).
member=infra/member.yaml
echo "cfn-lint $member"
"$venv/bin/cfn-lint" "$member"
"$venv/bin/python" "$here/transform.py" "$member" "$out/member.json"
echo "checkov $member"
"$venv/bin/checkov" --config-file "$here/checkov.yaml" -f "$out/member.json"
"$venv/bin/python" "$here/parliament_check.py" "$out/member.json"
SAFESHIP_TRANSFORMED_TEMPLATE="$built" SAFESHIP_MEMBER_TEMPLATE="$out/member.json" \
  "$venv/bin/python" -W ignore::ResourceWarning -m unittest infra/checks/test_member.py

# Example SAM services (examples/<name>/template.yaml) are linted as deployed too.
for example in examples/*/template.yaml; do
  [ -e "$example" ] || continue
  echo "cfn-lint $example (source and transformed)"
  "$venv/bin/cfn-lint" "$example"
  "$venv/bin/python" "$here/transform.py" "$example" "$out/example.json"
  "$venv/bin/cfn-lint" "$out/example.json"
done
