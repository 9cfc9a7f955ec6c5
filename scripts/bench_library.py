"""Benchmarks `versioned` 1.0.1 on the emulator, operation by operation.

    bench_library.py ENDPOINT BUCKET TABLE ITERATIONS [quick]   -> JSON on stdout
    ("quick": the reused configuration only, no sizes)
    bench_library.py import                             -> import time and RSS
    bench_library.py ENDPOINT BUCKET TABLE serve        -> one operation per stdin line

"serve" keeps one library (the reused configuration) and answers each JSON
line on stdin, {"op", "name", ...}, with one JSON line on stdout: the
operation's milliseconds and the emulator's counters over it, so that
another process can interleave its own samples with the library's (the
user-side table of `make bench`). Bytes are drawn before the clock starts.

For each operation: wall-clock milliseconds per call, the number of requests
the emulator served during it, the body bytes it received and sent, and the
milliseconds it spent applying them (its /__emulator/requests, /bytes and
/busy counters, which the Rust side reads too).

Every operation is measured in three ways of holding AWS sessions, in one
process against one store (each on artifacts of its own):

- "reused": `repo.bootstrap(bsm)` once, then every call without `bsm`. The
  bootstrap binds s3pathlib and the library's PynamoDB models to that one
  session for good, so the S3 client and the DynamoDB connection are built
  once and reused by every call;
- "bsm": one `BotoSesManager` passed as `bsm=` to every call. Its S3 client
  is reused, but `use_boto_session` (pynamodb_session_manager) drops the
  model's DynamoDB connection on entry and on exit of every call that
  touches DynamoDB, so each such call builds a new botocore client;
- "per call": a new `BotoSesManager` (built as scripts/interop.py builds it)
  for every call, passed as `bsm=`, inside the timed region: a new boto3
  session and new clients each call.

The output is {"configs": {config: {op: [samples]}}, "sizes": {op: [samples]}};
"sizes" (put_artifact, then publish_artifact_version, at 1 KiB .. 1 GiB, each
size on artifacts of its own) runs in the "reused" configuration.
"""

import json
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))

KIB = 1024
MIB = 1024 * KIB

# Above this a sample of a size is not repeated (the benchmark says so).
SLOW_SAMPLE_SECONDS = 120


def emulator_requests(endpoint):
    return int(urllib.request.urlopen(endpoint + "/__emulator/requests").read())


def peak_rss_kib():
    # VmHWM, not ru_maxrss: the latter keeps the high-water mark of the
    # process image before exec (here, the benchmark that spawned us).
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def emulator_busy_us(endpoint):
    return int(urllib.request.urlopen(endpoint + "/__emulator/busy").read())


def emulator_bytes(endpoint):
    return int(urllib.request.urlopen(endpoint + "/__emulator/bytes").read())


def main_import():
    start = time.perf_counter()
    from versioned.api import s3_and_dynamodb_backend  # noqa: F401

    seconds = time.perf_counter() - start
    json.dump({"import_ms": seconds * 1000, "peak_rss_kib": peak_rss_kib()}, sys.stdout)


