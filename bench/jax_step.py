"""The JAX engine's train step, timed: engine/jax/step.TrainStep (one jit-compiled, state-donating
function) on the benches' step, beside the TensorFlow engine's and HF PyTorch's.

    python bench/jax_step.py --out DIR           # GPU: small-base + small at 32x512, fp32 + bf16
    python bench/jax_step.py --tiny --out DIR    # CPU: tiny at 2x64, a check of the script

The step is bench_funnel.py's: forward of the model (FunnelBaseModel for a "-base" name, else
FunnelModel) with dropout on, the mean square of the last hidden state as the loss, backward and
Keras AdamW (lr 1e-4, weight decay 0.01, no clipping); here through the JAX engine's TrainStep,
one step per host call, its loss read back (which waits for the device). bench_funnel.py runs it
as the impl `ours-jax` (CPU figures); `main` is bench/device_check.sh's engine comparison on a GPU:
the TF engine's XLA step (`ours-xla`), this one and HF PyTorch eager (`hf-torch-eager`) at the
same model and shape, each in its own process, into one JSON record (engines_<UTC time>.json).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, REPO)

import bench_funnel as bf  # noqa: E402  (inputs, timing loop, subprocess runner, FLOPs)

ENGINES = ("ours-xla", "ours-jax", "hf-torch-eager")  # TF engine, JAX engine, HF PyTorch
JAX_ENV = {"KERAS_BACKEND": "jax", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


def hidden_mse_task(base: bool):
    """A Task whose loss is the benches' (mean square of the last hidden state, float32), in
    keras.ops: what TrainStep trains, the same model and loss as every other impl."""
    from keras import ops

    from funnel_tf.modeling.model import FunnelBaseModel, FunnelModel
    from funnel_tf.tasks.base import Task

    class HiddenMSE(Task):
        name = "bench_hidden_mse"
        metrics = {"loss": ("loss", None)}

        def build_models(self, config):
            return {"model": (FunnelBaseModel if base else FunnelModel)(config)}

        def build_inputs(self, spec, input_context=None):
            raise NotImplementedError("the bench feeds its arrays itself")

        def local_normalizers(self, features):
            return {}

        def loss_and_stats(self, features, normalizers, training, seed):
            out = self.model(self.model_inputs(features), training=training)
            loss = ops.mean(ops.square(ops.cast(out["last_hidden_state"], "float32")))
            return loss, {"loss": loss}
    return HiddenMSE()


def run_worker(spec: dict) -> dict:
    """Time `spec` (bench_funnel's spec: config, base, batch, seq_len, precision, warmup, iters)
    on the JAX engine in this process (KERAS_BACKEND=jax). spec["require_gpu"]: refuse to time
    on the CPU."""
    import jax
    import keras
    import numpy as np

    if keras.backend.backend() != "jax":
        raise RuntimeError(f"run with KERAS_BACKEND=jax (Keras runs on {keras.backend.backend()})")
    device = jax.devices()[0]
    if spec.get("require_gpu") and device.platform != "gpu":
        raise RuntimeError(f"JAX sees no GPU (devices: {jax.devices()}); install jax[cuda12]")
    from funnel_tf.config import FunnelConfig
    from funnel_tf.engine.jax.step import TrainStep, data_mesh

    if spec["precision"] == "bf16":
        keras.config.set_dtype_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    task = hidden_mse_task(spec["base"]).bind(FunnelConfig.from_dict(spec["config"]))
    task.build()
    ids, mask, types = bf._inputs_numpy(spec["batch"], spec["seq_len"], task.config.vocab_size)
    batch = {"input_ids": ids.astype(np.int32), "attention_mask": mask.astype(np.int32),
             "token_type_ids": types.astype(np.int32)}
    task.model(batch, training=False)  # creates the variables
    optimizer = keras.optimizers.AdamW(learning_rate=1e-4, weight_decay=0.01)
    optimizer.build(task.trainable_variables)
    step = TrainStep(task, optimizer, clip_norm=0.0, seed=0, mesh=data_mesh([device]))
    stacked = {k: v[None] for k, v in batch.items()}  # one step per host call: [1, B, L]
    box = {"state": step.initial_state()}

    def run():
        box["state"], stats = step(box["state"], stacked)
        return float(stats["loss"][0])  # waits for the device
    first, times, cpu = bf._time_loop(run, spec["warmup"], spec["iters"])
    mem = (device.memory_stats() or {}).get("peak_bytes_in_use") if device.platform != "cpu" \
        else None
    return {"first_call_s": first, "times_s": times, "cpu_times_s": cpu,
            "device": device.platform.upper(), "device_kind": device.device_kind,
            "peak_device_mem_mb": mem / 2**20 if mem else None, "final_loss": run(),
            "versions": {"jax": jax.__version__, "keras": keras.__version__}}


def _worker_main(spec: dict) -> None:
    result = run_worker(spec)
    print("RESULT " + json.dumps(result), flush=True)


# ------------------------------------------------------------------------- the GPU comparison
def measure(spec: dict, timeout: int) -> dict:
    """One engine's figures for `spec` in a fresh process ({"error": ...} when it failed)."""
    import device_bench

    if spec["impl"] == "ours-jax":
        return bf.run_in_subprocess(spec, timeout=timeout, script=__file__, extra_env=JAX_ENV)
    return device_bench.run_in_subprocess(spec, timeout)


def compare(records: list) -> None:
    """jax_over_tf / jax_over_torch: the JAX engine's median step time over the TF engine's and
    HF PyTorch's of the same model and precision (below 1: the JAX engine is faster)."""
    by = {(r["model"], r["precision"], r["impl"]): r for r in records if "median_s" in r}
    for r in records:
        if r["impl"] != "ours-jax" or "median_s" not in r:
            continue
        for field, peer in (("jax_over_tf", "ours-xla"), ("jax_over_torch", "hf-torch-eager")):
            other = by.get((r["model"], r["precision"], peer))
            if other is not None:
                r[field] = r["median_s"] / other["median_s"]


def table(records: list) -> str:
    """device_bench's table, its last column the JAX engine's step over each row's."""
    import device_bench

    jax_by = {(r["model"], r["precision"]): r for r in records
              if r["impl"] == "ours-jax" and "median_s" in r}

    def ratio(r):
        j = jax_by.get((r["model"], r["precision"]))
        return j["median_s"] / r["median_s"] if j is not None else None
    return device_bench.table(records, "JAX / this", ratio, impl_header="engine")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--tiny", action="store_true", help="CPU check: tiny config at 2x64")
    ap.add_argument("--models", default=None, help="default: small-base,small (tiny: tiny)")
    ap.add_argument("--shape", default=None, help="BxL (default 32x512; tiny: 2x64)")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--impls", default=",".join(ENGINES))
    ap.add_argument("--iters", type=int, default=None, help="timed steps (default 20; tiny: 3)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps (default 5; tiny: 1)")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per configuration")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args(argv)
    if args.worker:
        return _worker_main(json.loads(args.worker))
    import device_bench
    from funnel_tf.config import load_config

    models = (args.models or ("tiny" if args.tiny else "small-base,small")).split(",")
    batch, seq_len = map(int, (args.shape or ("2x64" if args.tiny else "32x512")).split("x"))
    iters, warmup = args.iters or (3 if args.tiny else 20), \
        args.warmup if args.warmup is not None else (1 if args.tiny else 5)
    name = "" if args.tiny else device_bench.gpu_name()
    peak = device_bench.dense_peak(name)
    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"engines: device {name or 'CPU'}; peak: {peak['source']}", flush=True)
    records = []
    for model_name in models:
        cfg = load_config(model_name)
        base = model_name.endswith("-base") or cfg.num_decoder_layers == 0
        for prec in args.precisions.split(","):
            for impl in args.impls.split(","):
                spec = dict(impl=impl, model=model_name, config=cfg.to_dict(), base=base,
                            task="train", batch=batch, seq_len=seq_len, shape=f"{batch}x{seq_len}",
                            precision=prec, iters=iters, warmup=warmup, threads=os.cpu_count(),
                            compile_backend="eager", require_gpu=not args.tiny)
                t0 = time.time()
                res = measure(spec, args.timeout)
                records.append(device_bench.timing_record(spec, res, time.time() - t0, peak))
    compare(records)
    text = table(records)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"engines_{started.strftime('%Y%m%dT%H%M%SZ')}"
                                  f"{'_tiny' if args.tiny else ''}.json")
    with open(path, "w") as f:
        json.dump({"started": started.isoformat(), "argv": sys.argv[1:], "gpu": name,
                   "peak_flops_per_s": peak, "machine": bf.machine_info(),
                   "loadavg": os.getloadavg(), "records": records, "markdown": text}, f, indent=1)
    print(f"wrote {path}")
    failed = [r for r in records if "median_s" not in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
