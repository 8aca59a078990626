"""The paper's efficiency claim in our own code: B4-4-4H768 against the same code with one 12-layer
block (no pooling: the paper's L12H768 baseline, with relative attention).

    python bench/bench_paper_ratio.py                         # seq 128 and 512, infer + train, XLA fp32
    python bench/bench_paper_ratio.py --mode hybrid --precision bf16

For each sequence length it prints the analytical FLOPs ratio (funnel_tf.flops) and the measured time
ratio. Both models live in one process and their iterations alternate, so a shared, busy machine
slows both alike; the ratio is the median of per-round ratios. Batch x length: 8x128 and 2x512
(equal tokens). One JSON record per run goes to bench/results/.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)


def build_step(cfg, batch, seq_len, task, mode, precision):
    """A zero-argument callable running one infer / train step of FunnelBaseModel(cfg)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from bench_funnel import _inputs_numpy, _train_step
    from funnel_tf.modeling.model import FunnelBaseModel
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bf16" else "float32")
    try:
        model = FunnelBaseModel(cfg)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    ids, mask, types = (tf.constant(a, tf.int32) for a in _inputs_numpy(batch, seq_len, cfg.vocab_size))
    x = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    jit = mode == "xla"
    if task == "infer":
        f = tf.function(lambda: model(x, training=False)["last_hidden_state"], jit_compile=jit)
        return lambda: np.asarray(f())
    train = _train_step(model, mode)
    f = tf.function(lambda: train(x), jit_compile=jit)
    return lambda: f().numpy()


def measure_pair(funnel_cfg, baseline_cfg, batch, seq_len, task, mode, precision, iters, warmup):
    """Alternate funnel and baseline steps; per-round times and the median ratio."""
    steps = {"funnel": build_step(funnel_cfg, batch, seq_len, task, mode, precision),
             "baseline": build_step(baseline_cfg, batch, seq_len, task, mode, precision)}
    for f in steps.values():
        for _ in range(1 + warmup):
            f()
    times = {k: [] for k in steps}
    for i in range(iters):
        order = ("funnel", "baseline") if i % 2 == 0 else ("baseline", "funnel")
        for k in order:
            t = time.perf_counter()
            steps[k]()
            times[k].append(time.perf_counter() - t)
    ratios = [a / b for a, b in zip(times["funnel"], times["baseline"])]
    return {"times_s": times, "ratio_median": statistics.median(ratios),
            "ratio_of_medians": statistics.median(times["funnel"]) / statistics.median(times["baseline"]),
            "ratio_of_mins": min(times["funnel"]) / min(times["baseline"])}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="small-base", help="the funnel config (default B4-4-4H768)")
    ap.add_argument("--shapes", default="8x128,2x512")
    ap.add_argument("--tasks", default="infer,train")
    ap.add_argument("--mode", default="xla", choices=("function", "xla", "hybrid"))
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--tolerance", type=float, default=0.10, help="allowed relative gap, time vs FLOPs ratio")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from funnel_tf import flops
    from funnel_tf.config import load_config
    funnel = load_config(args.config)
    baseline = flops.single_block_baseline(funnel)
    started = datetime.datetime.now(datetime.timezone.utc)
    rows = []
    for shape in args.shapes.split(","):
        batch, seq_len = (int(v) for v in shape.lower().split("x"))
        for task in args.tasks.split(","):
            count = flops.train_flops if task == "train" else \
                (lambda c, l, b: flops.forward_flops(c, l, b)["total"])
            flops_ratio = count(funnel, seq_len, batch) / count(baseline, seq_len, batch)
            res = measure_pair(funnel, baseline, batch, seq_len, task, args.mode, args.precision, args.iters,
                               args.warmup)
            gap = res["ratio_median"] / flops_ratio - 1.0
            row = {"shape": shape, "task": task, "flops_ratio": flops_ratio, "gap": gap,
                   "within_tolerance": abs(gap) <= args.tolerance, **res}
            rows.append(row)
            print(f"{shape} {task}: FLOPs ratio {flops_ratio:.3f}, time ratio {res['ratio_median']:.3f} "
                  f"(of medians {res['ratio_of_medians']:.3f}, of mins {res['ratio_of_mins']:.3f}), "
                  f"gap {100 * gap:+.1f}% | funnel median {statistics.median(res['times_s']['funnel']):.3f} s, "
                  f"12-layer {statistics.median(res['times_s']['baseline']):.3f} s | load {os.getloadavg()[0]:.1f}",
                  flush=True)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"paper_ratio_{started.strftime('%Y%m%dT%H%M%SZ')}_{args.mode}_{args.precision}.json")
    with open(path, "w") as f:
        json.dump({"started": started.isoformat(), "argv": sys.argv[1:], "config": args.config,
                   "mode": args.mode, "precision": args.precision, "rows": rows}, f, indent=1)
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
