"""`make smoke STACK=<name>`: post-deploy checks of a deployed stack.

1. `artifact doctor` against the stack's API (signed with your AWS
   credentials): a scratch artifact pushed, published, downloaded and
   purged, checking on the way that a missing key is a 404 (not 403) under
   start-upload's and commit-upload's roles, that S3 refuses bytes other
   than the declared ones, and that the blob-prefix deny lets the
   functions' presigned URLs through.
2. The blob-prefix deny holds for you: a direct PutObject under
   `{prefix}.blobs/` with your credentials is refused (unless you are the
   break-glass role).
3. The alarms: none in ALARM, and whether the e-mail subscription (if any)
   is confirmed.

Exits non-zero when a check fails. Uses boto3 from the project's venv.
"""

import subprocess
import sys
import uuid

import boto3
from botocore.exceptions import ClientError


def main(stack):
    session = boto3.session.Session()
    cfn = session.client("cloudformation")
    described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    params = {p["ParameterKey"]: p.get("ParameterValue", "") for p in described.get("Parameters", [])}
    failures = []

    print(f"== artifact doctor against {outputs['ApiUrl']}")
    doctor = subprocess.run(
        ["cargo", "run", "--locked", "--quiet", "-p", "cli", "--bin", "artifact", "--",
         "--api", outputs["ApiUrl"], "doctor"],
        check=False,
    )
    if doctor.returncode != 0:
        failures.append("artifact doctor")

    print("== blob prefix: direct writes are denied")
    caller = session.client("sts").get_caller_identity()["Arn"]
    key = f"{params.get('S3Prefix', 'versioned-artifacts')}.blobs/smoke-probe/{uuid.uuid4()}"
    s3 = session.client("s3")
    try:
        s3.put_object(Bucket=outputs["BucketName"], Key=key, Body=b"smoke")
        print(f"FAILED  {caller} could PutObject {key}")
        failures.append("blob-prefix deny")
        s3.delete_object(Bucket=outputs["BucketName"], Key=key)
    except ClientError as e:
        code = e.response["Error"]["Code"]
        ok = code == "AccessDenied"
        print(f"{'ok' if ok else 'FAILED'}  PutObject {key} as {caller}: {code}")
        if not ok:
            failures.append("blob-prefix deny")

    print("== alarms")
    cloudwatch = session.client("cloudwatch")
    alarms = []
    for page in cloudwatch.get_paginator("describe_alarms").paginate(AlarmNamePrefix=f"{stack}-"):
        alarms.extend(page["MetricAlarms"])
    firing = [a["AlarmName"] for a in alarms if a["StateValue"] == "ALARM"]
    print(f"{len(alarms)} alarms, {len(firing)} in ALARM {firing}")
    if firing:
        failures.append("alarms in ALARM")
    topic = outputs.get("AlarmTopicArn")
    if topic:
        subscriptions = session.client("sns").list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
        for s in subscriptions:
            state = "pending confirmation" if s["SubscriptionArn"] == "PendingConfirmation" else "confirmed"
            print(f"subscription {s['Protocol']} {s['Endpoint']}: {state}")
        if not subscriptions:
            print(f"no subscription to {topic}: nobody is told (AlarmEmail, or subscribe yourself)")

    if failures:
        print(f"smoke FAILED: {', '.join(failures)}")
        return 1
    print("smoke ok")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1]:
        sys.exit("usage: make smoke STACK=<stack name>")
    sys.exit(main(sys.argv[1]))
