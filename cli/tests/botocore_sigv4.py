"""Signs one request with botocore's SigV4Auth (service execute-api) at a
fixed time and prints the headers it added, as JSON. Reads the request from
stdin: {method, url, headers, body, access_key, secret_key, token?, region,
timestamp: "YYYYMMDDTHHMMSSZ"}."""

import datetime
import json
import sys
from unittest import mock

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

r = json.load(sys.stdin)
when = datetime.datetime.strptime(r["timestamp"], "%Y%m%dT%H%M%SZ")
request = AWSRequest(
    method=r["method"], url=r["url"], data=r["body"].encode(), headers=r["headers"]
)
credentials = Credentials(r["access_key"], r["secret_key"], r.get("token"))
with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
    botocore.auth.SigV4Auth(credentials, "execute-api", r["region"]).add_auth(request)
print(json.dumps({k.lower(): v for k, v in request.headers.items()}))
