"""Shared helpers for the bigalign benchmarks: child-process jobs, page cache, machine info.

Every timed job runs in a *fresh* Python subprocess so that its peak resident
set size is its own.  The peak is the kernel's high-water mark of the child's
RSS: ``VmHWM`` from the child's ``/proc/self/status``, read just before it
exits.  It is not polled, so short spikes are never missed.  ``ru_maxrss``
from ``os.wait4`` (or ``RUSAGE_CHILDREN``) is kept as a cross-check only: on
Linux it also counts the RSS of the pre-exec image, i.e. of the parent at
spawn time, so it over-reports when the parent is large.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULT_TAG = "@@RESULT@@ "


# --------------------------------------------------------------------------- #
# jobs in fresh subprocesses
# --------------------------------------------------------------------------- #


def _jsonable(o: Any) -> Any:
    from collections.abc import Mapping

    if isinstance(o, Mapping):
        return dict(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def cpu_now() -> float:
    """CPU seconds (user + system, all threads) this process has used so far."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def sched_times() -> tuple[float, float]:
    """(on-CPU s, run-queue wait s) summed over this process's live threads (/proc/self/task/*/schedstat).

    The wait is time a thread was runnable but another process had the CPU: the direct
    measure of how much other sessions' work delayed this job.
    """
    on = wait = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 0.0, 0.0
    for t in tasks:
        try:
            with open(f"/proc/self/task/{t}/schedstat") as fh:
                f = fh.read().split()
            on += int(f[0])
            wait += int(f[1])
        except (OSError, IndexError, ValueError):
            continue
    return on / 1e9, wait / 1e9


def vm_hwm_mb() -> float | None:
    """This process's peak RSS since exec: ``VmHWM`` of /proc/self/status (the kernel's high-water mark)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return None


def emit(result: dict[str, Any]) -> None:
    """Called in the child: hand a JSON result to the parent (one tagged stdout line)."""
    import resource

    result = dict(result)
    mod = sys.modules.get("bigalign")
    result["bigalign_file"] = getattr(mod, "__file__", None)
    result["vmhwm_mb"] = vm_hwm_mb()
    result["self_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    sys.stdout.write(RESULT_TAG + json.dumps(result, default=_jsonable) + "\n")
    sys.stdout.flush()


def run_child(argv: Sequence[str], env: dict[str, str] | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Run ``python argv...`` in a fresh process; return its result plus wall time and peak RSS."""
    cmd = [sys.executable, *argv]
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    cpu0 = _cpu_times()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env, cwd=REPO)
    # communicate() reaps the child itself, so read the pipes in threads and wait4 here.
    import threading

    out: dict[str, str] = {}

    def _drain(name: str, stream: Any) -> None:
        out[name] = stream.read()

    threads = [threading.Thread(target=_drain, args=(k, s)) for k, s in (("out", proc.stdout), ("err", proc.stderr))]
    for t in threads:
        t.start()
    _, status, rusage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    cpu1 = _cpu_times()
    result = None
    for line in out.get("out", "").splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
    if proc.returncode != 0 or result is None:
        raise RuntimeError(
            f"benchmark job failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{out.get('out', '')[-4000:]}\n--- stderr ---\n{out.get('err', '')[-4000:]}"
        )
    # ru_maxrss of a child is NOT its own peak: Linux folds the RSS of the pre-exec image (a copy
    # of this parent, via fork/vfork) into it, so it is at least the parent's RSS at spawn time.
    # The child's VmHWM (its own mm's high-water mark since exec) is the figure we report.
    result["wait4_maxrss_mb"] = rusage.ru_maxrss / 1024.0  # KiB on Linux
    result["peak_rss_mb"] = result["vmhwm_mb"] if result.get("vmhwm_mb") is not None else result["wait4_maxrss_mb"]
    result["process_s"] = elapsed
    # How busy the machine was with *other* work while this child ran (it is shared):
    # all non-idle CPU time minus the child's own, in CPUs (0 .. n_cpus).
    child_cpu = rusage.ru_utime + rusage.ru_stime
    busy = cpu1["busy"] - cpu0["busy"]
    result["child_cpu_s"] = child_cpu
    result["other_cpus"] = max(0.0, busy - child_cpu) / elapsed if elapsed > 0 else 0.0
    result["steal_cpus"] = (cpu1["steal"] - cpu0["steal"]) / elapsed if elapsed > 0 else 0.0
    result["stderr_tail"] = out.get("err", "")[-2000:]
    return result


def _cpu_times() -> dict[str, float]:
    """Machine-wide CPU seconds from /proc/stat: busy (user+nice+system+irq+softirq) and steal."""
    try:
        with open("/proc/stat") as fh:
            f = [int(v) for v in fh.readline().split()[1:]]
    except OSError:
        return {"busy": 0.0, "steal": 0.0}
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq, steal = (f + [0] * 8)[:8]
    return {"busy": (user + nice + system + irq + softirq) / hz, "steal": steal / hz}


