"""Drives `versioned` 1.0.1 (the Python library) against the emulator, for
the interoperability test (shared/tests/it/interop.rs).

    interop.py write ENDPOINT BUCKET TABLE   library writes, prints what it wrote
    interop.py read  ENDPOINT BUCKET TABLE NAME
                                             library reads NAME, prints all of it
    interop.py call  ENDPOINT BUCKET TABLE METHOD KWARGS_JSON
                                             one library call, e.g. put_alias with
                                             {"name": "a", "alias": "v1.0", "version": 1};
                                             a "content" kwarg is text, sent as bytes;
                                             "content_file" names a file whose bytes
                                             are sent as content
    interop.py serve                         one request per stdin line: the
                                             arguments above as a JSON array,
                                             ["call", ENDPOINT, BUCKET, TABLE, ...];
                                             one answer per stdout line,
                                             {"ok": output} or {"error": traceback}

Output is one JSON document on stdout. `serve` lets the tests pay Python's
start and the library's imports (about a second each on a busy machine)
once per process instead of once per call; every request still gets a
session and a repository of its own, as a process of its own would.
"""

import base64
import json
import os
import sys
import tempfile


CONFIG_FILE = None


def configure(endpoint):
    # boto3 needs path-style addressing against a loopback endpoint.
    global CONFIG_FILE
    if CONFIG_FILE is None:
        config = tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False)
        config.write("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n")
        config.close()
        CONFIG_FILE = config.name
    os.environ.update(
        AWS_CONFIG_FILE=CONFIG_FILE,
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
    )


def repository(bucket, table):
    from boto_session_manager import BotoSesManager
    from versioned.api import s3_and_dynamodb_backend as backend

    repo = backend.Repository(aws_region="us-east-1", s3_bucket=bucket, dynamodb_table_name=table)
    return repo, BotoSesManager(region_name="us-east-1")


def artifact(a):
    return {"name": a.name, "version": a.version, "sha256": a.sha256, "s3uri": a.s3uri}


def alias(a):
    return {
        "name": a.name,
        "alias": a.alias,
        "version": a.version,
        "secondary_version": a.secondary_version,
        "secondary_version_weight": a.secondary_version_weight,
        "version_s3uri": a.version_s3uri,
        "secondary_version_s3uri": a.secondary_version_s3uri,
    }


def write(repo, bsm):
    name = "py-app"
    repo.put_artifact(name=name, content=b"python one", bsm=bsm)
    repo.publish_artifact_version(name=name, bsm=bsm)
    repo.put_artifact(name=name, content=b"python two", bsm=bsm)
    repo.publish_artifact_version(name=name, bsm=bsm)
    repo.put_alias(name=name, alias="prod", version=1, bsm=bsm)
    repo.put_alias(name=name, alias="canary", version=1, secondary_version=2, secondary_version_weight=20, bsm=bsm)
    return read(repo, bsm, name)


def read(repo, bsm, name):
    versions = repo.list_artifact_versions(name=name, bsm=bsm)
    return {
        "names": sorted(repo.list_artifact_names(bsm=bsm)),
        "versions": [artifact(v) for v in versions],
        "get": {v.version: artifact(repo.get_artifact_version(name=name, version=v.version, bsm=bsm)) for v in versions},
        "content": {
            v.version: base64.b64encode(repo.get_artifact_version(name=name, version=v.version, bsm=bsm).get_content(bsm)).decode()
            for v in versions
        },
        "aliases": sorted((alias(a) for a in repo.list_aliases(name=name, bsm=bsm)), key=lambda a: a["alias"]),
        "get_alias": {a.alias: alias(repo.get_alias(name=name, alias=a.alias, bsm=bsm)) for a in repo.list_aliases(name=name, bsm=bsm)},
    }


def call(repo, bsm, method, kwargs):
    if "content" in kwargs:
        kwargs["content"] = kwargs["content"].encode()
    if "content_file" in kwargs:
        with open(kwargs.pop("content_file"), "rb") as f:
            kwargs["content"] = f.read()
    result = getattr(repo, method)(bsm=bsm, **kwargs)
    if result is None:
        return None
    if hasattr(result, "alias"):
        return alias(result)
    if hasattr(result, "sha256"):
        return artifact(result)
    return repr(result)


def run(args):
    command, endpoint, bucket, table = args[:4]
    configure(endpoint)
    repo, bsm = repository(bucket, table)
    if command == "write":
        return write(repo, bsm)
    if command == "read":
        return read(repo, bsm, args[4])
    if command == "call":
        return call(repo, bsm, args[4], json.loads(args[5]))
    raise ValueError(f"unknown command {command!r}")


def parse_models_once():
    # Every request builds sessions and clients of its own, and botocore
    # parses the same service model files for each (about 0.1 s a client):
    # parse each file once per process. botocore treats what it loads as
    # read-only, as the clients of one session already share it.
    from botocore import loaders

    parsed = {}
    load_file = loaders.JSONFileLoader.load_file

    def load_once(self, file_path):
        if file_path not in parsed:
            parsed[file_path] = load_file(self, file_path)
        return parsed[file_path]

    loaders.JSONFileLoader.load_file = load_once


def serve():
    import traceback

    parse_models_once()
    for line in sys.stdin:
        try:
            answer = {"ok": run(json.loads(line))}
        except Exception:
            answer = {"error": traceback.format_exc()}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def main():
    if sys.argv[1:] == ["serve"]:
        serve()
        return
    json.dump(run(sys.argv[1:]), sys.stdout)


if __name__ == "__main__":
    main()
