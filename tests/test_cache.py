"""The step cache's entries: their record, the stat check on load, corruption, racing writers,
the leftovers of dead processes, and the Hasher's memo across builds."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from packager.cache import ENTRY_FILE, Cache, Hasher
from packager.cache_admin import verify_all

KEY = "ab" * 32


def _scratch(cache: Cache, files: dict[str, bytes]) -> Path:
    out = cache.mkdtemp() / "out"
    for rel, data in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    return out


def _stored(tmp_path: Path, files: dict[str, bytes] | None = None) -> tuple[Cache, Path]:
    cache = Cache(tmp_path / "cache")
    out = cache.store(
        KEY, _scratch(cache, files or {"model.onnx": b"weights", "sub/a.txt": b"a"}), {}, Hasher()
    )
    return cache, out


def test_entry_record_holds_sha256_size_and_mtime_of_each_output(tmp_path: Path) -> None:
    _, out = _stored(tmp_path)
    record = json.loads((out.parent / ENTRY_FILE).read_text())
    assert record["format"] == 2 and record["key"] == KEY and record["meta"] == {}
    assert sorted(record["outputs"]) == ["model.onnx", "sub/a.txt"]
    assert record["outputs"]["model.onnx"] == {
        "sha256": hashlib.sha256(b"weights").hexdigest(),
        "size": 7,
        "mtime_ns": (out / "model.onnx").stat().st_mtime_ns,
    }


def test_a_hit_with_matching_stats_reads_no_output_file(tmp_path: Path) -> None:
    cache, _ = _stored(tmp_path, {"big.bin": os.urandom(1 << 20)})
    hasher = Hasher()
    assert Cache(cache.root).load(KEY, hasher) == {}
    assert hasher.hashed_bytes == 0


def test_a_changed_output_is_detected_by_hash_and_the_entry_removed(tmp_path: Path) -> None:
    cache, out = _stored(tmp_path)
    (out / "model.onnx").write_bytes(b"tampere")  # same size, new mtime: re-hashed, does not match
    assert cache.load(KEY, Hasher()) is None
    assert not cache.entry(KEY).exists()


def test_same_bytes_with_new_mtimes_is_a_hit_and_the_record_is_refreshed(tmp_path: Path) -> None:
    # A CI cache restored from an archive keeps the bytes but not the mtimes (or only to the second).
    cache, out = _stored(tmp_path)
    os.utime(out / "model.onnx", ns=(1_000_000_000, 1_000_000_000))
    first = Hasher()
    assert cache.load(KEY, first) == {} and first.hashed_bytes == 7
    second = Hasher()
    assert cache.load(KEY, second) == {} and second.hashed_bytes == 0


def test_verify_catches_a_change_that_kept_size_and_mtime(tmp_path: Path) -> None:
    cache, out = _stored(tmp_path)
    path = out / "model.onnx"
    st = path.stat()
    with path.open("r+b") as fh:
        fh.write(b"W")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cache.verify(KEY) == "model.onnx does not match its recorded sha256"
    report = verify_all(cache)
    assert report.checked == 1 and list(report.removed) == [KEY]
    assert not cache.entry(KEY).exists()


def test_a_missing_output_is_a_miss(tmp_path: Path) -> None:
    cache, out = _stored(tmp_path)
    (out / "sub" / "a.txt").unlink()
    assert cache.load(KEY, Hasher()) is None


def test_storing_a_key_that_exists_keeps_the_first_entry_and_gives_its_meta(tmp_path: Path) -> None:
    cache, out = _stored(tmp_path)
    meta: dict[str, object] = {"run": 2}
    again = cache.store(KEY, _scratch(cache, {"model.onnx": b"other bytes"}), meta, Hasher())
    assert again == out and (out / "model.onnx").read_bytes() == b"weights"
    assert meta == {}  # the kept entry's metadata, so the caller describes the files it gets


def test_storing_over_a_corrupt_entry_replaces_it(tmp_path: Path) -> None:
    cache, out = _stored(tmp_path)
    (out / "model.onnx").write_bytes(b"broken!")
    cache.store(KEY, _scratch(cache, {"model.onnx": b"rebuilt"}), {"run": 2}, Hasher())
    assert (out / "model.onnx").read_bytes() == b"rebuilt" and cache.load(KEY, Hasher()) == {"run": 2}


def _racing_writer(root: str, writer: int, barrier: object, results: object) -> None:
    cache = Cache(Path(root))
    # Each writer's bytes differ (a non-deterministic tool): a mixed entry would show.
    out = _scratch(cache, {f"f{i:02d}.bin": f"writer {writer} file {i}".encode() * 500 for i in range(20)})
    meta: dict[str, object] = {"writer": writer}
    barrier.wait()  # type: ignore[attr-defined]
    final = cache.store(KEY, out, meta, Hasher())
    writers = {(p.read_bytes().split(b" file")[0]) for p in final.iterdir()}
    results.put((writer, meta["writer"], sorted(w.decode() for w in writers)))  # type: ignore[attr-defined]


def test_processes_storing_one_key_at_once_leave_one_whole_entry(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(6), ctx.Queue()
    procs = [
        ctx.Process(target=_racing_writer, args=(str(tmp_path / "cache"), i, barrier, results))
        for i in range(6)
    ]
    for proc in procs:
        proc.start()
    got = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    cache = Cache(tmp_path / "cache")
    assert list(cache.stored_keys()) == [KEY] and cache.verify(KEY) is None
    kept = cache.record(KEY).meta["writer"]
    # Every writer got the one kept entry: its metadata, and files all written by that writer.
    assert all(meta_writer == kept and files == [f"writer {kept}"] for _, meta_writer, files in got)
    assert not [p for p in (cache.root / "tmp").iterdir() if "-stage-" in p.name or "-trash-" in p.name]


HOLDER = """
import sys, tempfile, time
from pathlib import Path
from packager.cache import Cache
cache = Cache(Path(sys.argv[1]))
owned = cache.mkdtemp()
legacy = tempfile.mkdtemp(prefix=".tmp-", dir=cache.root)
print(owned, legacy, flush=True)
time.sleep(120)
"""


def test_temp_folders_of_a_live_build_are_kept_and_of_a_killed_one_removed(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE, text=True)
    try:
        owned, legacy = (Path(p) for p in holder.stdout.readline().split())  # type: ignore[union-attr]
        assert Cache(root).reap() == [] and owned.is_dir() and legacy.is_dir()
    finally:
        holder.kill()
        holder.wait()
    assert sorted(Cache(root).reap()) == sorted([owned, legacy])
    assert not owned.exists() and not legacy.exists()
    dead_lease = owned.name.split("-", 1)[0]
    assert not (root / "locks" / f"{dead_lease}.lock").exists()  # reaped with its folders


def test_a_fresh_legacy_scratch_folder_survives_while_another_build_holds_a_lease(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    other = Cache(root)
    other.mkdtemp()  # another build, alive in this process
    legacy = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    assert Cache(root).reap() == [] and legacy.is_dir()


def test_hasher_memo_answers_for_an_unchanged_file_across_builds(tmp_path: Path) -> None:
    data = tmp_path / "images.bin"
    data.write_bytes(b"0123456789")
    os.utime(data, ns=(time.time_ns() - 10**10,) * 2)  # older than the racy window
    memo = tmp_path / "cache" / "hashes.jsonl"
    first = Hasher(memo=memo).file(data)
    # Same size, mtime and inode but other bytes: only a memo hit can still answer the old digest.
    st = data.stat()
    with data.open("r+b") as fh:
        fh.write(b"X")
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = Hasher(memo=memo)
    assert again.file(data) == first and again.hashed_bytes == 0
    assert Hasher().file(data) != first


def test_hasher_memo_skips_a_file_modified_just_now(tmp_path: Path) -> None:
    data = tmp_path / "fresh.bin"
    data.write_bytes(b"new")
    memo = tmp_path / "hashes.jsonl"
    Hasher(memo=memo).file(data)
    assert not memo.exists()


def test_hasher_memo_skips_torn_lines_and_compacts(tmp_path: Path) -> None:
    data = tmp_path / "d.bin"
    data.write_bytes(b"abc")
    os.utime(data, ns=(time.time_ns() - 10**10,) * 2)
    memo = tmp_path / "hashes.jsonl"
    stale = json.dumps(["sha256", str(data), 1, 1, 1, "0" * 64]) + "\n"
    memo.write_text(stale * 200 + '["torn", 1,\n')
    hasher = Hasher(memo=memo)
    assert hasher.file(data) == Hasher().file(data)
    assert len(memo.read_text().splitlines()) <= 2


def test_remember_from_two_processes_never_fails(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from packager.cache import Cache\n"
        "c = Cache(Path(sys.argv[1]))\n"
        "for i in range(300): c.remember('quantize[m:fp16]', {'i': i})\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "c")]) for _ in range(2)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    assert Cache(tmp_path / "c").last_run("quantize[m:fp16]") == {"i": 299}


def test_a_derived_fact_is_computed_once_across_builds_while_the_file_is_unchanged(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("a.jpg b.jpg 1\n")
    os.utime(pairs, ns=(time.time_ns() - 10**10,) * 2)
    memo, calls = tmp_path / "hashes.jsonl", []

    def count_lines(path: Path) -> dict[str, int]:
        calls.append(path)
        return {"lines": len(path.read_text().splitlines())}

    assert Hasher(memo=memo).derived(pairs, "lines", count_lines) == {"lines": 1}
    assert Hasher(memo=memo).derived(pairs, "lines", count_lines) == {"lines": 1}
    assert len(calls) == 1
    pairs.write_text("a.jpg b.jpg 1\nb.jpg c.jpg 0\n")
    assert Hasher(memo=memo).derived(pairs, "lines", count_lines) == {"lines": 2}
    assert len(calls) == 2


def test_a_derived_fact_and_the_digest_of_one_file_are_kept_apart(tmp_path: Path) -> None:
    data = tmp_path / "model.onnx"
    data.write_bytes(b"weights")
    os.utime(data, ns=(time.time_ns() - 10**10,) * 2)
    memo = tmp_path / "hashes.jsonl"
    Hasher(memo=memo).derived(data, "external-data", lambda path: ["model.onnx.data"])
    again = Hasher(memo=memo)
    assert again.file(data) == hashlib.sha256(b"weights").hexdigest() and again.hashed_bytes == 7
    assert again.derived(data, "external-data", lambda path: []) == ["model.onnx.data"]
