"""Benchmarks `versioned` 1.0.1 on the emulator, operation by operation.

    bench_library.py ENDPOINT BUCKET TABLE ITERATIONS   -> JSON on stdout
    bench_library.py import                             -> import time and RSS

For each operation: wall-clock milliseconds per call, the number of requests
the emulator served during it and the body bytes it received and sent (its
/__emulator/requests and /__emulator/bytes counters, which the Rust side
reads too).
"""

import json
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))


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


def emulator_bytes(endpoint):
    return int(urllib.request.urlopen(endpoint + "/__emulator/bytes").read())


def main_import():
    start = time.perf_counter()
    from versioned.api import s3_and_dynamodb_backend  # noqa: F401

    seconds = time.perf_counter() - start
    json.dump({"import_ms": seconds * 1000, "peak_rss_kib": peak_rss_kib()}, sys.stdout)


def main_bench(endpoint, bucket, table, iterations):
    from interop import configure, repository

    configure(endpoint)
    repo, bsm = repository(bucket, table)
    results = {}

    def measure(op, fn, setup=lambda i: None, n=iterations):
        samples = []
        for i in range(n):
            arg = setup(i)
            before = emulator_requests(endpoint)
            bytes_before = emulator_bytes(endpoint)
            start = time.perf_counter()
            fn(i, arg)
            elapsed = (time.perf_counter() - start) * 1000
            io = emulator_bytes(endpoint) - bytes_before
            samples.append({"ms": elapsed, "calls": emulator_requests(endpoint) - before, "io": io})
        results[op] = samples

    def put(name, content):
        return repo.put_artifact(name=name, content=content, bsm=bsm)

    measure("commit 1 KiB", lambda i, _: put("lib-small", os.urandom(1024)))
    measure("commit 1 MiB", lambda i, _: put("lib-big", os.urandom(1024 * 1024)))
    measure("publish", lambda i, _: repo.publish_artifact_version(name="lib-pub", bsm=bsm),
            setup=lambda i: put("lib-pub", os.urandom(64)))
    measure("get version", lambda i, _: repo.get_artifact_version(name="lib-pub", version=1, bsm=bsm))
    for i in range(50):
        put("lib-list", os.urandom(32))
        repo.publish_artifact_version(name="lib-list", bsm=bsm)
    measure("list 50 versions", lambda i, _: repo.list_artifact_versions(name="lib-list", bsm=bsm))
    measure("put alias", lambda i, _: repo.put_alias(name="lib-list", alias="prod", version=i % 50 + 1,
                                                     secondary_version=(i + 1) % 50 + 1,
                                                     secondary_version_weight=10, bsm=bsm))
    measure("get alias", lambda i, _: repo.get_alias(name="lib-list", alias="prod", bsm=bsm))
    measure("resolve alias", lambda i, _: repo.get_alias(name="lib-list", alias="prod", bsm=bsm).random_artifact())

    def fresh_version(i):
        put("lib-del", os.urandom(64))
        return repo.publish_artifact_version(name="lib-del", bsm=bsm).version

    measure("delete version", lambda i, v: repo.delete_artifact_version(name="lib-del", version=v, bsm=bsm),
            setup=fresh_version)

    def fifty_versions(i):
        name = f"lib-purge-{i}"
        for _ in range(50):
            put(name, os.urandom(32))
            repo.publish_artifact_version(name=name, bsm=bsm)
        return name

    measure("purge 50 keeping 10",
            lambda i, name: repo.purge_artifact_versions(name=name, keep_last_n=10, purge_older_than_secs=0, bsm=bsm),
            setup=fifty_versions, n=3)
    for label, size, n in [("commit 64 MiB", 64, 3), ("commit 256 MiB", 256, 2)]:
        content = os.urandom(1024 * 1024) * size
        measure(label, lambda i, _: put(f"lib-huge-{size}-{i}", content), n=n)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    if sys.argv[1] == "import":
        main_import()
    else:
        main_bench(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
