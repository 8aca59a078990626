"""Side-by-side speed of funnel-tf and its peers: inference and a full train step (forward + backward +
AdamW), per precision and execution mode, at the published small configs.

    python bench/bench_funnel.py                       # the whole matrix (~70 min on 2 cores)
    python bench/bench_funnel.py --models small-base --tasks train --shapes 8x128
    python bench/bench_funnel.py --hf-tf-python /path/to/venv/bin/python   # + HF TF 4.x peer

Implementations (--impls): ours-eager, ours-function (tf.function), ours-xla (jit_compile=True),
ours-hybrid (model in tf.function on TF's oneDNN kernels with its XLA-fused elementwise regions, the
update as one XLA function with bf16 weight copies under mixed_bfloat16: what the engine runs with
jit_compile=False, and the fastest bf16 path on CPU, where XLA's bf16 dots run at fp32 speed), ours-jax (train
only: the JAX engine's compiled step, engine/jax/step.TrainStep, under KERAS_BACKEND=jax; bench/jax_step.py), hf-torch
(HF PyTorch eager, bf16 = autocast), hf-tf (HF's TF 4.x port under XLA; needs an interpreter
with transformers 4.x + tensorflow + tf-keras, given by --hf-tf-python).
Every configuration runs in its own subprocess, so its peak RSS is its own and one run cannot warm or
fragment another's allocator. The dense-matmul peak (per dtype, best of TF and PyTorch) is measured
in the same run and gives model-FLOPs utilisation (MFU) from funnel_tf.flops. One JSON record per run
goes to bench/results/.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

OURS = ("ours-eager", "ours-function", "ours-xla", "ours-hybrid")
JAX_IMPL = "ours-jax"  # the JAX engine's step (bench/jax_step.py): train only, needs jax
PEERS = ("hf-torch", "hf-tf")
DEFAULT_IMPLS = OURS + ("hf-torch",)
PEER_FOR_RATIO = "hf-torch"  # the ratio column is ours / this peer at equal precision


# ------------------------------------------------------------------------------------------- worker
def _inputs_numpy(batch, seq_len, vocab):
    """Identical inputs for every implementation: random ids, no padding, CLS type 2, two segments."""
    import numpy as np
    rng = np.random.RandomState(0)
    ids = rng.randint(5, vocab, (batch, seq_len)).astype(np.int64)
    mask = np.ones_like(ids)
    types = np.zeros_like(ids)
    types[:, seq_len // 2:] = 1
    types[:, 0] = 2
    return ids, mask, types


def _hf_config_dict(cfg_dict):
    """Our FunnelConfig dict -> keyword args for transformers.FunnelConfig."""
    keys = ("vocab_size", "block_sizes", "block_repeats", "num_decoder_layers", "d_model", "n_head", "d_head",
            "d_inner", "hidden_act", "hidden_dropout", "attention_dropout", "activation_dropout",
            "initializer_range", "initializer_std", "layer_norm_eps", "pooling_type", "attention_type",
            "separate_cls", "truncate_seq", "pool_q_only")
    return {k: cfg_dict[k] for k in keys if k in cfg_dict}


def _time_loop(fn, warmup, iters):
    """First call (trace/compile) time, then `warmup` untimed and `iters` timed calls.

    Also returns the process CPU time of each timed call (all threads): on a shared machine it is
    far less sensitive to other jobs than wall time, though spin-waiting threads inflate it.
    """
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    for _ in range(warmup):
        fn()
    times, cpu = [], []
    for _ in range(iters):
        t, c = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return first, times, cpu


def _set_tf_threads(tf, threads):
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _train_step(model, mode):
    """inputs -> loss of one full train step of `model` (mean-square loss on its last hidden state,
    AdamW lr 1e-4, weight decay 0.01, as the peers). mode "hybrid" is the training engine's
    jit_compile=False step: the model on TF's kernels and the update as one XLA function
    (funnel_tf.engine.update.FusedUpdate) with bf16 weight copies under mixed_bfloat16."""
    import keras
    import tensorflow as tf
    from funnel_tf.engine.update import FusedUpdate
    from funnel_tf.engine.weight_copies import maybe_weight_copies
    opt = keras.optimizers.AdamW(learning_rate=1e-4, weight_decay=0.01)
    variables = model.trainable_variables

    def loss_fn(inp):
        out = model(inp, training=True)["last_hidden_state"]
        return tf.reduce_mean(tf.square(tf.cast(out, tf.float32)))

    if mode != "hybrid":
        def train(inp):
            with tf.GradientTape() as tape:
                loss = loss_fn(inp)
            opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss
        return train
    opt.build(variables)  # slots exist before the compiled update is traced
    update = FusedUpdate(opt, variables, clip_norm=0.0, weight_copies=maybe_weight_copies(
        variables, model.dtype_policy.compute_dtype, enabled=True))

    def hybrid(inp):
        with tf.GradientTape() as tape:
            with update.forward(tape):
                loss = loss_fn(inp)
        update(*update.gradients(tape, loss), loss)
        return loss
    return hybrid


def _run_ours(spec):
    import keras
    import tensorflow as tf
    _set_tf_threads(tf, spec["threads"])
    sys.path.insert(0, REPO)
    from funnel_tf.config import FunnelConfig
    from funnel_tf.modeling.model import FunnelBaseModel, FunnelModel
    if spec["precision"] == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    cfg = FunnelConfig.from_dict(spec["config"])
    model = (FunnelBaseModel if spec["base"] else FunnelModel)(cfg)
    ids, mask, types = _inputs_numpy(spec["batch"], spec["seq_len"], cfg.vocab_size)
    x = {"input_ids": tf.constant(ids, tf.int32), "attention_mask": tf.constant(mask, tf.int32),
         "token_type_ids": tf.constant(types, tf.int32)}
    mode = spec["impl"].split("-")[1]
    wrap = (lambda f: f) if mode == "eager" else \
        (lambda f: tf.function(f, jit_compile=(mode == "xla")))
    if spec["task"] == "infer":
        def infer(inp):
            return model(inp, training=False)["last_hidden_state"]
        f = wrap(infer)
        run = lambda: f(x).numpy()  # noqa: E731  (.numpy() waits for the result)
    else:
        train = _train_step(model, mode)
        f = wrap(train)
        run = lambda: f(x).numpy()  # noqa: E731
    rss_before = _rss_mb()
    first, times, cpu = _time_loop(run, spec["warmup"], spec["iters"])
    return {"first_call_s": first, "times_s": times, "cpu_times_s": cpu, "rss_after_build_mb": rss_before,
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__}}


def _run_hf_torch(spec):
    import torch
    import transformers
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    hcfg = transformers.FunnelConfig(**_hf_config_dict(spec["config"]))
    cls = transformers.FunnelBaseModel if spec["base"] else transformers.FunnelModel
    model = cls(hcfg)
    ids, mask, types = (torch.tensor(a) for a in _inputs_numpy(spec["batch"], spec["seq_len"], hcfg.vocab_size))
    bf16 = spec["precision"] == "bf16"
    if spec["task"] == "infer":
        model.eval()

        def run():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    else:
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)

        def run():
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
            loss = out.float().square().mean()
            loss.backward()
            opt.step()
            return loss.item()
    rss_before = _rss_mb()
    first, times, cpu = _time_loop(run, spec["warmup"], spec["iters"])
    return {"first_call_s": first, "times_s": times, "cpu_times_s": cpu, "rss_after_build_mb": rss_before,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__}}


def _run_hf_tf(spec):
    """HF's TF 4.x port (transformers < 5) under tf.function(jit_compile=True), tf-keras AdamW."""
    import tensorflow as tf
    import tf_keras
    import transformers
    _set_tf_threads(tf, spec["threads"])
    if spec["precision"] == "bf16":
        tf_keras.mixed_precision.set_global_policy("mixed_bfloat16")
    hcfg = transformers.FunnelConfig(**_hf_config_dict(spec["config"]))
    cls = transformers.TFFunnelBaseModel if spec["base"] else transformers.TFFunnelModel
    model = cls(hcfg)
    ids, mask, types = (tf.constant(a, tf.int32) for a in _inputs_numpy(spec["batch"], spec["seq_len"],
                                                                           hcfg.vocab_size))
    model(input_ids=ids, attention_mask=mask, token_type_ids=types)  # build the weights
    if spec["task"] == "infer":
        f = tf.function(lambda: model(input_ids=ids, attention_mask=mask, token_type_ids=types,
                                      training=False).last_hidden_state, jit_compile=True)
    else:
        opt = tf_keras.optimizers.AdamW(learning_rate=1e-4, weight_decay=0.01)
        variables = model.trainable_variables

        def train():
            with tf.GradientTape() as tape:
                out = model(input_ids=ids, attention_mask=mask, token_type_ids=types,
                            training=True).last_hidden_state
                loss = tf.reduce_mean(tf.square(tf.cast(out, tf.float32)))
            opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss
        f = tf.function(train, jit_compile=True)
    rss_before = _rss_mb()
    first, times, cpu = _time_loop(lambda: f().numpy(), spec["warmup"], spec["iters"])
    return {"first_call_s": first, "times_s": times, "cpu_times_s": cpu, "rss_after_build_mb": rss_before,
            "versions": {"tensorflow": tf.__version__, "transformers": transformers.__version__}}


