"""Prints template.yaml as CloudFormation after the SAM transform (JSON).

The contract test (shared/tests/contract.rs) reads what SAM generates that
the template does not say: the roles it creates and the managed policies it
attaches to them. Offline: the managed policies' ARNs are built from their
names instead of being looked up in IAM, and CodeUri (a local path until
`sam build`) is replaced by a placeholder S3 URI.
"""

import json
import os
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

# The AWS managed policies SAM may attach, by name, and where they live.
MANAGED = {
    "AWSLambdaBasicExecutionRole": "service-role/",
    "AWSLambdaDynamoDBExecutionRole": "service-role/",
    "AWSXrayWriteOnlyAccess": "",
    "AWSXRayDaemonWriteAccess": "",
}


class OfflinePolicies:
    def load(self):
        return {name: f"arn:aws:iam::aws:policy/{path}{name}" for name, path in MANAGED.items()}


def main(path):
    with open(path, encoding="utf-8") as f:
        template = yaml_parse(f.read())
    for resource in template["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://placeholder/code.zip"
    # The translator asks boto for a region even with the pseudo parameters given.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    pseudo = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}
    print(json.dumps(transform(template, pseudo, OfflinePolicies()), default=str))


if __name__ == "__main__":
    main(sys.argv[1])
