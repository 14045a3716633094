"""The shared step cache (packager.remote_cache) against a real S3-protocol server: moto's standalone
server on 127.0.0.1, started by these tests; and against a plain mounted directory (file://)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from packager.cache import Cache, Hasher
from packager.remote_cache import RemoteCache

KEY = "5e" * 32
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server in a thread of this process, on a free loopback port."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_url(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; the environment points botocore (s3fs, subprocesses) at the server."""
    env = {**CREDENTIALS, "AWS_ENDPOINT_URL": s3_endpoint}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    import boto3

    bucket = f"cache-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/fleet"


def _scratch(cache: Cache, files: dict[str, bytes]) -> Path:
    out = cache.mkdtemp() / "out"
    for rel, data in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    return out


FILES = {"model.onnx": b"weights" * 1000, "data/labels.npy": b"labels"}


def _store(
    root: Path, url: str, files: dict[str, bytes] = FILES, meta: dict[str, object] | None = None
) -> Cache:
    cache = Cache(root, RemoteCache(url))
    cache.store(KEY, _scratch(cache, files), dict(meta or {"cosine": 0.99}), Hasher())
    return cache


def test_a_store_on_one_machine_is_a_hit_from_s3_on_a_fresh_one(s3_url: str, tmp_path: Path) -> None:
    _store(tmp_path / "runner-a", s3_url)
    fresh = Cache(tmp_path / "runner-b", RemoteCache(s3_url))
    assert fresh.load(KEY, Hasher()) == {"cosine": 0.99}
    out = fresh.entry(KEY) / "out"
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == FILES
    assert fresh.verify(KEY) is None


def test_the_remote_holds_content_addressed_blobs_and_one_record_per_key(s3_url: str, tmp_path: Path) -> None:
    remote = _store(tmp_path / "runner-a", s3_url).remote
    assert remote is not None
    fs, base = remote._filesystem()
    record = json.loads(fs.cat_file(f"{base}/steps/{KEY[:2]}/{KEY}.json"))
    sha = hashlib.sha256(FILES["model.onnx"]).hexdigest()
    assert record["outputs"]["model.onnx"] == {"sha256": sha, "size": len(FILES["model.onnx"])}
    assert fs.cat_file(f"{base}/cas/{sha[:2]}/{sha}") == FILES["model.onnx"]


WRITER = """
import sys, time
from pathlib import Path
from packager.cache import Cache, Hasher
from packager.remote_cache import RemoteCache
url, root, writer, go = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
cache = Cache(root, RemoteCache(url))
out = cache.mkdtemp() / "out"
out.mkdir()
for i in range(24):  # each writer's bytes differ (a non-deterministic tool): a mixed entry would show
    (out / f"f{i:02d}.bin").write_bytes(f"writer {writer} file {i} ".encode() * 400)
while not go.exists():
    time.sleep(0.001)
cache.store("5e" * 32, out, {"writer": writer}, Hasher())
assert cache.remote.enabled, cache.remote.failure
"""


def test_two_writer_processes_racing_on_one_key_leave_it_whole(s3_url: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, s3_url, str(tmp_path / f"runner-{i}"), str(i), str(go)]
        )
        for i in range(2)
    ]
    time.sleep(1.0)  # both have imported and written their files; then they upload at once
    go.touch()
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    fresh = Cache(tmp_path / "reader", RemoteCache(s3_url))
    meta = fresh.load(KEY, Hasher())
    assert meta is not None and meta["writer"] in (0, 1)
    out = fresh.entry(KEY) / "out"
    assert len(list(out.iterdir())) == 24
    assert {p.read_bytes().split(b" file")[0] for p in out.iterdir()} == {f"writer {meta['writer']}".encode()}


