"""Transform a SAM template to CloudFormation JSON, offline, as CloudFormation would before deploying
(a template without a Transform is only read into JSON).

Usage: transform.py TEMPLATE OUT.json

aws-sam-translator needs a map of AWS managed policy names to ARNs (it asks IAM for it otherwise);
the map below names the ones SAM itself attaches or this stack names, so no network is needed.
"""

import json
import os
import sys

# The pseudo parameters (AWS::Region, AWS::Partition) need a region; any will do offline.
os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")

from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class OfflineManagedPolicies:
    def load(self):
        names = [
            "AWSLambdaBasicExecutionRole",
            "AWSLambdaVPCAccessExecutionRole",
            "AWSLambdaRole",
            "AWSXrayWriteOnlyAccess",
            "AWSXRayDaemonWriteAccess",
        ]
        return {n: f"arn:aws:iam::aws:policy/service-role/{n}" for n in names}


def main(src, out):
    with open(src) as f:
        template = yaml_parse(f.read())
    if "Transform" not in template:
        # Plain CloudFormation (the member stack): read, tags and all, as CloudFormation reads it.
        with open(out, "w") as f:
            json.dump(template, f, indent=1, sort_keys=True)
        return
    # `sam package` uploads each local CodeUri and writes its S3 URI in its place: do the same.
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::Serverless::Function" and not str(props.get("CodeUri", "")).startswith("s3://"):
            props["CodeUri"] = "s3://safeship-artifacts/placeholder.zip"
    try:
        result = transform(template, {}, OfflineManagedPolicies())
    except InvalidDocumentException as e:
        for cause in e.causes:
            print(f"{src}: SAM transform: {cause.message}", file=sys.stderr)
        sys.exit(1)
    with open(out, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
