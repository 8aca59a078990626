"""GPU speed check: funnel-tf's XLA train step against HuggingFace PyTorch (eager and
`torch.compile`) on the same GPU, with model-FLOPs utilisation against the GPU's dense peak.

    python bench/device_bench.py --out DIR            # small + small-base, fp32 + bf16, 32x512
    python bench/device_bench.py --tiny --out DIR     # CPU, tiny config, 2x64: checks the script

Run by bench/device_check.sh. One train step = forward + mean-square loss on the last hidden state +
backward + AdamW (bench_funnel.py's step, whose helpers this reuses). Every configuration runs in
its own subprocess. fp32 means TensorFloat-32 matmuls on both sides (TF's default; PyTorch is set
to match), so fp32 MFU is against the TF32 dense peak; bf16 is TF's mixed_bfloat16 policy and
PyTorch's bf16 autocast, against the bf16 dense peak. Peaks come from the GPU's name (PEAKS).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, REPO)

import bench_funnel as bf  # noqa: E402  (inputs, HF config, timing loop, our train step, FLOPs)

# Dense (no sparsity) peak TFLOP/s from NVIDIA's datasheets: (name fragment, bf16, tf32, fp32).
# First match wins, so the specific names come before the generic ones.
PEAKS = (
    ("H100 PCIe", 756.0, 378.0, 51.2),
    ("H100 NVL", 835.0, 418.0, 60.0),
    ("H200", 989.4, 494.7, 66.9),       # same compute as H100 SXM
    ("H100", 989.4, 494.7, 66.9),       # SXM ("NVIDIA H100 80GB HBM3")
    ("A100", 312.0, 156.0, 19.5),
    ("L40S", 362.0, 183.0, 91.6),
    ("L4", 121.0, 60.0, 30.3),
)
IMPLS = ("ours-xla", "hf-torch-eager", "hf-torch-compile")


def gpu_name() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


def dense_peak(name: str) -> dict:
    """{"bf16": FLOP/s, "fp32": FLOP/s (TF32), "fp32_no_tensor_cores": FLOP/s, "source": ...}."""
    for fragment, bf16, tf32, fp32 in PEAKS:
        if fragment.lower() in name.lower():
            return {"bf16": bf16 * 1e12, "fp32": tf32 * 1e12, "fp32_no_tensor_cores": fp32 * 1e12,
                    "source": f"datasheet dense peak for {fragment} (fp32 rows: TF32)"}
    return {"bf16": None, "fp32": None, "fp32_no_tensor_cores": None,
            "source": f"unknown device {name!r}: no MFU (pass --peak_tflops)"}


# ------------------------------------------------------------------------------------- workers
def _run_ours(spec):
    import keras
    import tensorflow as tf
    from funnel_tf.config import FunnelConfig
    from funnel_tf.modeling.model import FunnelBaseModel, FunnelModel
    if spec["precision"] == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    cfg = FunnelConfig.from_dict(spec["config"])
    model = (FunnelBaseModel if spec["base"] else FunnelModel)(cfg)
    ids, mask, types = bf._inputs_numpy(spec["batch"], spec["seq_len"], cfg.vocab_size)
    x = {"input_ids": tf.constant(ids, tf.int32), "attention_mask": tf.constant(mask, tf.int32),
         "token_type_ids": tf.constant(types, tf.int32)}
    step = tf.function(bf._train_step(model, "xla"), jit_compile=True)
    first, times, _ = bf._time_loop(lambda: step(x).numpy(), spec["warmup"], spec["iters"])
    gpus = tf.config.list_logical_devices("GPU")
    peak_mem = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20 if gpus else None
    tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
    return {"first_call_s": first, "times_s": times, "device": "GPU" if gpus else "CPU",
            "peak_device_mem_mb": peak_mem, "tf32": tf32,
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__}}


def _run_torch(spec):
    import torch
    import transformers
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True  # fp32 = TF32 matmuls, as TF does by default
    torch.backends.cudnn.allow_tf32 = True
    hcfg = transformers.FunnelConfig(**bf._hf_config_dict(spec["config"]))
    cls = transformers.FunnelBaseModel if spec["base"] else transformers.FunnelModel
    model = cls(hcfg).to(device).train()
    ids, mask, types = (torch.tensor(a, device=device) for a in
                        bf._inputs_numpy(spec["batch"], spec["seq_len"], hcfg.vocab_size))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    forward = torch.compile(model, backend=spec["compile_backend"]) \
        if spec["impl"] == "hf-torch-compile" else model
    bf16 = spec["precision"] == "bf16"

    def run():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            out = forward(input_ids=ids, attention_mask=mask,
                          token_type_ids=types).last_hidden_state
        loss = out.float().square().mean()
        loss.backward()
        opt.step()
        return loss.item()  # waits for the device
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    first, times, _ = bf._time_loop(run, spec["warmup"], spec["iters"])
    return {"first_call_s": first, "times_s": times, "device": device,
            "peak_device_mem_mb": torch.cuda.max_memory_allocated() / 2**20
            if device == "cuda" else None,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__}}


def worker_main(spec):
    result = _run_ours(spec) if spec["impl"] == "ours-xla" else _run_torch(spec)
    print("RESULT " + json.dumps(result), flush=True)


def run_in_subprocess(spec, timeout):
    """bench_funnel's subprocess runner on this file's worker, GPU memory grown on demand."""
    return bf.run_in_subprocess(spec, timeout=timeout, script=__file__,
                                extra_env={"TF_FORCE_GPU_ALLOW_GROWTH": "true"})


# ------------------------------------------------------------------------------------- driver
def timing_record(spec, res, wall_s, peak) -> dict:
    """One JSON record of a timed configuration: the spec (less its config), the worker's result, and
    median/min step time, tokens/s and MFU against the measured dense `peak` ({precision: FLOP/s});
    printed as one progress line."""
    rec = {k: v for k, v in spec.items() if k != "config"}
    rec.update(res, wall_s=wall_s)
    if "times_s" in res:
        med = statistics.median(res["times_s"])
        flops = bf._flops_for(spec["config"], rec)
        peak_flops = peak.get(spec["precision"])
        rec.update(median_s=med, min_s=min(res["times_s"]), model_flops=flops,
                   tokens_per_s=spec["batch"] * spec["seq_len"] / med,
                   mfu=flops / med / peak_flops if peak_flops else None)
    print(f"{spec['model']} {spec['precision']} {spec['impl']}: " + (
        f"median {1e3 * rec['median_s']:.1f} ms" if "median_s" in rec
        else f"ERROR {rec.get('error')}"), flush=True)
    return rec


def table(records, ratio_header: str = "ours / this", ratio=None, impl_header: str = "impl") -> str:
    """The markdown table of timing records; the last column is `ratio(record)` (default: the
    record's "ours_over_this", set by main's comparison)."""
    ratio = ratio or (lambda r: r.get("ours_over_this"))
    rows = [f"| model | prec | B×L | {impl_header} | device | median ms | min ms | tokens/s | MFU | "
            f"peak mem MB | {ratio_header} |", "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        if "median_s" not in r:
            rows.append(f"| {r['model']} | {r['precision']} | {r['shape']} | {r['impl']} | | "
                        f"error: {str(r.get('error', '?'))[:100]} | | | | | |")
            continue
        mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "n/a"
        mem = f"{r['peak_device_mem_mb']:.0f}" if r.get("peak_device_mem_mb") else ""
        value = ratio(r)
        rows.append(f"| {r['model']} | {r['precision']} | {r['shape']} | {r['impl']} | "
                    f"{r.get('device', '')} | {1e3 * r['median_s']:.1f} | {1e3 * r['min_s']:.1f} | "
                    f"{r['tokens_per_s']:.0f} | {mfu} | {mem} | "
                    f"{f'{value:.2f}' if value else ''} |")
    return "\n".join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--tiny", action="store_true",
                    help="tiny config at 2x64, few iterations (a CPU check of the script)")
    ap.add_argument("--models", default=None, help="default: small,small-base (tiny: tiny)")
    ap.add_argument("--shape", default=None, help="BxL (default 32x512; tiny: 2x64)")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--iters", type=int, default=None, help="timed steps (default 20; tiny: 3)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps after the first "
                    "(default 5; tiny: 1)")
    ap.add_argument("--compile_backend", default=None, help="torch.compile backend (default "
                    "inductor; tiny: eager, which checks the dynamo path without the minutes of "
                    "CPU code generation)")
    ap.add_argument("--peak_tflops", default=None,
                    help="override the peak: 'bf16=989,fp32=494' (dense TFLOP/s)")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per configuration")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main(json.loads(args.worker))

    from funnel_tf.config import load_config
    models = (args.models or ("tiny" if args.tiny else "small,small-base")).split(",")
    batch, seq_len = map(int, (args.shape or ("2x64" if args.tiny else "32x512")).split("x"))
    iters = args.iters or (3 if args.tiny else 20)
    warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 5)
    name = gpu_name()
    peak = dense_peak(name)
    if args.peak_tflops:
        for item in args.peak_tflops.split(","):
            k, v = item.split("=")
            peak[k.strip()] = float(v) * 1e12
        peak["source"] = f"--peak_tflops {args.peak_tflops}"
    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"device: {name or 'no NVIDIA GPU (nvidia-smi)'}; peak: {peak['source']}", flush=True)

    records = []
    for model_name in models:
        cfg = load_config(model_name)
        base = model_name.endswith("-base") or cfg.num_decoder_layers == 0
        for prec in args.precisions.split(","):
            for impl in args.impls.split(","):
                spec = dict(impl=impl, model=model_name, config=cfg.to_dict(), base=base,
                            task="train", batch=batch, seq_len=seq_len, shape=f"{batch}x{seq_len}",
                            precision=prec, iters=iters, warmup=warmup,
                            compile_backend=args.compile_backend
                            or ("eager" if args.tiny else "inductor"))
                t0 = time.time()
                res = run_in_subprocess(spec, args.timeout)
                records.append(timing_record(spec, res, time.time() - t0, peak))
    ours = {(r["model"], r["precision"]): r for r in records
            if r["impl"] == "ours-xla" and "median_s" in r}
    for r in records:
        o = ours.get((r["model"], r["precision"]))
        if o is not None and "median_s" in r and r is not o:
            r["ours_over_this"] = o["median_s"] / r["median_s"]
    text = table(records)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"device_bench_{started.strftime('%Y%m%dT%H%M%SZ')}"
                                  f"{'_tiny' if args.tiny else ''}.json")
    with open(path, "w") as f:
        json.dump({"started": started.isoformat(), "argv": sys.argv[1:], "gpu": name,
                   "peak_flops_per_s": peak, "machine": bf.machine_info(), "records": records,
                   "markdown": text}, f, indent=1)
    print(f"wrote {path}")
    return records


if __name__ == "__main__":
    main()