def test_a_corrupted_remote_blob_is_a_miss_and_is_deleted(
    s3_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    remote = _store(tmp_path / "runner-a", s3_url).remote
    assert remote is not None
    fs, _ = remote._filesystem()
    blob = remote.blob(hashlib.sha256(FILES["model.onnx"]).hexdigest())
    fs.pipe_file(blob, b"bit rot" * 1000)
    fresh = Cache(tmp_path / "runner-b", RemoteCache(s3_url))
    with caplog.at_level(logging.WARNING, logger="packager.remote_cache"):
        assert fresh.load(KEY, Hasher()) is None
    assert "does not match its sha256" in caplog.text
    assert not fs.exists(blob) and list(fresh.stored_keys()) == []
    assert fresh.remote is not None and fresh.remote.enabled  # a bad blob is a miss, not an outage


def test_a_mounted_directory_serves_as_the_shared_cache(tmp_path: Path) -> None:
    share = tmp_path / "mnt" / "ci-cache"
    _store(tmp_path / "runner-a", f"file://{share}")
    fresh = Cache(tmp_path / "runner-b", RemoteCache(f"file://{share}"))
    assert fresh.load(KEY, Hasher()) == {"cosine": 0.99}
    written = sorted(p.relative_to(share).as_posix() for p in share.rglob("*") if p.is_file())
    assert len(written) == 3 and f"steps/{KEY[:2]}/{KEY}.json" in written  # no temporary names left


def test_a_local_hit_fills_a_remote_added_later(tmp_path: Path) -> None:
    root, share = tmp_path / "runner-a", tmp_path / "share"
    local = Cache(root)
    local.store(KEY, _scratch(local, FILES), {"cosine": 0.99}, Hasher())
    assert Cache(root, RemoteCache(f"file://{share}")).load(KEY, Hasher()) == {"cosine": 0.99}
    assert Cache(tmp_path / "runner-b", RemoteCache(f"file://{share}")).load(KEY, Hasher()) == {
        "cosine": 0.99
    }


def test_an_unreachable_remote_warns_once_and_the_local_cache_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_free_port()}"}.items():
        monkeypatch.setenv(name, value)
    cache = Cache(tmp_path / "runner", RemoteCache("s3://nowhere/fleet"))
    with caplog.at_level(logging.WARNING, logger="packager.remote_cache"):
        assert cache.load(KEY, Hasher()) is None
        cache.store(KEY, _scratch(cache, FILES), {"cosine": 0.99}, Hasher())
        assert cache.load(KEY, Hasher()) == {"cosine": 0.99}
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "goes on with the local cache only" in warnings[0]


def test_packager_build_with_a_cache_url_reuses_another_runners_steps(
    s3_url: str, tiny_project_in, tmp_path: Path
) -> None:
    configs = [tiny_project_in(tmp_path / f"runner-{i}", '["fp16"]') for i in range(2)]
    outputs = []
    for config in configs:
        argv = [sys.executable, "-m", "packager.cli", "build", str(config), "--cache", s3_url]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    counts = [re.search(r"(\d+) steps \((\d+) cached, (\d+) ran\)", out) for out in outputs]
    assert counts[0] is not None and counts[0].group(2) == "0"  # the first runner ran every step
    assert counts[1] is not None and counts[1].groups() == (counts[0].group(1), counts[0].group(1), "0")
    assert (configs[1].parent / ".packager-cache" / "steps").is_dir()  # steps land in the local cache


def test_a_record_naming_a_path_outside_its_entry_is_a_miss(tmp_path: Path) -> None:
    share = tmp_path / "share"
    blob = b"payload"
    sha = hashlib.sha256(blob).hexdigest()
    (share / "cas" / sha[:2]).mkdir(parents=True)
    (share / "cas" / sha[:2] / sha).write_bytes(blob)
    outputs = {"../../escaped.txt": {"sha256": sha, "size": len(blob)}}
    record = {"format": 1, "key": KEY, "meta": {}, "outputs": outputs}
    (share / "steps" / KEY[:2]).mkdir(parents=True)
    (share / "steps" / KEY[:2] / f"{KEY}.json").write_text(json.dumps(record))
    cache = Cache(tmp_path / "runner", RemoteCache(f"file://{share}"))
    assert cache.load(KEY, Hasher()) is None
    assert not list(tmp_path.rglob("escaped.txt"))