def _rss_mb():
    """Peak resident set size of this process so far, MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _matmul_peak(spec):
    """Best sustained FLOP/s of a square dense matmul per dtype, for TF (oneDNN) and PyTorch."""
    n, reps, out = spec.get("n", 2048), spec.get("reps", 10), {}
    if spec["lib"] == "tf":
        import tensorflow as tf
        _set_tf_threads(tf, spec["threads"])
        for name, dtype in (("fp32", tf.float32), ("bf16", tf.bfloat16)):
            a = tf.random.normal([n, n], dtype=tf.float32)
            a, b = tf.cast(a, dtype), tf.cast(tf.transpose(a), dtype)
            f = tf.function(lambda a, b: tf.reduce_sum(tf.cast(tf.matmul(a, b)[:1, :1], tf.float32)))
            f(a, b).numpy()
            best = min(_timed(lambda: f(a, b).numpy()) for _ in range(reps))
            out[name] = 2 * n ** 3 / best
    else:
        import torch
        torch.set_num_threads(spec["threads"])
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            a = torch.randn(n, n).to(dtype)
            b = a.t().contiguous()
            torch.mm(a, b)
            best = min(_timed(lambda: torch.mm(a, b)) for _ in range(reps))
            out[name] = 2 * n ** 3 / best
    return {"flops_per_s": out}


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def worker_main(spec):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    load0 = os.getloadavg()[0]
    if spec["impl"] == "matmul-peak":
        result = _matmul_peak(spec)
    elif spec["impl"] == JAX_IMPL:
        import jax_step
        result = jax_step.run_worker(spec)
    elif spec["impl"].startswith("ours-"):
        result = _run_ours(spec)
    elif spec["impl"] == "hf-torch":
        result = _run_hf_torch(spec)
    elif spec["impl"] == "hf-tf":
        result = _run_hf_tf(spec)
    else:
        raise ValueError(f"unknown impl {spec['impl']!r}")
    result.update(peak_rss_mb=_rss_mb(), loadavg_1m=[load0, os.getloadavg()[0]])
    print("RESULT " + json.dumps(result), flush=True)


# ------------------------------------------------------------------------------------------- driver
def run_in_subprocess(spec, python=None, timeout=3600, script=None, extra_env=None):
    """Run one configuration (`script --worker SPEC`, default this file) in a fresh interpreter;
    returns the worker's `RESULT` dict or {"error": ...}."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               **(extra_env or {}))
    cmd = [python or sys.executable, os.path.abspath(script or __file__), "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


def measure_peak(threads, hf_torch=True):
    """Dense-matmul peak FLOP/s per dtype: the best of TF and (if available) PyTorch."""
    libs = {"tf": run_in_subprocess({"impl": "matmul-peak", "lib": "tf", "threads": threads})}
    if hf_torch:
        libs["torch"] = run_in_subprocess({"impl": "matmul-peak", "lib": "torch", "threads": threads})
    peak = {}
    for dtype in ("fp32", "bf16"):
        vals = [r["flops_per_s"][dtype] for r in libs.values() if "flops_per_s" in r]
        peak[dtype] = max(vals) if vals else None
    return {"peak_flops_per_s": peak, "by_library": libs}


def summarize(record, cfg_dict, flops_fn):
    times = record.get("times_s")
    if not times:
        return record
    tokens = record["batch"] * record["seq_len"]
    med = statistics.median(times)
    record.update(median_s=med, min_s=min(times), tokens_per_s=tokens / med,
                  cpu_median_s=statistics.median(record["cpu_times_s"]))
    record["model_flops"] = flops_fn(cfg_dict, record)
    return record


def _flops_for(cfg_dict, rec):
    sys.path.insert(0, REPO)
    from funnel_tf import flops
    from funnel_tf.config import FunnelConfig
    cfg = FunnelConfig.from_dict(cfg_dict)
    with_decoder = not rec["base"]
    if rec["task"] == "train":
        return flops.train_flops(cfg, rec["seq_len"], rec["batch"], with_decoder)
    return flops.forward_flops(cfg, rec["seq_len"], rec["batch"], with_decoder)["total"]


def add_ratios_and_mfu(records, peak):
    """MFU against the measured peak of the record's dtype; time ratios to each peer at equal
    model/task/shape/precision (ratio_to_peer: HF PyTorch, ratio_to_hf_tf: HF's TF 4.x port)."""
    def index(impl):
        return {(r["model"], r["task"], r["shape"], r["precision"]): r for r in records
                if r["impl"] == impl and "median_s" in r}
    peers = {"ratio_to_peer": index(PEER_FOR_RATIO), "ratio_to_hf_tf": index("hf-tf")}
    for r in records:
        if "median_s" not in r:
            continue
        p = peak.get(r["precision"])
        if p:
            r["mfu"] = r["model_flops"] / r["median_s"] / p
            r["mfu_best"] = r["model_flops"] / r["min_s"] / p
        for field, table in peers.items():
            peer = table.get((r["model"], r["task"], r["shape"], r["precision"]))
            if peer is not None and r is not peer and r["impl"].startswith("ours"):
                r[field] = r["median_s"] / peer["median_s"]
                r[field + "_min"] = r["min_s"] / peer["min_s"]
                # with --rounds > 1: each round's ours/peer ratio (the two ran minutes apart, so
                # a machine that slows down for a while skews a pooled ratio less this way)
                pairs = zip(r.get("round_medians_s", []), peer.get("round_medians_s", []))
                r[field + "_rounds"] = [a / b for a, b in pairs]


def markdown_table(records):
    head = ("| model | task | B×L | impl | prec | median s | min s | CPU s | tokens/s | peak RSS MB | MFU | "
            "ours/HF-torch (median, min) | ours/HF-TF |\n|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = [head]
    for r in records:
        if "median_s" not in r:
            rows.append(f"| {r['model']} | {r['task']} | {r['shape']} | {r['impl']} | {r['precision']} | "
                        f"error: {r.get('error', '?')[:80]} | | | | | | | |")
            continue
        ratio = f"{r['ratio_to_peer']:.2f}, {r['ratio_to_peer_min']:.2f}" if "ratio_to_peer" in r else ""
        ratio_tf = f"{r['ratio_to_hf_tf']:.2f}" if "ratio_to_hf_tf" in r else ""
        mfu = f"{100 * r['mfu']:.0f}%" if "mfu" in r else ""
        rows.append(f"| {r['model']} | {r['task']} | {r['shape']} | {r['impl']} | {r['precision']} | "
                    f"{r['median_s']:.3f} | {r['min_s']:.3f} | {r['cpu_median_s']:.2f} | {r['tokens_per_s']:.0f} | "
                    f"{r['peak_rss_mb']:.0f} | {mfu} | {ratio} | {ratio_tf} |")
    return "\n".join(rows)


def machine_info():
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        info["cpu_model"] = next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                                  if ln.startswith("model name")), "?")
        flags = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
        info["avx512_bf16"] = "avx512_bf16" in flags
        info["amx_bf16"] = "amx_bf16" in flags
    except OSError:
        pass
    return info


