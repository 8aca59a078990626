"""Where a train step's time goes: a tf.profiler trace (open the logdir in TensorBoard's Profile
tab) and a per-op-type summary printed from it.

    python bench/profile_step.py                                   # small base, 8x128, bf16, hybrid
    python bench/profile_step.py --precision fp32 --mode xla --shape 2x512 --logdir /tmp/prof

Modes as in bench_funnel.py: function (all on TF kernels), xla (jit_compile=True), hybrid (model on
TF kernels with its XLA-fused regions, AdamW update XLA-compiled: the engine's jit_compile=False).
With --inter_op 1 (the default here) ops run one at a time, so the per-op times add up to the step.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)


SKIP = ("ExecutorState", "Executor", "BlockUntilReady", "ExecuteAsyncOnStream", "Execute", "ThunkExecutor",
        "CpuExecutable")


def op_type_summary(logdir: str, steps: int, top: int):
    """Sum op durations on TF's compute threads by op type (XLA kernels by fusion name)."""
    try:
        from tsl.profiler.protobuf import xplane_pb2
    except ImportError:
        from tensorflow.tsl.profiler.protobuf import xplane_pb2
    path = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    totals = collections.Counter()
    for plane in space.planes:
        names = plane.event_metadata
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = names[event.metadata_id].name
                if name.startswith(SKIP):  # wrappers around the kernels counted below
                    continue
                kind = name.rsplit(":", 1)[1] if ":" in name else "xla:" + re.sub(r"\.\d+$", "", name)
                totals[kind] += event.duration_ps / 1e9 / steps
    total = sum(totals.values())
    print(f"op time per step: {total:.1f} ms (trace: {path})")
    for kind, ms in totals.most_common(top):
        print(f"  {ms:8.2f} ms  {100 * ms / total:5.1f}%  {kind}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="small", help="config name in configs/ or a path (FunnelBaseModel)")
    ap.add_argument("--shape", default="8x128", help="batch x seq_len")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    ap.add_argument("--mode", choices=["function", "xla", "hybrid"], default="hybrid")
    ap.add_argument("--steps", type=int, default=3, help="profiled steps (after 2 warm-up steps)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--inter_op", type=int, default=1)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--logdir", default="/tmp/funnel_profile")
    args = ap.parse_args(argv)

    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)
    from bench_paper_ratio import build_step
    from funnel_tf.config import load_config
    batch, seq_len = (int(v) for v in args.shape.lower().split("x"))
    step = build_step(load_config(args.config), batch, seq_len, "train", args.mode, args.precision)
    for _ in range(2):
        step()
    tf.profiler.experimental.start(args.logdir)
    for _ in range(args.steps):
        step()
    tf.profiler.experimental.stop()
    op_type_summary(args.logdir, args.steps, args.top)


if __name__ == "__main__":
    main()
