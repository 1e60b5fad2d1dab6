"""One measurement per subprocess, so that the peak memory a benchmark row reports is that
row's alone: the parent calls :func:`run_isolated`, the child ends with
:func:`report` (one JSON line on stdout)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_memory_mib(device: str) -> float:
    """Peak of this process: ``torch.cuda.max_memory_allocated`` on a GPU, else the
    resident set (``ru_maxrss``), in MiB."""
    import resource

    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(figures: dict) -> None:
    print(json.dumps(figures))


def run_isolated(module: str, args: list) -> dict | str:
    """``module._child(args)`` in a fresh interpreter at the repository root: its reported
    figures, or the last line of its stderr when it failed."""
    proc = subprocess.run(
        [sys.executable, "-c", f"import sys; from {module} import _child; "
         "_child(sys.argv[1:])", *[str(a) for a in args]],
        cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or ["?"])[-1]
    return json.loads(proc.stdout.strip().splitlines()[-1])