def parse_shapes(text):
    shapes = []
    for part in text.split(","):
        b, l = part.lower().split("x")
        shapes.append((int(b), int(l)))
    return shapes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--models", default="small-base,small",
                    help="config names or paths; a name ending in -base runs FunnelBaseModel")
    ap.add_argument("--shapes", default="8x128,2x512", help="batch x seq_len list")
    ap.add_argument("--tasks", default="infer,train")
    ap.add_argument("--impls", default=",".join(DEFAULT_IMPLS))
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--iters", type=int, default=5, help="timed iterations (>= 5)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed iterations after the first call")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run the whole matrix this many times, interleaved; times are pooled")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--hf-tf-python", default=None,
                    help="interpreter with transformers 4.x + tensorflow + tf-keras for the hf-tf peer")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--tag", default="", help="label stored in the record and the file name")
    ap.add_argument("--timeout", type=int, default=3600)
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main(json.loads(args.worker))
    if args.iters < 5:
        ap.error("--iters must be at least 5")

    sys.path.insert(0, REPO)
    from funnel_tf.config import load_config
    impls = [i for i in args.impls.split(",") if i]
    if "hf-tf" in impls and not args.hf_tf_python:
        print("hf-tf needs --hf-tf-python; skipping it", file=sys.stderr)
        impls.remove("hf-tf")
    if args.hf_tf_python and "hf-tf" not in impls:
        impls.append("hf-tf")
    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"machine: {machine_info()}", flush=True)
    peak = measure_peak(args.threads, hf_torch="hf-torch" in impls)
    print("matmul peak GFLOP/s: " + ", ".join(f"{k}={v / 1e9:.0f}" for k, v in peak["peak_flops_per_s"].items()
                                               if v), flush=True)

    plan = []
    for model_name in args.models.split(","):
        cfg = load_config(model_name)
        base = model_name.endswith("-base") or cfg.num_decoder_layers == 0
        for task in args.tasks.split(","):
            for b, l in parse_shapes(args.shapes):
                for prec in args.precisions.split(","):
                    for impl in impls:
                        if impl == "ours-hybrid" and task == "infer":
                            continue  # no optimizer: identical to ours-function
                        if impl == JAX_IMPL and task == "infer":
                            continue  # the JAX engine is a training engine
                        plan.append(dict(impl=impl, model=model_name, config=cfg.to_dict(), base=base, task=task,
                                         batch=b, seq_len=l, shape=f"{b}x{l}", precision=prec,
                                         threads=args.threads, iters=args.iters, warmup=args.warmup))
    records = {}
    for rnd in range(args.rounds):
        for spec in plan:
            key = (spec["impl"], spec["model"], spec["task"], spec["shape"], spec["precision"])
            python = args.hf_tf_python if spec["impl"] == "hf-tf" else None
            res = run_in_subprocess(spec, python=python, timeout=args.timeout,
                                    extra_env={"KERAS_BACKEND": "jax"} if spec["impl"] == JAX_IMPL
                                    else None)
            rec = records.setdefault(key, {k: v for k, v in spec.items() if k != "config"})
            if "error" in res:
                rec.setdefault("errors", []).append(res["error"])
                rec["error"] = res["error"]
                print(f"[{rnd}] {key}: ERROR {res['error']}", flush=True)
                continue
            rec.setdefault("round_medians_s", []).append(statistics.median(res["times_s"]))
            rec.setdefault("times_s", []).extend(res.pop("times_s"))
            rec.setdefault("cpu_times_s", []).extend(res.pop("cpu_times_s"))
            rec.setdefault("rounds", []).append(res)
            rec["peak_rss_mb"] = max(rec.get("peak_rss_mb", 0), res["peak_rss_mb"])
            rec.pop("error", None)
            t = rec["times_s"]
            print(f"[{rnd}] {key}: median {statistics.median(t):.3f} s, min {min(t):.3f} s, "
                  f"RSS {res['peak_rss_mb']:.0f} MB, load {res['loadavg_1m']}", flush=True)
    cfgs = {s["model"]: s["config"] for s in plan}
    out = [summarize(r, cfgs[r["model"]], _flops_for) for r in records.values()]
    add_ratios_and_mfu(out, peak["peak_flops_per_s"])
    table = markdown_table(out)
    print(table)
    if args.rounds > 1:
        for r in out:
            rounds = r.get("ratio_to_peer_rounds")
            if rounds:
                print(f"per-round ours/{PEER_FOR_RATIO} {r['model']} {r['task']} {r['shape']} {r['impl']} "
                      f"{r['precision']}: " + ", ".join(f"{x:.2f}" for x in rounds)
                      + f" (median {statistics.median(rounds):.2f})")
    os.makedirs(args.out, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    path = os.path.join(args.out, f"funnel_{stamp}{'_' + args.tag if args.tag else ''}.json")
    with open(path, "w") as f:
        json.dump({"started": started.isoformat(), "argv": sys.argv[1:], "tag": args.tag,
                   "machine": machine_info(), "threads": args.threads, "matmul_peak": peak,
                   "records": out, "markdown": table}, f, indent=1)
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
