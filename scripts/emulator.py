"""Local AWS emulator (moto) for tests and `make dev`.

Serves S3 and DynamoDB on loopback (and every other service moto has on the
same endpoint: the rollout tests use its CloudWatch alarms, the events its
EventBridge). Two things differ from plain `moto_server`:

* Each request is applied under one lock. moto only locks request dispatch, so
  two parallel conditional writes can interleave inside moto and both succeed,
  which DynamoDB never allows (every single-item write and every transaction is
  atomic). Serialising requests makes the emulator at least as strict as AWS,
  so the concurrency tests exercise our code, not moto's races.
* S3 user-metadata keys keep their underscores. Werkzeug drops request
  headers whose names contain `_` (WSGI cannot tell `_` from `-`), so moto
  would lose `x-amz-meta-artifact_sha256`, the very key `versioned` 1.0.1
  writes; S3 keeps it. The raw headers are handed to moto's metadata parser.
* It counts the requests it serves, the body bytes it receives and sends,
  and the time it spends applying requests: `GET /__emulator/requests`,
  `GET /__emulator/bytes` and `GET /__emulator/busy` (microseconds) answer
  the totals (and are not counted), so benchmarks measure AWS calls, data
  moved and the emulator's own work per operation the same way for this
  project and for the Python library. `EMULATOR_TIMINGS=FILE` writes each
  request's operation and milliseconds to FILE; `EMULATOR_PROFILE=DIR`
  profiles the emulator per operation (cProfile, written to DIR at exit).
* A cancelled transaction leaves no record in the stream, as on AWS. moto
  restores the table with a copy of its stream shard, so an iterator taken
  before the transaction (it holds the old shard) returned the cancelled
  writes as records, numbered like the real records that followed: the
  local stream poller then skipped those real records (the checker's
  finding 11: a version the mirror never copied). The shard is now kept
  and cut back instead.
* A transaction snapshots only what it can change. moto deep-copies the whole
  table (every item and every stream record) once per item of every
  TransactWriteItems, to restore it if the transaction is cancelled: with the
  stream on, each transaction costs time proportional to every write the
  table ever took. The snapshot here shares the untouched items (a cancelled
  transaction has not changed them), copies the items the transaction names,
  and is taken once per table; what a cancelled transaction restores is the
  same.
* A request that carried a large body pays for freeing it. moto keeps a
  request's body in a reference cycle, so a 1 GiB PUT was freed by whichever
  later request happened to trigger the garbage collector (a commit's
  transaction took 100 ms more right after a 1 GiB upload, and benchmarks
  by size measured the emulator's memory release). The emulator collects
  right after such a request instead, before it releases the lock.
* PUTs of objects and parts are checked against their declared
  `x-amz-checksum-sha256`, as S3 does: other bytes are refused with 400
  `BadDigest` and nothing is stored (moto stores whatever arrives and
  reports the declared checksum as if it were the bytes'). Presigned URLs
  signed over the checksum thus refuse other bytes here as on AWS
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity-upload.html).
* ListParts answers with S3's root element (`ListPartsResult`; moto says
  `ListPartsResponse`, which the Rust SDK refuses).
* It prints the bound address on its first line, then serves until its
  standard input closes, so a test harness that dies takes the emulator down.

Usage: emulator.py [--port N] [--until-stdin-closes]
"""

import argparse
import base64
import copy
import hashlib
import io
import gc
import os
import sys
import threading
import time
from collections import defaultdict

import moto.dynamodb.models
import moto.s3.responses
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import WSGIRequestHandler, make_server

_request = threading.local()
_metadata_from_headers = moto.s3.responses.metadata_from_headers


def _metadata_with_underscores(headers):
    metadata = _metadata_from_headers(headers)
    for name, value in getattr(_request, "underscore_headers", ()):
        if name.lower().startswith("x-amz-meta-"):
            metadata[name.lower()] = value
    return metadata


moto.s3.responses.metadata_from_headers = _metadata_with_underscores


