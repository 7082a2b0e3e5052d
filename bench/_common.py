"""Shared helpers for the benchmarks: synthetic data, timing, peak memory, tables, results files.

Every benchmark script imports this module from its own folder (``python bench/bench_x.py``),
so it uses only the standard library, numpy and psutil at import time.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
TMP_DIR = RESULTS_DIR / "tmp"  # git-ignored: cached synthetic arrays, worker scratch
REPO_DIR = BENCH_DIR.parent
if str(REPO_DIR) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO_DIR))


# --------------------------------------------------------------------------- data

def make_features(n: int, d: int = 512, n_classes: int = 10, *, modes_per_class: int = 3,
                  noise: float = 14.0, seed: int = 0, chunk: int = 100_000):
    """Synthetic embeddings: a Gaussian mixture in ``d`` dims, rows L2-normalised.

    Each class owns ``modes_per_class`` sub-modes (centre + spread) so that clustering-based
    strategies see structure finer than the classes, as in real embedding spaces. The array
    is written chunk by chunk in float32 so that N = 1M, D = 512 peaks near its own 2 GB.
    With the default noise a logistic regression on 1 random label per class reaches about
    60% accuracy, on 10 per class about 98%: easy enough to learn, hard enough to matter.

    Returns ``X`` (n, d) float32 with unit rows and ``y`` (n,) int64 class ids.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, 1, d)).astype(np.float32)
    modes = (centres + 0.6 * rng.standard_normal((n_classes, modes_per_class, d))).reshape(-1, d)
    modes = modes.astype(np.float32) * np.float32(np.sqrt(1.0 / d) * 4.0)
    y = rng.integers(0, n_classes, size=n).astype(np.int64)
    mode = y * modes_per_class + rng.integers(0, modes_per_class, size=n)
    X = np.empty((n, d), dtype=np.float32)
    scale = np.float32(noise / np.sqrt(d))
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        block = rng.standard_normal((b - a, d), dtype=np.float32)
        block *= scale
        block += modes[mode[a:b]]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        X[a:b] = block
    return X, y


def cached_features(n: int, d: int = 512, n_classes: int = 10, seed: int = 0):
    """``make_features`` cached as .npy files under bench/results/tmp (workers memory-map them)."""
    TMP_DIR.mkdir(parents=True, exist_ok=True)
    stem = TMP_DIR / f"gmm_n{n}_d{d}_c{n_classes}_s{seed}"
    xp, yp = stem.with_suffix(".X.npy"), stem.with_suffix(".y.npy")
    if not (xp.exists() and yp.exists()):
        X, y = make_features(n, d, n_classes, seed=seed)
        np.save(xp, X)
        np.save(yp, y)
    return xp, yp