def wait_for_idle(max_wait: float, threshold: float = 0.15, window: float = 2.0) -> tuple[float, float]:
    """Wait (up to ``max_wait`` s) until other processes use < ``threshold`` CPUs over ``window`` s.

    The machine is shared with other sessions (test suites, scripts); a job started while
    one of them holds a core measures them, not us.  Returns (seconds waited, last load).
    """
    t0 = time.perf_counter()
    load = 0.0
    while True:
        a = _cpu_times()
        time.sleep(window)
        b = _cpu_times()
        load = (b["busy"] - a["busy"]) / window
        waited = time.perf_counter() - t0
        if load < threshold or waited >= max_wait:
            return waited, load


# --------------------------------------------------------------------------- #
# page cache
# --------------------------------------------------------------------------- #


def _files(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files.extend(f for f in p.rglob("*") if f.is_file())
    return files


def drop_page_cache(paths: Sequence[Path]) -> str:
    """Evict ``paths`` from the page cache.  Returns how it was done."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return "drop_caches"
    except OSError:
        pass
    for f in _files(paths):  # unprivileged: evict these files' clean pages only
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return "posix_fadvise(DONTNEED)"


def warm_page_cache(paths: Sequence[Path]) -> float:
    """Read every file under ``paths`` once (so a 'warm' job finds them cached). Returns seconds."""
    t0 = time.perf_counter()
    buf = bytearray(16 * 2**20)
    for f in _files(paths):
        with open(f, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass
    return time.perf_counter() - t0


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in _files([path]))


# --------------------------------------------------------------------------- #
# machine and code provenance
# --------------------------------------------------------------------------- #


def _lscpu() -> dict[str, str]:
    try:
        txt = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    info = {}
    for line in txt.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            info[k.strip()] = v.strip()
    return info


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


SNAPSHOT_ROOT = HERE / "out" / "snapshot"  # git-ignored (benchmarks/out/)


def snapshot_bigalign() -> tuple[Path, str]:
    """Copy bigalign/ (the .py files) to benchmarks/out/snapshot/<hash>/bigalign and return (dir, hash).

    The package is edited by others while benchmarks run; child jobs import the snapshot (it goes
    first on PYTHONPATH, ahead of the editable install's finder), so one run measures one version.
    """
    import shutil

    src = REPO / "bigalign"
    files = sorted(p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".pyi", ".typed", ".json", ".txt"))
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(src)).encode() + b"\0" + f.read_bytes() + b"\0")
    digest = h.hexdigest()[:12]
    dest = SNAPSHOT_ROOT / digest
    if not (dest / "bigalign" / "__init__.py").exists():
        tmp = SNAPSHOT_ROOT / f".tmp-{digest}-{os.getpid()}"
        for f in files:
            target = tmp / "bigalign" / f.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.rename(dest)
        except OSError:  # someone else made it meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
    return dest, digest


def use_snapshot(path: Path) -> None:
    """Make this process and its children import bigalign from ``path``."""
    sys.path.insert(0, str(path))
    os.environ["PYTHONPATH"] = str(path) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")


def machine_info() -> dict[str, Any]:
    import numpy as np  # noqa: F401  (loads the BLAS so threadpoolctl sees it)
    import threadpoolctl

    cpu = _lscpu()
    mem_total = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem_total = int(line.split()[1]) * 1024
    except OSError:
        pass
    blas = [
        {k: v for k, v in d.items() if k in ("user_api", "internal_api", "version", "num_threads", "architecture", "threading_layer", "prefix")}
        for d in threadpoolctl.threadpool_info()
    ]
    versions = {}
    for mod in ("numpy", "dask", "zarr", "numcodecs", "bigalign", "threadpoolctl"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover
            versions[mod] = None
    import bigalign

    pkg = Path(bigalign.__file__).resolve().parent
    code = {}
    io_files = tuple(sorted(str(p.relative_to(pkg)) for p in (pkg / "io").glob("*.py")))  # the io package
    for rel in ("engine.py", "moments.py", *io_files, "metrics/kernel.py"):
        p = pkg / rel
        if p.exists():
            code[rel] = hashlib.sha256(p.read_bytes()).hexdigest()[:12]
    return {
        "cpu_model": cpu.get("Model name") or platform.processor(),
        "cpu_family_model": f"family {cpu.get('CPU family', '?')}, model {cpu.get('Model', '?')}",
        "logical_cpus": os.cpu_count(),
        "hypervisor": cpu.get("Hypervisor vendor"),
        "memory_gib": round(mem_total / 2**30, 1) if mem_total else None,
        "python": platform.python_version(),
        "blas": blas,
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ},
        "versions": versions,
        "git_head": _git("rev-parse", "--short", "HEAD"),
        "bigalign_dirty": bool(_git("status", "--porcelain", "bigalign")),
        "bigalign_imported_from": str(pkg),
        "bigalign_sha256_12": code,
    }