class _TransactionSnapshots:
    """The `copy` module as moto's DynamoDB backend sees it: a deep copy of a
    table taken for a transaction is a snapshot of the items it names."""

    def __init__(self):
        self.touched = None
        self.taken = {}

    def __getattr__(self, name):
        return getattr(copy, name)

    def deepcopy(self, obj, memo=None):
        if self.touched is None or not isinstance(obj, Table):
            return copy.deepcopy(obj, memo)
        if id(obj) not in self.taken:
            self.taken[id(obj)] = _snapshot(obj, self.touched.get(obj.name, ()))
        return self.taken[id(obj)]


def _snapshot(table, keys):
    snapshot = copy.copy(table)
    snapshot.items = defaultdict(dict)
    for hash_key, value in table.items.items():
        snapshot.items[hash_key] = dict(value) if table.range_key_attr else value
    for hash_key, range_key in keys:
        if hash_key not in table.items:
            continue
        if table.range_key_attr is None:
            snapshot.items[hash_key] = copy.deepcopy(table.items[hash_key])
        elif range_key in table.items[hash_key]:
            snapshot.items[hash_key][range_key] = copy.deepcopy(table.items[hash_key][range_key])
    if table.stream_shard is not None:
        # The restored table keeps the very shard object, cut back to this
        # length if the transaction is cancelled (see below): a stream
        # iterator taken before holds that object.
        snapshot.stream_shard = table.stream_shard
        snapshot.stream_length = len(table.stream_shard.items)
    return snapshot


_snapshots = _TransactionSnapshots()
moto.dynamodb.models.copy = _snapshots
_transact_write_items = DynamoDBBackend.transact_write_items


def _transact_write_items_with_snapshots(self, transact_items):
    touched = {}
    for entry in transact_items:
        for op in entry.values():
            table = self.tables.get(op.get("TableName"))
            key = op.get("Key") or op.get("Item")
            if table is None or not isinstance(key, dict):
                continue
            hash_key = DynamoType(key.get(table.hash_key_attr, {}))
            range_key = DynamoType(key.get(table.range_key_attr, {})) if table.range_key_attr else None
            touched.setdefault(table.name, []).append((hash_key, range_key))
    _snapshots.touched, _snapshots.taken = touched, {}
    try:
        return _transact_write_items(self, transact_items)
    except BaseException:
        # Cancelled: moto put the snapshots back as the tables. Their shared
        # stream shards lose the records the transaction appended, so no
        # iterator (one taken before holds the shard) returns them, and the
        # next real record does not reuse a sequence number a reader
        # already went past. (moto restored a copy of the shard, leaving
        # those phantom records in the one older iterators read: a poller
        # then skipped the real records numbered like them.)
        for snapshot in _snapshots.taken.values():
            shard = snapshot.stream_shard
            if shard is not None and hasattr(snapshot, "stream_length"):
                del shard.items[snapshot.stream_length:]
                shard.table = snapshot
        raise
    finally:
        _snapshots.touched, _snapshots.taken = None, {}


DynamoDBBackend.transact_write_items = _transact_write_items_with_snapshots


def _list_parts_result(body):
    """moto names ListParts' root element `ListPartsResponse`; S3 (and so
    every SDK that checks it) says `ListPartsResult`
    (https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListParts.html)."""
    return body.replace(b"<ListPartsResponse", b"<ListPartsResult", 1).replace(
        b"</ListPartsResponse>", b"</ListPartsResult>", 1
    )


# Bodies above this are freed by the request that carried them (see above).
# A full collection costs tens of milliseconds whatever was freed, which a
# transfer of this size dwarfs; smaller bodies cost little to free later.
LARGE_BODY = 32 << 20


# `EMULATOR_TIMINGS=FILE`: one line per request, its operation and the
# milliseconds it held the lock (to see where an operation's time goes).
TIMINGS = open(os.environ["EMULATOR_TIMINGS"], "a", buffering=1) if os.environ.get("EMULATOR_TIMINGS") else None


