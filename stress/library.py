"""The checker's library writer: `versioned` 1.0.1 on the checker's bucket
and table, one call per line of stdin (`{"method": ..., "kwargs": {...}}`),
one JSON answer per line on stdout: `{"ok": result}` or `{"error": text}`.
A long-lived process, so a call costs the library's own time, not Python's
start-up.

    library.py ENDPOINT BUCKET TABLE

`read` (kwargs `{"name"}`) answers what the library sees of an artifact:
every version's sha256 and the SHA-256 of the bytes it downloads, and every
alias's targets.
"""

import hashlib
import json
import os
import sys
import tempfile


def main():
    endpoint, bucket, table = sys.argv[1:4]
    config = tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False)
    config.write("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n")
    config.close()
    os.environ.update(
        AWS_CONFIG_FILE=config.name,
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
    )
    from boto_session_manager import BotoSesManager
    from versioned.api import s3_and_dynamodb_backend as backend

    repo = backend.Repository(aws_region="us-east-1", s3_bucket=bucket, dynamodb_table_name=table)
    bsm = BotoSesManager(region_name="us-east-1")
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = {"ok": call(repo, bsm, request["method"], request.get("kwargs", {}))}
        except Exception as e:  # the library's refusals are answers too
            answer = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(answer), flush=True)


def call(repo, bsm, method, kwargs):
    if method == "read":
        return read(repo, bsm, kwargs["name"])
    if "content" in kwargs:
        kwargs["content"] = kwargs["content"].encode()
    result = getattr(repo, method)(bsm=bsm, **kwargs)
    if result is None:
        return None
    if hasattr(result, "alias"):
        return {"alias": result.alias, "version": result.version}
    if hasattr(result, "sha256"):
        return {"version": result.version, "sha256": result.sha256}
    return repr(result)


def read(repo, bsm, name):
    versions = {}
    for v in repo.list_artifact_versions(name=name, bsm=bsm):
        got = repo.get_artifact_version(name=name, version=v.version, bsm=bsm)
        try:
            content_sha256 = hashlib.sha256(got.get_content(bsm)).hexdigest()
        except Exception as e:  # named per version, so the checker says which
            content_sha256 = f"cannot download {getattr(got, 's3uri', '?')}: {e}"
        versions[str(v.version)] = {"sha256": got.sha256, "content_sha256": content_sha256}
    aliases = {
        a.alias: {"version": str(a.version), "secondary_version": None if a.secondary_version is None else str(a.secondary_version)}
        for a in repo.list_aliases(name=name, bsm=bsm)
    }
    return {"versions": versions, "aliases": aliases}


if __name__ == "__main__":
    main()
