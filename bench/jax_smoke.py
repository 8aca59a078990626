"""TPU smoke test of the JAX engine (`pretrain.py --backend=jax`) through its real entry point, for
a TPU VM with `jax[tpu]` (jax.devices() are the TPU chips; no TensorFlow TPU build, no
TPUClusterResolver). Run by `bench/tpu_smoke.sh --backend=jax` (which installs first):

    python bench/jax_smoke.py --out DIR                                    # TPU VM: tiny + small
    python bench/jax_smoke.py --strategy=default --configs=tiny --out DIR  # CPU (JAX_PLATFORMS=cpu)

Stages, as bench/tpu_smoke.py's for the TensorFlow engine (its Runner, verdict lines, shapes,
step-time and MFU arithmetic): devices (jax.devices(): TPUs on a TPU VM), then per config
pretrain (MLM on the demo corpus, two host loops), sigterm (exit 75 with a checkpoint at the step
reached), resume (the same command restores that step and finishes), export (the run's
`<model_dir>/pretrained` loaded by FunnelModel.from_pretrained on JAX in a fresh process, finite
outputs). No finetuning stage: finetune.py runs on TensorFlow (README: On a TPU VM with JAX).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import tpu_smoke as ts  # noqa: E402  (pure Python: no TensorFlow, no JAX)

_JAX_CHECKPOINT = re.compile(r"^jax[-_](\d+)(?:\.npz)?$")  # jax_<step>/ (Orbax), jax-<step>.npz


def newest_jax_checkpoint_step(model_dir: str) -> Optional[int]:
    """Largest step of the JAX engine's checkpoints under <model_dir>/checkpoints, else None
    (a checkpoint being written, Orbax's temporary folder, does not count)."""
    folder = os.path.join(model_dir, "checkpoints")
    names = os.listdir(folder) if os.path.isdir(folder) else []
    steps = [int(m.group(1)) for name in names if (m := _JAX_CHECKPOINT.match(name))]
    return max(steps) if steps else None


def device_detail(info: dict, strategy: str, accelerator_type: Optional[str]):
    """(ok, detail, peak) of the devices probe's report: on a TPU VM the JAX backend must be the
    TPU; the peak is per device as JAX lists them (one per TensorCore on v2/v3, per chip after)."""
    accel = accelerator_type
    gen = (ts.tpu_generation(accel) or ts.tpu_generation(info.get("device_kind"))
           if strategy == "tpu" else None)
    peak = ts.tpu_peak(gen, int(info.get("num_devices") or 0))
    detail = (f"JAX {info.get('jax_version')} on {info.get('backend')}: {info.get('num_devices')} "
              f"x {info.get('device_kind')} ({info.get('num_processes')} process(es))")
    if strategy != "tpu":
        return True, detail, peak
    if info.get("backend") != "tpu":
        return False, detail + ": JAX sees no TPU (install jax[tpu]; another process may hold " \
                               "the TPU)", peak
    detail += (f"; {accel or info.get('device_kind')} -> "
               + (f"{gen}: {peak['chips']:g} chip(s) x {peak['chip_tflops']:g} TFLOP/s bf16 = "
                  f"{peak['peak_flops'] / 1e12:g} TFLOP/s peak" if peak["peak_flops"]
                  else "unknown generation: MFU n/a (pass --accelerator_type)"))
    return True, detail, peak


class JaxRunner(ts.Runner):
    """tpu_smoke's Runner on the JAX engine: its pretrain / sigterm / resume stages with
    --backend=jax, a JAX devices probe, and the export check in place of finetuning."""

    newest_checkpoint = staticmethod(newest_jax_checkpoint_step)

    def __init__(self, args):
        super().__init__(args)
        self.env["KERAS_BACKEND"] = "jax"
        self.env.pop("XLA_FLAGS", None)
        if args.strategy == "default":
            self.env["JAX_PLATFORMS"] = "cpu"  # the CPU check is a CPU check

    def strategy_flags(self):
        precision = "mixed_bfloat16" if self.a.strategy == "tpu" else "float32"
        return ["--backend=jax", f"--precision={precision}"]

    def devices(self) -> bool:
        t0 = time.time()
        stem = os.path.join(self.out, "devices")
        rc = self.run([self.py, os.path.join(HERE, "jax_smoke.py"), "--probe_devices"], stem,
                      timeout=min(self.a.stage_timeout, 900))
        info = {}
        for line in self.read(stem + ".out").splitlines():
            if line.startswith("DEVICES "):
                info = json.loads(line[len("DEVICES "):])
        accel = self.a.accelerator_type or os.environ.get("TPU_ACCELERATOR_TYPE") or (
            ts.gce_accelerator_type() if self.a.strategy == "tpu" else None)
        ok, detail, peak = device_detail(info, self.a.strategy, accel)
        self.device = dict(info, accelerator_type=accel, slice_chips=ts.slice_chips(accel),
                           peak=peak)
        if rc != 0 or not info:
            return self.add("devices", ts.FAIL, f"exit {rc}: {ts.reason(stem + '.log')}", t0)
        return self.add("devices", ts.PASS if ok else ts.FAIL, detail, t0)

    def rte(self):
        return None, "not used (no finetuning on JAX yet)"

    def finetune(self, config, shape, init_dir, vocab, rte_dir) -> None:
        """The JAX engine's export in place of finetuning: <model_dir>/pretrained loaded by
        FunnelModel.from_pretrained on JAX in a fresh process, its outputs finite."""
        t0 = time.time()
        stem = os.path.join(self.out, config, "export")
        export = os.path.join(init_dir, "pretrained")
        rc = self.run([self.py, os.path.join(HERE, "jax_smoke.py"), f"--probe_export={export}"],
                      stem, timeout=min(self.a.stage_timeout, 900))
        m = re.search(r"^EXPORT (.*)$", self.read(stem + ".out"), re.M)
        got = json.loads(m.group(1)) if m else {}
        ok = rc == 0 and got.get("ok") is True
        self.add(f"{config}/export", ts.PASS if ok else ts.FAIL,
                 (f"{export} loaded on JAX: last_hidden_state {got.get('shape')}" if ok else
                  f"exit {rc}: {got.get('error') or ts.reason(stem + '.log')}"), t0)


# ------------------------------------------------------------------ probes (subprocesses)
def probe_devices() -> int:
    """Print 'DEVICES {json}': JAX's backend, devices and processes (jax.distributed first, as
    the run does)."""
    from funnel_tf.engine.jax import distributed

    distributed.initialize_from_env()
    import jax

    devices = jax.devices()
    print("DEVICES " + json.dumps({
        "backend": jax.default_backend(), "num_devices": len(devices),
        "local_devices": jax.local_device_count(), "num_processes": jax.process_count(),
        "device_kind": devices[0].device_kind, "jax_version": jax.__version__,
        "devices": [str(d) for d in devices[:16]]}), flush=True)
    return 0


def probe_export(folder: str) -> int:
    """Print 'EXPORT {json}': FunnelModel.from_pretrained(folder) on JAX, one short input."""
    result = {"ok": False}
    try:
        import keras
        import numpy as np

        from funnel_tf import FunnelModel
        if keras.backend.backend() != "jax":
            raise RuntimeError(f"Keras runs on {keras.backend.backend()}, not jax")
        model = FunnelModel.from_pretrained(folder)
        ids = np.full((1, 16), 5, np.int32)
        ids[0, 0] = 2
        out = np.asarray(model({"input_ids": ids, "attention_mask": np.ones_like(ids),
                                "token_type_ids": np.zeros_like(ids)})["last_hidden_state"])
        result = {"ok": bool(np.all(np.isfinite(out))) and out.shape[:2] == (1, 16),
                  "shape": list(out.shape)}
    except Exception as e:  # noqa: BLE001 - reported as the stage's failure
        result["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
    print("EXPORT " + json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


def main(argv=None) -> int:
    a = ts.parse_args(argv)  # tpu_smoke's flags (--tpu is not used: JAX finds its TPUs itself)
    if a.probe_devices:
        return probe_devices()
    if a.probe_export:
        return probe_export(a.probe_export)
    a.out = a.out or os.path.join(HERE, "results", "jax_smoke_" + time.strftime(
        "%Y%m%dT%H%M%SZ", time.gmtime()))
    used = [c for c in a.configs.split(",") if c and os.path.isdir(os.path.join(a.out, c))
            and os.listdir(os.path.join(a.out, c))]
    if used:  # a model_dir there would be resumed, not trained afresh: never reuse one
        print(f"jax_smoke: {a.out} already holds results of {used}; use a new --out",
              file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    status = JaxRunner(a).all(ts.Stage("install", a.install_status, a.install_detail))
    path = os.path.join(a.out, "tpu_smoke.json")  # the summary says which engine it checked
    with open(path, encoding="utf-8") as f:
        summary = json.load(f)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(dict(summary, backend="jax"), f, indent=1, default=str)
        f.write("\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