def _operation(environ):
    """`rs Query`, `py UpdateItem`, `rs S3 PUT x-id`: the client (the Rust
    SDK, botocore, else `http`: presigned URLs), then the operation."""
    agent = environ.get("HTTP_USER_AGENT", "")
    client = "rs" if "aws-sdk-rust" in agent else "py" if "Botocore" in agent else "http"
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return f"{client} {target.rsplit('.', 1)[-1]}"
    query = environ.get("QUERY_STRING", "")
    return f"{client} S3 {environ.get('REQUEST_METHOD')} {query.split('=')[0]}".strip()


PROFILES = {} if os.environ.get("EMULATOR_PROFILE") else None


class Serialised:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.requests = 0
        self.bytes = 0
        # Microseconds spent applying requests (inside the lock).
        self.busy_us = 0

    def __call__(self, environ, start_response):
        counter = {
            "/__emulator/requests": "requests",
            "/__emulator/bytes": "bytes",
            "/__emulator/busy": "busy_us",
        }.get(environ.get("PATH_INFO"))
        if counter:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [str(getattr(self, counter)).encode()]
        refused = _bad_digest(environ)
        if refused:
            start_response("400 Bad Request", [("Content-Type", "application/xml")])
            return [refused]
        with self.lock:
            started = time.perf_counter()
            self.requests += 1
            self.bytes += int(environ.get("CONTENT_LENGTH") or 0)
            _request.underscore_headers = environ.get("emulator.underscore_headers", [])
            # Drain the response inside the lock: moto builds it lazily sometimes.
            answer = []
            if PROFILES is not None:
                import cProfile
                prof = PROFILES.setdefault(_operation(environ), cProfile.Profile())
                prof.enable()
            body = b"".join(self.app(environ, lambda *args: answer.append(args)))
            if PROFILES is not None:
                prof.disable()
            status, headers, *exc_info = answer[-1]
            if b"<ListPartsResponse" in body[:200]:
                body = _list_parts_result(body)
                headers = [
                    (k, str(len(body)) if k.lower() == "content-length" else v) for k, v in headers
                ]
            self.bytes += len(body)
            start_response(status, headers, *exc_info)
            if int(environ.get("CONTENT_LENGTH") or 0) > LARGE_BODY:
                gc.collect()
            elapsed = time.perf_counter() - started
            self.busy_us += int(elapsed * 1e6)
            if TIMINGS:
                TIMINGS.write(f"{_operation(environ)}\t{elapsed * 1000:.3f}\n")
            return [body]


def _bad_digest(environ):
    """S3's check of a PUT's declared SHA-256 (object or part): the error
    body when the bytes are other ones, else None (the body is put back for
    moto to read)."""
    declared = environ.get("HTTP_X_AMZ_CHECKSUM_SHA256")
    if (
        environ.get("REQUEST_METHOD") != "PUT"
        or not declared
        or environ.get("HTTP_X_AMZ_COPY_SOURCE")
        or "aws-chunked" in environ.get("HTTP_CONTENT_ENCODING", "")
        or environ.get("HTTP_X_AMZ_CONTENT_SHA256", "").startswith("STREAMING")
    ):
        return None
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    got = base64.b64encode(hashlib.sha256(body).digest()).decode()
    if got == declared:
        return None
    return (
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>BadDigest</Code>"
        "<Message>The SHA256 you specified did not match the calculated checksum.</Message>"
        "</Error>"
    ).encode()


class QuietHandler(WSGIRequestHandler):
    def make_environ(self):
        environ = super().make_environ()
        environ["emulator.underscore_headers"] = [(k, v) for k, v in self.headers.items() if "_" in k]
        return environ

    def log_request(self, *args, **kwargs):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--until-stdin-closes", action="store_true")
    args = parser.parse_args()

    app = Serialised(DomainDispatcherApplication(create_backend_app))
    server = make_server(args.host, args.port, app, threaded=True, request_handler=QuietHandler)
    host, port = server.server_address[:2]
    print(f"http://{host}:{port}", flush=True)
    if args.until_stdin_closes:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        sys.stdin.read()
        server.shutdown()
        if PROFILES:
            import pstats
            for op, prof in PROFILES.items():
                prof.dump_stats(os.path.join(os.environ["EMULATOR_PROFILE"], op.replace(" ", "_") + ".prof"))
    else:
        server.serve_forever()


if __name__ == "__main__":
    main()
