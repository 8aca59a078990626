"""The training engine's step (forward + backward + cross-replica sum + global-norm clip + guarded
AdamW, as `funnel_tf.engine.loop.Trainer` runs it) for the small config at seq 128 and 512.

    python bench/bench_train_step.py                         # small, MLM, batch 2, seq 128 + 512
    python bench/bench_train_step.py --objective electra --jit --batch 4 --steps 10
    python bench/bench_train_step.py --python /venv-tpu/bin/python --rounds 3   # this TF vs another

With `--python` (repeatable) every (interpreter, seq_len) runs in turn, `--rounds` times
interleaved, and the table gets one row per interpreter (e.g. the standard build vs tensorflow-tpu,
whose host step falls back to TF's kernels: no XLA:CPU) with the ratio to the first.

Each (objective, seq_len) runs in its own subprocess, so the peak RSS it reports is its own.
Reported per run: compile (first host call) time, median seconds per step over `--repeats` host
calls of `--steps` steps each, tokens/s and examples/s, peak RSS; then the seq 512 / seq 128 ratios.
Not a test: figures depend on the machine and its load (state both when quoting them).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _worker(args) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, REPO)
    import keras
    import numpy as np
    import tensorflow as tf
    from absl import logging

    from funnel_tf import xla
    from funnel_tf.config import load_config
    from funnel_tf.text.masking import num_predictions_for
    from funnel_tf.engine.loop import LoopConfig, Trainer
    from funnel_tf.tasks.pretraining import pretraining_task
    from funnel_tf.engine.optimization import WarmupLinearDecay, make_optimizer
    from funnel_tf.engine.precision import set_precision
    from funnel_tf.engine.strategy import make_strategy

    logging.set_verbosity(logging.WARNING)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    set_precision(args.precision)
    keras.utils.set_random_seed(0)
    cfg = load_config(args.config)
    b, L = args.batch, args.seq_len
    p = num_predictions_for(L)
    r = np.random.RandomState(0)
    ids = r.randint(1000, cfg.vocab_size, (b, L)).astype(np.int32)
    types = np.zeros_like(ids)
    types[:, 0] = 2
    types[:, L // 2:] = 1
    pos = np.stack([np.sort(r.choice(np.arange(1, L - 4), p, replace=False)) for _ in range(b)])
    feats = dict(input_ids=ids, attention_mask=np.ones_like(ids), token_type_ids=types,
                 masked_positions=pos.astype(np.int32),
                 masked_ids=np.take_along_axis(ids, pos, 1),
                 masked_weights=np.ones((b, p), np.float32))

    def dataset_fn(ctx):
        return tf.data.Dataset.from_tensors(feats).repeat()

    total = args.steps * (args.repeats + 1)
    trainer = Trainer(make_strategy("default"), pretraining_task(args.objective, cfg),
                      lambda vs: make_optimizer(vs, WarmupLinearDecay(1e-4, 1, total)),
                      dataset_fn,
                      LoopConfig(train_steps=total, global_batch_size=b, seq_len=L,
                                 model_dir=tempfile.mkdtemp(), steps_per_loop=args.steps,
                                 jit_compile=args.jit))
    train_fn = trainer._make_train_fn()
    it = iter(trainer.strategy.distribute_datasets_from_function(dataset_fn))
    n = tf.constant(args.steps, tf.int32)
    t0 = time.perf_counter()
    train_fn(it, n)
    trainer.step.numpy()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        train_fn(it, n)
        trainer.step.numpy()  # waits for the device
        times.append((time.perf_counter() - t0) / args.steps)
    step_s = statistics.median(times)
    params = sum(int(np.prod(v.shape)) for v in trainer.variables)
    return {"config": args.config, "objective": args.objective, "seq_len": L, "batch": b,
            "precision": args.precision, "jit_compile": args.jit, "params_M": params / 1e6,
            "compile_s": compile_s, "step_s": step_s, "step_s_min": min(times),
            "tokens_per_s": b * L / step_s, "examples_per_s": b / step_s,
            "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "baseline_rss_MB": rss0 / 1024, "tf": tf.__version__, "keras": keras.__version__,
            "host_xla": xla.host_has_xla()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="small")
    ap.add_argument("--objective", default="mlm", choices=["mlm", "electra"])
    ap.add_argument("--seq_lens", default="128,512")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="steps per host call")
    ap.add_argument("--repeats", type=int, default=3, help="timed host calls (after one warm-up)")
    ap.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
    ap.add_argument("--jit", action="store_true", help="XLA-compile the step")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help="also write the records to this JSON file")
    ap.add_argument("--python", action="append", default=None,
                    help="interpreter(s) to run the step in (default: this one); repeatable")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds per interpreter")
    args = ap.parse_args()
    if args.worker is not None:
        args.seq_len = args.worker
        print("RESULT " + json.dumps(_worker(args)), flush=True)
        return
    pythons = args.python or [sys.executable]
    runs = {}
    for _ in range(args.rounds):
        for py in pythons:
            for L in [int(x) for x in args.seq_lens.split(",")]:
                cmd = [py, os.path.abspath(__file__), "--worker", str(L),
                       "--config", args.config, "--objective", args.objective,
                       "--batch", str(args.batch), "--steps", str(args.steps),
                       "--repeats", str(args.repeats), "--precision", args.precision
                       ] + (["--jit"] if args.jit else [])
                env = dict(os.environ, TPU_SKIP_MDS_QUERY=os.environ.get("TPU_SKIP_MDS_QUERY", "1"))
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                if proc.returncode or not line:
                    sys.exit(f"{py} seq {L} failed:\n{proc.stderr[-3000:]}")
                record = dict(json.loads(line[0][7:]), python=py)
                runs.setdefault((py, L), []).append(record)
    # One record per (interpreter, seq_len): the round with the median step time.
    results = [sorted(rs, key=lambda r: r["step_s"])[len(rs) // 2] for rs in runs.values()]
    if len(pythons) > 1:
        print(f"{'python':<40} {'TF':>8} {'seq':>5} {'s/step':>9} {'ratio':>6}  (median of "
              f"{args.rounds} interleaved rounds)")
        for r in results:
            first = runs[(pythons[0], r["seq_len"])]
            ref = sorted(first, key=lambda x: x["step_s"])[len(first) // 2]["step_s"]
            print(f"{r['python']:<40} {r['tf']:>8} {r['seq_len']:>5} {r['step_s']:>9.3f} "
                  f"{r['step_s'] / ref:>6.2f}")
        if args.out:
            with open(args.out, "w") as f:
                json.dump([r for rs in runs.values() for r in rs], f, indent=2)
        return
    print(f"{args.config} / {args.objective} / batch {args.batch} / {args.precision} / "
          f"jit_compile={args.jit} / TF {results[0]['tf']} (CPU, {os.cpu_count()} cores)")
    print(f"{'seq':>5} {'compile s':>10} {'s/step':>9} {'tokens/s':>10} {'ex/s':>8} "
          f"{'peak RSS MB':>12}")
    for r in results:
        print(f"{r['seq_len']:>5} {r['compile_s']:>10.1f} {r['step_s']:>9.3f} "
              f"{r['tokens_per_s']:>10.0f} {r['examples_per_s']:>8.2f} {r['peak_rss_MB']:>12.0f}")
    if len(results) >= 2:
        a, b = results[0], results[-1]
        print(f"ratios seq {b['seq_len']} / seq {a['seq_len']}: s/step x{b['step_s'] / a['step_s']:.2f} "
              f"(tokens x{b['seq_len'] / a['seq_len']:.0f}), tokens/s "
              f"x{b['tokens_per_s'] / a['tokens_per_s']:.2f}, peak RSS "
              f"x{b['peak_rss_MB'] / a['peak_rss_MB']:.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
