"""The native library's cache: private to its user, checked before anything in it is loaded, never a crash.

Builds here use a stand-in compiler that links the library this machine
already built (``good``): each case then costs milliseconds, not a compile.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tracer import native


@pytest.fixture
def good(tmp_path_factory) -> Path:
    library = native.library()
    if library is None:
        pytest.skip(f"no native library here: {native.failure()}")
    copy = tmp_path_factory.mktemp("good") / "good.so"
    shutil.copy(library._name, copy)
    return copy


@pytest.fixture
def fresh(monkeypatch, tmp_path, good):
    """A private cache in tmp_path, a temp dir of its own, and a compiler that links ``good`` at once."""
    compiler = tmp_path / "fake-cc"
    compiler.write_text(
        "#!/bin/sh\n"
        'case "$*" in *--version*) echo "fake cc 1"; exit 0;; esac\n'
        'out=""; prev=""; for a in "$@"; do [ "$prev" = "-o" ] && out="$a"; prev="$a"; done\n'
        f'case " $* " in *" -c "*) : > "$out";; *) cp "{good}" "$out";; esac\n'
    )
    compiler.chmod(0o755)
    monkeypatch.setenv("CC", str(compiler))
    monkeypatch.setenv("TRACER_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    native.library.cache_clear()
    yield tmp_path
    native.library.cache_clear()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_cache_folder_is_made_private_and_the_hash_recorded(fresh, good):
    assert native.library() is not None
    cache = fresh / "cache"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    [library] = cache.glob("*.so")
    assert library.with_suffix(".sha256").read_text().strip() == _digest(library) == _digest(good)


def test_a_cache_folder_others_can_write_is_not_used(fresh):
    shared = fresh / "cache"
    shared.mkdir()
    shared.chmod(0o1777)  # a shared TRACER_CACHE_DIR: anyone could plant a library there
    with pytest.warns(RuntimeWarning, match=r"not cached where another user could replace them \(.*cache is "
                                            r"writable by others \(mode 1777\)\); using .*tracer-native-\d+") as said:
        assert native.library() is not None
    assert len(said) == 1 and not list(shared.iterdir())
    fallback = fresh / "tmp" / f"tracer-native-{os.geteuid()}"
    assert stat.S_IMODE(fallback.stat().st_mode) == 0o700 and list(fallback.glob("*.so"))


def test_folders_of_another_user_turn_the_native_pass_off_in_one_line(fresh, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 4242)  # every folder here now belongs to someone else
    assert native.library() is None
    assert native.failure().startswith("no private writable cache directory: ")
    assert "is owned by uid" in native.failure() and "not this user (4242)" in native.failure()
    assert "\n" not in native.failure()


def _wrong_library(path: Path) -> None:
    """A library of someone else's: it loads, but holds none of the kernels (and here its hash is recorded)."""
    source = path.with_suffix(".c")
    source.write_text("int not_ours(void) { return 1; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(path), str(source)], check=True)
    source.unlink()
    path.with_suffix(".sha256").write_text(_digest(path) + "\n")


# (what happened to the cached library, how to do it): each is a cache miss, rebuilt, never loaded, never a crash.
DAMAGED = [
    ("truncated", lambda so: so.write_bytes(so.read_bytes()[: so.stat().st_size // 2])),  # was SIGBUS inside dlopen
    ("a byte changed", lambda so: so.write_bytes(so.read_bytes()[:-1] + b"\x01")),
    ("another library, hash recorded", _wrong_library),  # was AttributeError
    ("writable by others", lambda so: so.chmod(0o666)),
    ("no hash recorded", lambda so: so.with_suffix(".sha256").unlink()),
    ("hash of something else", lambda so: so.with_suffix(".sha256").write_text("0" * 64)),
]


@pytest.mark.parametrize("damage", [d for _, d in DAMAGED], ids=[name for name, _ in DAMAGED])
def test_a_damaged_cached_library_is_a_cache_miss(fresh, good, damage):
    """Damaged between runs: the next run rebuilds it and loads the kernels (in a process of its own, as a
    later run would: a library already mapped in a process is never changed under it)."""
    library = native._build(os.environ["CC"], native.MARCH, openmp=True)
    damage(library)
    env = {**os.environ, "TMPDIR": str(fresh / "tmp")}
    run = subprocess.run([sys.executable, "-c", "from tracer import native; lib = native.library(); "
                          "print(lib.threading if lib else native.failure())"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [native.library().threading]  # the same build as a clean cache gives
    assert library.is_file() and _digest(library) == _digest(good)


def test_a_failed_build_is_remembered_for_a_while_then_tried_again(fresh, monkeypatch):
    calls = fresh / "calls"
    compiler = fresh / "failing-cc"
    compiler.write_text(f'#!/bin/sh\ncase "$*" in *--version*) echo "failing cc"; exit 0;; esac\n'
                        f'echo run >> "{calls}"; echo "disk full" >&2; exit 1\n')
    compiler.chmod(0o755)
    monkeypatch.setenv("CC", str(compiler))
    assert native.library() is None
    failed = sorted((fresh / "cache").glob("*.failed"))
    assert len(failed) == 2  # the OpenMP build, then the pthreads one
    notes = [json.loads(marker.read_text()) for marker in failed]
    [note] = [note for note in notes if note["message"] == native.failure()]  # the pthreads build's, said last
    assert "disk full" in note["message"]
    assert "not tried again before" in note["message"] and "\n" not in note["message"]
    compiled = len(calls.read_text().splitlines())
    native.library.cache_clear()  # the next start, within FAILURE_RETRY_S: the note stands, no compile
    assert native.library() is None and len(calls.read_text().splitlines()) == compiled
    for marker in failed:  # a day later: tried again
        marker.write_text(json.dumps({**note, "time": time.time() - native.FAILURE_RETRY_S - 1}))
    native.library.cache_clear()
    assert native.library() is None and len(calls.read_text().splitlines()) > compiled


def test_a_hanging_compiler_is_stopped_by_the_timeout(fresh, monkeypatch):
    compiler = fresh / "hanging-cc"
    compiler.write_text('#!/bin/sh\ncase "$*" in *--version*) echo "hanging cc"; exit 0;; esac\nexec sleep 60\n')
    compiler.chmod(0o755)
    monkeypatch.setenv("CC", str(compiler))
    monkeypatch.setenv("TRACER_CC_TIMEOUT", "1")
    started = time.monotonic()
    assert native.library() is None
    assert time.monotonic() - started < 30
    assert "did not finish in 1 s (TRACER_CC_TIMEOUT sets the limit)" in native.failure()