def initial_labels(y: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """A label vector (-1 = unlabelled) with ``per_class`` random oracle labels per class."""
    rng = np.random.default_rng(seed)
    labels = np.full(len(y), -1, dtype=np.int64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False)
        labels[pick] = c
    return labels


# --------------------------------------------------------------------------- timing and memory

def percentiles(times_s, qs=(50, 95)) -> dict:
    """{'p50': ms, 'p95': ms, ...} from a list of durations in seconds."""
    arr = np.asarray(times_s, dtype=float) * 1000.0
    return {f"p{q}": float(np.percentile(arr, q)) for q in qs}


def rss_bytes() -> int:
    """Current resident set size of this process."""
    import psutil

    return psutil.Process().memory_info().rss


def reset_peak_rss() -> bool:
    """Reset this process's peak-RSS mark to its current RSS (Linux: ``clear_refs`` 5).

    Without it, a transient peak from imports or loading data would hide (or inflate) the
    peak of the call being measured. Returns False where the kernel does not allow it.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak resident set size of this process since start or the last ``reset_peak_rss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def run_worker(cmd: list[str], *, timeout_s: float, mem_cap_bytes: int, poll_s: float = 0.05,
               env: dict | None = None) -> dict:
    """Run a worker subprocess that prints one JSON object as its last stdout line.

    The parent polls the child's RSS (psutil) and kills it past ``mem_cap_bytes`` or
    ``timeout_s``, so a peer that would take forever or swap the machine is reported
    instead of hanging. Returns the worker's dict, or {'status': 'timeout' | 'oom' | 'error', ...}.
    """
    import psutil

    import tempfile

    t0 = time.perf_counter()
    # Files, not pipes: a chatty worker must never block on a full pipe while we poll.
    fout, ferr = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(cmd, stdout=fout, stderr=ferr, text=True, start_new_session=True, env=env)
    ps = psutil.Process(proc.pid)
    peak_seen, status = 0, None
    while proc.poll() is None:
        try:
            rss = sum(p.memory_info().rss for p in [ps, *ps.children(recursive=True)])
        except psutil.Error:
            rss = 0
        peak_seen = max(peak_seen, rss)
        if rss > mem_cap_bytes:
            status = "oom"
        elif time.perf_counter() - t0 > timeout_s:
            status = "timeout"
        if status:
            _kill_tree(ps)
            break
        time.sleep(poll_s)
    proc.wait()
    fout.seek(0)
    ferr.seek(0)
    out, err = fout.read(), ferr.read()
    fout.close()
    ferr.close()
    wall = time.perf_counter() - t0
    if status:
        return {"status": status, "wall_s": wall, "sampled_peak_rss": peak_seen}
    lines = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (err or out).strip().splitlines()[-3:]
        return {"status": "error", "wall_s": wall, "error": " | ".join(tail)[-400:]}
    res = json.loads(lines[-1])
    res.setdefault("status", "ok")
    res["sampled_peak_rss"] = peak_seen
    return res


def _kill_tree(ps) -> None:
    import psutil

    procs = [ps]
    try:
        procs += ps.children(recursive=True)
    except psutil.Error:
        pass
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=10)


# --------------------------------------------------------------------------- machine and results

def machine_info(device: str | None = None) -> dict:
    """The facts needed to read a figure: CPU, cores, RAM, load, GPU, library versions."""
    import psutil

    info = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    for mod in ("numpy", "torch", "sklearn", "faiss", "skactiveml"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", "?")
        except Exception:  # an optional peer or backend that is not installed
            info[mod] = None
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception:
        pass
    if device is not None:
        info["device"] = device
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_line(info: dict) -> str:
    """One line for the results file: what ran where."""
    parts = [f"{info['cpu']}, {info['cores_usable']}/{info['cores']} cores, {info['ram_gb']} GB RAM",
             f"load {info['load_avg_1m']} at start"]
    if info.get("gpu"):
        parts.append(f"GPU {info['gpu']}")
    if info.get("device"):
        parts.append(f"device {info['device']}")
    libs = ", ".join(f"{k} {info[k]}" for k in ("torch", "numpy", "sklearn", "faiss", "skactiveml") if info.get(k))
    parts.append(libs)
    parts.append(f"Python {info['python']}, {info['date']}")
    return "; ".join(parts)


def fmt(value, digits: int = 1) -> str:
    """Table cell: numbers rounded, None as a dash, strings unchanged."""
    if value is None:
        return "-"
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return "-"
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A GitHub markdown table; ``columns`` is [(key, header), ...], cells pre-formatted or raw."""
    head = "| " + " | ".join(h for _, h in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(fmt(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def write_results(name: str, *, title: str, settings: str, info: dict, tables: list[tuple[str, str]],
                  records: list[dict], notes: list[str] = (), out_dir: Path | None = None) -> Path:
    """Write ``<name>.md`` (tables + settings + machine line) and ``<name>.json`` (raw records)."""
    out_dir = Path(out_dir) if out_dir else RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    md = [f"# {title}", "", f"Settings: {settings}", "", f"Machine: {machine_line(info)}", ""]
    for caption, table in tables:
        if caption:
            md += [f"**{caption}**", ""]
        md += [table, ""]
    if notes:
        md += ["Notes:", "", *[f"- {n}" for n in notes], ""]
    path = out_dir / f"{name}.md"
    path.write_text("\n".join(md))
    (out_dir / f"{name}.json").write_text(json.dumps(
        {"title": title, "settings": settings, "machine": info, "records": records, "notes": list(notes)},
        indent=1, default=_json_default))
    return path


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def parse_ints(text: str) -> list[int]:
    """'10000,100000' or '1e5' -> [10000, 100000]; for argparse."""
    return [int(float(t)) for t in str(text).split(",") if t.strip()]


def parse_names(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def peer_available() -> bool:
    """Whether scikit-activeml (the peer of the engine benchmarks) can be imported; says so if not."""
    try:
        import skactiveml  # noqa: F401
    except ImportError:
        print("scikit-activeml is not installed (pip install scikit-activeml); running ours only")
        return False
    return True
