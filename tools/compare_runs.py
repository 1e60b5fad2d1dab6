#!/usr/bin/env python
"""Compare two runs bit for bit: the first iteration where their traces differ (data batch,
gradients before the step, loss values, weights after the step) and which tensors, or
which checkpoint tensors differ and by how much.

    python tools/pretrain.py CONFIG --work-dir A --trace [--deterministic]
    python tools/pretrain.py CONFIG --work-dir B --trace [--deterministic]
    python tools/compare_runs.py A B

A and B are work dirs (their trace.jsonl and newest checkpoint are read), trace files or
checkpoint files. Exit status 0 when they agree, 1 when they differ, 2 on a bad argument.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def compare_checkpoints(path_a: str, path_b: str) -> tuple[int, int, float, list[str]]:
    """(identical tensors, tensors, largest absolute difference, differing names) of the
    two checkpoints' ``state_dict``."""
    import torch

    a = torch.load(path_a, map_location="cpu", weights_only=True)["state_dict"]
    b = torch.load(path_b, map_location="cpu", weights_only=True)["state_dict"]
    if set(a) != set(b):
        raise ValueError(f"{path_a} and {path_b} hold different tensors: "
                         f"{sorted(set(a) ^ set(b))[:5]}")
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    largest = max((float((a[k].double() - b[k].double()).abs().max()) for k in differ
                   if a[k].is_floating_point()), default=0.0)
    return len(a) - len(differ), len(a), largest, differ


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first")
    parser.add_argument("second")
    args = parser.parse_args(argv)
    from lidarcl.engine.checkpoint import find_resume_checkpoint
    from lidarcl.engine.determinism import first_divergence, read_trace
    from lidarcl.errors import DataError

    traces, checkpoints = [], []
    for path in (args.first, args.second):
        if os.path.isdir(path):
            trace = os.path.join(path, "trace.jsonl")
            traces.append(trace if os.path.isfile(trace) else None)
            try:  # the checkpoint a resume would take: last_checkpoint, else the newest
                checkpoints.append(find_resume_checkpoint(path)[0])
            except DataError as exc:
                parser.exit(2, f"compare_runs: error: {exc}\n")
        elif path.endswith(".jsonl") and os.path.isfile(path):
            traces.append(path), checkpoints.append(None)
        elif os.path.isfile(path):
            traces.append(None), checkpoints.append(path)
        else:
            parser.exit(2, f"compare_runs: error: {path}: no such work dir or file\n")
    same = True
    if all(traces):
        first = first_divergence(read_trace(traces[0]), read_trace(traces[1]))
        if first is None:
            print("traces: every common iteration agrees")
        else:
            same = False
            shown = ", ".join(first["names"][:8]) + (" ..." if first["count"] > 8 else "")
            print(f"traces: first difference at iteration {first['iter']} in "
                  f"{first['part']}: {first['count']} of {first['of']} differ ({shown})")
    if all(checkpoints):
        equal, total, largest, differ = compare_checkpoints(*checkpoints)
        print(f"checkpoints: {equal} of {total} tensors bit-identical"
              + (f", largest difference {largest:.3g} ({', '.join(differ[:5])}"
                 f"{' ...' if len(differ) > 5 else ''})" if differ else ""))
        same &= not differ
    if not any(traces) and not any(checkpoints):
        parser.exit(2, "compare_runs: error: found neither traces nor checkpoints\n")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