def main_bench(endpoint, bucket, table, iterations, mode="full"):
    from boto_session_manager import BotoSesManager
    from interop import configure, repository

    configure(endpoint)
    repo, bsm = repository(bucket, table)
    # Binds s3pathlib and the PynamoDB models to `bsm` for every later call
    # made without one (the "reused" configuration).
    repo.bootstrap(bsm)

    configs = {
        "reused": lambda: None,
        "bsm": lambda: bsm,
        # As interop.repository() builds it.
        "per call": lambda: BotoSesManager(region_name="us-east-1"),
    }

    def measure(results, op, fn, session, setup=lambda i: None, n=iterations, slow_stop=False):
        samples = []
        for i in range(n):
            arg = setup(i)
            before = emulator_requests(endpoint)
            bytes_before = emulator_bytes(endpoint)
            busy_before = emulator_busy_us(endpoint)
            start = time.perf_counter()
            fn(i, arg, session())
            elapsed = (time.perf_counter() - start) * 1000
            busy = (emulator_busy_us(endpoint) - busy_before) / 1000
            io = emulator_bytes(endpoint) - bytes_before
            samples.append({"ms": elapsed, "calls": emulator_requests(endpoint) - before, "io": io,
                            "emulator_ms": busy})
            if slow_stop and elapsed > SLOW_SAMPLE_SECONDS * 1000:
                break
        results[op] = samples

    # Untimed setup goes through the reused clients.
    def put(name, content, b=None):
        return repo.put_artifact(name=name, content=content, bsm=b)

    def publish(name, b=None):
        return repo.publish_artifact_version(name=name, bsm=b)

    out = {"configs": {}, "sizes": {}}
    if mode == "quick":
        configs = {"reused": configs["reused"]}
    for tag, session in configs.items():
        results = out["configs"][tag] = {}
        t = tag.replace(" ", "-")

        def m(op, fn, **kw):
            measure(results, op, fn, session, **kw)

        m("commit 1 KiB", lambda i, _, b: put(f"lib-small-{t}", os.urandom(KIB), b))
        m("commit 1 MiB", lambda i, _, b: put(f"lib-big-{t}", os.urandom(MIB), b))
        m("publish", lambda i, _, b: publish(f"lib-pub-{t}", b),
          setup=lambda i: put(f"lib-pub-{t}", os.urandom(64)))
        m("get version", lambda i, _, b: repo.get_artifact_version(name=f"lib-pub-{t}", version=1, bsm=b))
        for i in range(50):
            put(f"lib-list-{t}", os.urandom(32))
            publish(f"lib-list-{t}")
        m("list 50 versions", lambda i, _, b: repo.list_artifact_versions(name=f"lib-list-{t}", bsm=b))
        m("put alias", lambda i, _, b: repo.put_alias(name=f"lib-list-{t}", alias="prod", version=i % 50 + 1,
                                                      secondary_version=(i + 1) % 50 + 1,
                                                      secondary_version_weight=10, bsm=b))
        m("get alias", lambda i, _, b: repo.get_alias(name=f"lib-list-{t}", alias="prod", bsm=b))
        m("resolve alias",
          lambda i, _, b: repo.get_alias(name=f"lib-list-{t}", alias="prod", bsm=b).random_artifact())

        def fresh_version(i):
            put(f"lib-del-{t}", os.urandom(64))
            return publish(f"lib-del-{t}").version

        m("delete version", lambda i, v, b: repo.delete_artifact_version(name=f"lib-del-{t}", version=v, bsm=b),
          setup=fresh_version)

        def fifty_versions(i):
            name = f"lib-purge-{t}-{i}"
            for _ in range(50):
                put(name, os.urandom(32))
                publish(name)
            return name

        m("purge 50 keeping 10",
          lambda i, name, b: repo.purge_artifact_versions(name=name, keep_last_n=10, purge_older_than_secs=0, bsm=b),
          setup=fifty_versions, n=3)

    # Sizes: each sample its own artifact; put_artifact, then publish it.
    for label, size, n in [("1 KiB", KIB, 10), ("1 MiB", MIB, 10), ("64 MiB", 64 * MIB, 3),
                           ("256 MiB", 256 * MIB, 2), ("1 GiB", 1024 * MIB, 2)][: 0 if mode == "quick" else None]:
        content = os.urandom(min(size, MIB)) * max(1, size // MIB)
        slug = label.replace(" ", "")
        measure(out["sizes"], f"put {label}", lambda i, _, b: put(f"lib-size-{slug}-{i}", content, b),
                configs["reused"], n=n, slow_stop=True)
        done = len(out["sizes"][f"put {label}"])
        measure(out["sizes"], f"publish {label}", lambda i, _, b: publish(f"lib-size-{slug}-{i}", b),
                configs["reused"], n=done, slow_stop=True)
        del content
    json.dump(out, sys.stdout)


def main_serve(endpoint, bucket, table):
    from interop import configure, repository

    configure(endpoint)
    repo, bsm = repository(bucket, table)
    repo.bootstrap(bsm)
    held = {}  # name -> the bytes last put, for "put_same"

    def content(size):
        return os.urandom(size) if size <= MIB else os.urandom(MIB) * (size // MIB)

    def alias_args(req):
        args = {"version": req.get("version")}
        if req.get("secondary_version"):
            args["secondary_version"] = req["secondary_version"]
            args["secondary_version_weight"] = req["weight"]
        return args

    def run(req, data):
        op, name = req["op"], req.get("name")
        if op in ("put", "put_same"):
            repo.put_artifact(name=name, content=data)
        elif op == "pipeline":
            repo.put_artifact(name=name, content=data)
            v = repo.publish_artifact_version(name=name).version
            repo.put_alias(name=name, alias=req["alias"], version=v)
            return v
        elif op == "publish":
            return repo.publish_artifact_version(name=name).version
        elif op == "get_version":
            repo.get_artifact_version(name=name, version=req["version"])
        elif op == "list":
            return len(repo.list_artifact_versions(name=name))
        elif op == "put_alias":
            repo.put_alias(name=name, alias=req["alias"], **alias_args(req))
        elif op == "resolve":
            repo.get_alias(name=name, alias=req["alias"]).random_artifact()
        elif op == "delete_version":
            repo.delete_artifact_version(name=name, version=req["version"])
        elif op == "purge":
            return len(repo.purge_artifact_versions(name=name, keep_last_n=req["keep"], purge_older_than_secs=0))
        elif op == "versions":  # setup: `count` more versions
            for _ in range(req["count"]):
                repo.put_artifact(name=name, content=os.urandom(32))
                repo.publish_artifact_version(name=name)
        else:
            raise ValueError(f"unknown op {op}")
        return None

    for line in sys.stdin:
        req = json.loads(line)
        data = None
        if req["op"] in ("put", "pipeline"):
            data = held[req["name"]] = content(req["size"])
        elif req["op"] == "put_same":
            data = held[req["name"]]
        before, busy_before = emulator_requests(endpoint), emulator_busy_us(endpoint)
        start = time.perf_counter()
        try:
            result, error = run(req, data), None
        except Exception as e:  # reported, not fatal: the other side decides
            result, error = None, f"{type(e).__name__}: {e}"
        elapsed = (time.perf_counter() - start) * 1000
        busy = (emulator_busy_us(endpoint) - busy_before) / 1000
        out = {"ms": elapsed, "calls": emulator_requests(endpoint) - before, "emulator_ms": busy,
               "result": result, "error": error}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    if len(sys.argv) > 4 and sys.argv[4] == "serve":
        main_serve(*sys.argv[1:4])
        sys.exit(0)
    if sys.argv[1] == "import":
        main_import()
    else:
        main_bench(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), *sys.argv[5:6])
