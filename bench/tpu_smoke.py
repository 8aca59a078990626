"""TPU smoke test of funnel-tf through its real entry points, with a PASS/FAIL verdict per stage,
step times and MFU against the TPU's bf16 peak. Run by bench/tpu_smoke.sh (which installs first):

    python bench/tpu_smoke.py --out DIR                                   # TPU VM: tiny + small
    python bench/tpu_smoke.py --strategy=default --configs=tiny --out DIR # CPU: checks the script

Per config (tiny, small), each stage a subprocess of `pretrain.py` / `finetune.py`:
  pretrain  MLM on the shipped demo corpus under TPUStrategy; PASS once metrics.jsonl holds the
            record of the second host loop (the first loop's record holds the compile time).
  sigterm   SIGTERM to that run: PASS on exit 75 with a checkpoint at the step it reports.
  resume    the same command again: PASS when it restores that step, finishes and checkpoints.
  finetune  GLUE RTE (the real sample under the shared data, else a generated RTE-format TSV
            folder) from the pretrained checkpoint for a few steps, with an evaluation.
  export    the finetune's SavedModel (raw text in), reloaded in a fresh process and queried.
Step time is read from metrics.jsonl (the windows after compilation, of both pretraining runs);
FLOPs per step from funnel_tf/flops.py plus the MLM output projection. The orchestration itself
never imports TensorFlow, so it never holds the TPU that its subprocesses need.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from funnel_tf import flops as flops_lib  # noqa: E402  (pure Python: no TensorFlow)
from funnel_tf.config import FunnelConfig  # noqa: E402

EXIT_PREEMPTED = 75  # pretrain.py / finetune.py after a SIGTERM: checkpoint saved, rerun to resume

# ------------------------------------------------------------------------------- TPU peaks
# Dense bf16 TFLOP/s per CHIP (Google Cloud TPU docs) and TF devices per chip. TF shows every
# TensorCore it drives as one TPU device, i.e. one replica of TPUStrategy: v2 and v3 chips have
# two TensorCores that TF drives separately (a v3-8 = 4 chips = 8 replicas, each with half the
# chip's peak); v4 and v5p also have two but fuse them into one "megacore" device per chip (a v4-8
# = 4 chips = 4 replicas); v5e and v6e have one TensorCore per chip. Accelerator-type names count
# TensorCores for v2/v3/v4/v5p ("v4-8": 4 chips) and chips for v5e/v6e ("v5litepod-8": 8 chips).
TPU_PEAKS = {  # generation: (bf16 TFLOP/s per chip, TF devices per chip, name suffix counts cores)
    "v2": (45.0, 2, True),
    "v3": (123.0, 2, True),
    "v4": (275.0, 1, True),
    "v5e": (197.0, 1, False),
    "v5p": (459.0, 1, True),
    "v6e": (918.0, 1, False),
}


def tpu_generation(name: Optional[str]) -> Optional[str]:
    """'v4-8', 'v5litepod-16', 'v6e-8', 'TPU v5 lite', 'TPU v3' ... -> a TPU_PEAKS key, else None.

    Accepts TPU_ACCELERATOR_TYPE / GCE accelerator-type values and device-kind strings."""
    if not name:
        return None
    s = name.strip().lower().replace("tpu", " ").replace("_", " ").strip()
    m = re.match(r"^v(\d+)\s*(litepod|lite|e|p)?\b", s)
    if not m:
        return None
    major, variant = m.group(1), m.group(2) or ""
    if major in ("2", "3", "4") and not variant:
        return f"v{major}"
    if major == "5":
        if variant in ("litepod", "lite", "e"):
            return "v5e"
        return "v5p" if variant in ("p", "") else None  # device kind "TPU v5" is the v5p
    if major == "6" and variant in ("lite", "e"):
        return "v6e"
    return None


def slice_chips(accelerator_type: Optional[str]) -> Optional[int]:
    """Chips in a slice from its accelerator type: 'v4-8' -> 4, 'v5litepod-8' -> 8, 'v3-8' -> 4."""
    gen = tpu_generation(accelerator_type)
    m = re.search(r"-(\d+)$", (accelerator_type or "").strip())
    if gen is None or not m:
        return None
    n = int(m.group(1))
    counts_cores = TPU_PEAKS[gen][2]
    return n // 2 if counts_cores else n


def tpu_peak(generation: Optional[str], num_replicas: int) -> dict:
    """Peak bf16 FLOP/s of the devices a run uses: num_replicas TF devices of `generation`.

    {"generation", "chip_tflops", "devices_per_chip", "chips", "peak_flops"}; peak_flops is None
    (no MFU) for an unknown generation or a non-TPU device."""
    if generation not in TPU_PEAKS or num_replicas < 1:
        return {"generation": generation, "chip_tflops": None, "devices_per_chip": None,
                "chips": None, "peak_flops": None}
    chip_tflops, per_chip, _ = TPU_PEAKS[generation]
    chips = num_replicas / per_chip
    return {"generation": generation, "chip_tflops": chip_tflops, "devices_per_chip": per_chip,
            "chips": chips, "peak_flops": chips * chip_tflops * 1e12}


# ----------------------------------------------------------------------------- FLOPs / MFU
def mlm_train_flops_per_step(config: FunnelConfig, seq_len: int, batch_size: int,
                             num_predict: int) -> int:
    """Forward + backward matmul FLOPs of one MLM step: the full model (encoder + decoder, from
    funnel_tf/flops.py) plus the MLM head at the masked positions ([B*P, D] x [D, vocab], and the
    D x D transform when the config has one). The optimizer update is not counted."""
    body = flops_lib.train_flops(config, seq_len, batch_size, with_decoder=True)
    rows = batch_size * num_predict
    head = 2 * rows * config.d_model * config.vocab_size
    if config.mlm_transform:
        head += 2 * rows * config.d_model * config.d_model
    return int(body + 3 * head)


def mfu(flops_per_step: float, step_seconds: Optional[float],
        peak_flops: Optional[float]) -> Optional[float]:
    """Model FLOPs utilisation (0..1), or None when the time or the peak is unknown (CPU)."""
    if not step_seconds or not peak_flops or step_seconds != step_seconds:
        return None
    return flops_lib.model_flops_utilization(flops_per_step, step_seconds, peak_flops)


def steady_windows(records: Sequence[dict]) -> List[Tuple[int, float]]:
    """(steps, seconds) of each log window of ONE run's metrics.jsonl records after compilation.

    A window's steps are the step difference from the run's previous record; its time is steps /
    steps_per_sec. The run's first record (the window holding the compile) has no rate (NaN)."""
    out = []
    for prev, rec in zip(records, records[1:]):
        rate = rec.get("steps_per_sec")
        steps = int(rec["step"]) - int(prev["step"])
        if steps > 0 and isinstance(rate, (int, float)) and rate == rate and rate > 0:
            out.append((steps, steps / rate))
    return out


def step_time(windows: Sequence[Tuple[int, float]]) -> Optional[float]:
    """Seconds per step over all windows (total time / total steps), None without any."""
    steps = sum(s for s, _ in windows)
    return sum(t for _, t in windows) / steps if steps else None


# -------------------------------------------------------------------------------- verdicts
PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
_STAGE_LINE = re.compile(r"^tpu_smoke: (\S+) (PASS|FAIL|SKIP)\b(?: - (.*))?$")
_VERDICT_LINE = re.compile(r"^tpu_smoke: VERDICT (PASS|FAIL)\b")


@dataclasses.dataclass
class Stage:
    name: str       # "install", "devices", or "<config>/<stage>"
    status: str     # PASS / FAIL / SKIP
    detail: str = ""
    seconds: Optional[float] = None


def overall(stages: Sequence[Stage]) -> str:
    """PASS when no stage failed and at least one passed."""
    if any(s.status == FAIL for s in stages) or not any(s.status == PASS for s in stages):
        return FAIL
    return PASS


def format_verdict(stages: Sequence[Stage]) -> str:
    """One line per stage, then the overall verdict (what parse_verdict reads back)."""
    lines = [f"tpu_smoke: {s.name} {s.status}" + (f" - {s.detail}" if s.detail else "")
             for s in stages]
    n = {k: sum(s.status == k for s in stages) for k in (PASS, FAIL, SKIP)}
    lines.append(f"tpu_smoke: VERDICT {overall(stages)} ({n[PASS]} passed, {n[FAIL]} failed, "
                 f"{n[SKIP]} skipped)")
    return "\n".join(lines)


def parse_verdict(text: str) -> Tuple[Optional[str], Dict[str, str]]:
    """(overall verdict or None, {stage: status}) from a run's output; other lines are ignored."""
    verdict, stages = None, {}
    for line in text.splitlines():
        line = line.rstrip()
        m = _VERDICT_LINE.match(line)
        if m:
            verdict = m.group(1)
            continue
        m = _STAGE_LINE.match(line)
        if m:
            stages[m.group(1)] = m.group(2)
    return verdict, stages


# ------------------------------------------------------------------ what the entry points say
_RESTORED = re.compile(r"restored (\S+) \(step (\d+)\)")
_SUMMARY = re.compile(r"^(finished|stopped \(preempted\)) at step (\d+)", re.M)


def restored_step(log_text: str) -> Optional[int]:
    """Step of the checkpoint a run restored ('restored .../ckpt-40 (step 40)'), else None."""
    m = _RESTORED.findall(log_text)
    return int(m[-1][1]) if m else None


def pretrain_end(stdout_text: str) -> Tuple[Optional[str], Optional[int]]:
    """('finished' | 'preempted', step) from pretrain.py's summary, else (None, None)."""
    m = _SUMMARY.findall(stdout_text)
    if not m:
        return None, None
    how, step = m[-1]
    return ("finished" if how == "finished" else "preempted"), int(step)


def newest_checkpoint_step(model_dir: str) -> Optional[int]:
    """Largest N of <model_dir>/checkpoints/ckpt-N.index, else None."""
    folder = os.path.join(model_dir, "checkpoints")
    steps = [int(m.group(1)) for f in (os.listdir(folder) if os.path.isdir(folder) else [])
             for m in [re.match(r"^ckpt-(\d+)\.index$", f)] if m]
    return max(steps) if steps else None


def read_jsonl(path: str) -> List[dict]:
    if not os.path.exists(path):
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                break  # a record being written
    return out


def last_line(path: str, pattern: str = r"(Error|error:|Traceback|FAIL)") -> str:
    """The last line of a log that looks like the reason a process failed (else its last line)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [ln.strip() for ln in f if ln.strip()]
    except OSError:
        return ""
    hits = [ln for ln in lines if re.search(pattern, ln)]
    return ((hits or lines or [""])[-1])[:300]


def reason(log_path: str) -> str:
    """Why a stage's process failed, for its FAIL line: the log's telling line and where it is."""
    return f"{last_line(log_path)} (log: {log_path})"


# ------------------------------------------------------------------------------- settings
@dataclasses.dataclass
class Shape:
    """Pretraining and finetuning shapes of one config under one strategy."""
    seq_len: int
    batch_size: int
    steps_per_loop: int
    loops: int            # host loops of the SIGTERM run (SIGTERM after the 2nd, resume the rest)
    ft_seq_len: int
    ft_batch_size: int
    ft_steps: int
    ft_steps_per_loop: int
    ft_max_train: int
    ft_max_eval: int
    note: str = ""

    @property
    def num_predict(self) -> int:
        return max(1, round(self.seq_len * 85 / 512))  # pretrain.py's default: 85 per 512 tokens


SHAPES = {
    # TPU: the paper's pretraining shapes (seq 512 for small), global batches divisible by the 8
    # replicas of a v2/v3/v5e/v6e-8 and the 4 of a v4/v5p-8.
    ("tpu", "tiny"): Shape(128, 256, 50, 10, 128, 32, 20, 10, 640, 128),
    ("tpu", "small"): Shape(512, 256, 20, 6, 128, 32, 20, 10, 640, 128),
    # CPU: tiny shapes so the whole run takes minutes on 2 cores (small: the real model at a toy
    # shape; its step time says nothing about TPU speed).
    ("default", "tiny"): Shape(64, 8, 5, 8, 64, 8, 4, 2, 64, 32),
    ("default", "small"): Shape(64, 4, 2, 6, 64, 4, 2, 2, 16, 8,
                                note="CPU: small at a toy shape (seq 64, batch 4)"),
}


def shape_for(strategy: str, config: str) -> Shape:
    if (strategy, config) in SHAPES:
        return SHAPES[(strategy, config)]
    return SHAPES[(strategy, "small")]  # any other config: small's shape


def shared_data_dir() -> str:
    return os.environ.get("FUNNEL_SHARED_DATA",
                          os.path.join(os.path.dirname(REPO), "shared", "data"))


# --------------------------------------------------------------------------- generated RTE
_SUBJECTS = ("the river", "the garden", "the harbor", "the library", "the village", "the market",
             "the old boat", "the long street", "the small room", "the north road")
_STATES = (("was warm", "was cold"), ("was open", "was closed"), ("was quiet", "was loud"),
           ("was full", "was empty"), ("was clean", "was dirty"), ("was near", "was far"))
_TAILS = ("before the train came", "while the lamps were lit", "after the long winter",
          "when the neighbors gathered", "as the tide turned")


def write_rte(folder: str, num_train: int = 256, num_dev: int = 64, seed: int = 0) -> str:
    """A GLUE-RTE-format folder (train.tsv, dev.tsv: index, sentence1, sentence2, label) of
    generated pairs: the hypothesis repeats the premise's state (entailment) or its opposite."""
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    for split, n in (("train", num_train), ("dev", num_dev)):
        with open(os.path.join(folder, f"{split}.tsv"), "w", encoding="utf-8") as f:
            f.write("index\tsentence1\tsentence2\tlabel\n")
            for i in range(n):
                subject, (state, opposite) = rng.choice(_SUBJECTS), rng.choice(_STATES)
                entail = rng.random() < 0.5
                premise = f"{subject} {state} {rng.choice(_TAILS)}."
                hypothesis = f"{subject} {state if entail else opposite}."
                f.write(f"{i}\t{premise}\t{hypothesis}\t"
                        f"{'entailment' if entail else 'not_entailment'}\n")
    return folder


# --------------------------------------------------------------------------------- running
class Runner:
    """Runs the stages of every config, collecting Stage results and figures."""

    newest_checkpoint = staticmethod(newest_checkpoint_step)  # jax_smoke.py: the JAX engine's

    def __init__(self, args):
        self.a = args
        self.out = os.path.abspath(args.out)
        self.py = args.python or sys.executable
        self.stages: List[Stage] = []
        self.figures: Dict[str, dict] = {}
        self.device: dict = {}
        self.env = dict(os.environ)
        if args.strategy == "default":
            self.env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU check is a CPU check
        self.env.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

    # ---------------------------------------------------------------------------- helpers
    def add(self, name, status, detail="", t0=None):
        st = Stage(name, status, detail, None if t0 is None else round(time.time() - t0, 1))
        self.stages.append(st)
        print(f"tpu_smoke: {st.name} {st.status}" + (f" - {st.detail}" if st.detail else "")
              + (f" [{st.seconds:.0f} s]" if st.seconds is not None else ""), flush=True)
        return st.status == PASS

    def strategy_flags(self) -> List[str]:
        if self.a.strategy == "tpu":
            return ["--strategy=tpu", f"--tpu={self.a.tpu}", "--precision=mixed_bfloat16"]
        return ["--strategy=default"]

    def start(self, cmd, stem):
        """Popen with stdout -> <stem>.out, stderr -> <stem>.log; returns (proc, files)."""
        with open(stem + ".cmd", "w", encoding="utf-8") as f:
            f.write(" ".join(cmd) + "\n")
        out, err = open(stem + ".out", "w"), open(stem + ".log", "w")
        proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=out, stderr=err,
                                start_new_session=True)
        return proc, (out, err)

    def wait(self, proc, files, timeout) -> Optional[int]:
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
        for f in files:
            f.close()
        return rc

    def run(self, cmd, stem, timeout=None) -> Optional[int]:
        proc, files = self.start(cmd, stem)
        return self.wait(proc, files, timeout or self.a.stage_timeout)

    @staticmethod
    def read(path) -> str:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # ---------------------------------------------------------------------------- devices
    def devices(self) -> bool:
        t0 = time.time()
        stem = os.path.join(self.out, "devices")
        rc = self.run([self.py, os.path.join(HERE, "tpu_smoke.py"), "--probe_devices",
                       f"--strategy={self.a.strategy}", f"--tpu={self.a.tpu}"], stem,
                      timeout=min(self.a.stage_timeout, 900))
        info = {}
        for line in self.read(stem + ".out").splitlines():
            if line.startswith("DEVICES "):
                info = json.loads(line[len("DEVICES "):])
        accel = self.a.accelerator_type or os.environ.get("TPU_ACCELERATOR_TYPE") or (
            gce_accelerator_type() if self.a.strategy == "tpu" else None)
        gen = (tpu_generation(accel) or tpu_generation(info.get("device_kind"))
               if self.a.strategy == "tpu" else None)
        replicas = int(info.get("num_replicas") or 0)
        peak = tpu_peak(gen, replicas)
        self.device = dict(info, accelerator_type=accel, slice_chips=slice_chips(accel), peak=peak)
        if rc != 0 or not info:
            return self.add("devices", FAIL, f"exit {rc}: {reason(stem + '.log')}", t0)
        detail = f"{info.get('describe')}; TF {info.get('tf_version')}"
        if self.a.strategy == "tpu":
            detail += (f"; {accel or info.get('device_kind') or 'unknown TPU'} -> "
                       + (f"{gen}: {peak['chips']:g} chip(s) x {peak['chip_tflops']:g} TFLOP/s "
                          f"bf16 = {peak['peak_flops'] / 1e12:g} TFLOP/s peak" if peak["peak_flops"]
                          else "unknown generation: MFU n/a (pass --accelerator_type)"))
            if info.get("kind") != "tpu":
                return self.add("devices", FAIL, detail + ": not a TPU strategy", t0)
        return self.add("devices", PASS, detail, t0)

    # --------------------------------------------------------------------------- pretrain
    def pretrain_cmd(self, config, shape: Shape, model_dir, vocab) -> List[str]:
        n = shape.steps_per_loop
        return [self.py, "pretrain.py", f"--config={config}",
                f"--train_data={os.path.join(REPO, 'data', 'demo_corpus.txt')}",
                f"--vocab={vocab}", f"--model_dir={model_dir}", f"--seq_len={shape.seq_len}",
                f"--batch_size={shape.batch_size}", f"--num_predict={shape.num_predict}",
                f"--steps_per_loop={n}", f"--log_every={n}", f"--save_every={2 * n}",
                f"--train_steps={shape.loops * n}", f"--warmup_steps={n}",
                "--learning_rate=1e-4"] + self.strategy_flags()

    def pretrain(self, config: str, shape: Shape, vocab: str) -> Optional[str]:
        """pretrain (2 host loops) -> sigterm -> resume; returns the model_dir or None."""
        cdir = os.path.join(self.out, config)
        model_dir = os.path.join(cdir, "pretrain")
        n, total = shape.steps_per_loop, shape.loops * shape.steps_per_loop
        cmd = self.pretrain_cmd(config, shape, model_dir, vocab)
        metrics = os.path.join(model_dir, "metrics.jsonl")

        # 1. two host loops, then SIGTERM
        t0 = time.time()
        stem = os.path.join(cdir, "pretrain")
        proc, files = self.start(cmd, stem)
        deadline, seen = time.time() + self.a.stage_timeout, []
        while proc.poll() is None and time.time() < deadline:
            seen = read_jsonl(metrics)
            if seen and seen[-1]["step"] >= 2 * n:
                break
            time.sleep(0.2)
        if not (seen and seen[-1]["step"] >= 2 * n):
            rc = proc.poll()
            if rc is None:
                os.killpg(proc.pid, signal.SIGKILL)
            self.wait(proc, files, 60)
            self.add(f"{config}/pretrain", FAIL,
                     f"no record of the 2nd host loop (step {2 * n}) in metrics.jsonl; exit {rc}: "
                     f"{reason(stem + '.log')}", t0)
            return None
        rec = seen[-1]
        self.add(f"{config}/pretrain", PASS,
                 f"step {rec['step']}/{total} after 2 host loops of {n}, "
                 f"loss {rec['loss']:.4f}", t0)

        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        rc = self.wait(proc, files, self.a.stage_timeout)
        how, step = pretrain_end(self.read(stem + ".out"))
        ckpt = self.newest_checkpoint(model_dir)
        first_run_lines = len(read_jsonl(metrics))
        ok = (rc == EXIT_PREEMPTED and how == "preempted" and step == ckpt
              and 2 * n <= step < total)
        if ok:
            self.add(f"{config}/sigterm", PASS, f"exit 75, checkpoint ckpt-{ckpt} at the step "
                     f"reached ({step})", t0)
        else:
            why = {0: "the run finished before the SIGTERM landed (raise the loops)",
                   -signal.SIGTERM: "killed by the SIGTERM: no handler saved and exited 75",
                   None: "timed out"}.get(rc, reason(stem + ".log"))
            self.add(f"{config}/sigterm", FAIL, f"exit {rc} (expected 75), summary {how} at step "
                     f"{step}, newest checkpoint {ckpt}: {why}", t0)
            if ckpt is None:
                return None

        # 3. the same command again: restore, finish
        t0 = time.time()
        stem2 = os.path.join(cdir, "resume")
        rc = self.run(cmd, stem2)
        restored = restored_step(self.read(stem2 + ".log"))
        how2, step2 = pretrain_end(self.read(stem2 + ".out"))
        records = read_jsonl(metrics)
        run1, run2 = records[:first_run_lines], records[first_run_lines:]
        resumed_from_ckpt = bool(run2) and run2[0]["step"] > ckpt
        ok = (rc == 0 and restored == ckpt and how2 == "finished" and step2 == total
              and self.newest_checkpoint(model_dir) == total and resumed_from_ckpt)
        self.add(f"{config}/resume", PASS if ok else FAIL,
                 f"restored step {restored}, finished at step {step2}/{total}, first new record "
                 f"at step {run2[0]['step'] if run2 else None}" + (
                     "" if ok else f"; exit {rc}: {reason(stem2 + '.log')}"), t0)

        windows = steady_windows(run1) + steady_windows(run2)
        self.figures[config] = self.speed(config, shape, model_dir, windows)
        return model_dir if ok else None

    def speed(self, config, shape: Shape, model_dir, windows) -> dict:
        cfg = FunnelConfig.from_json_file(os.path.join(model_dir, "config.json"))
        per_step = mlm_train_flops_per_step(cfg, shape.seq_len, shape.batch_size,
                                            shape.num_predict)
        t = step_time(windows)
        peak = (self.device.get("peak") or {}).get("peak_flops")
        u = mfu(per_step, t, peak)
        return {"seq_len": shape.seq_len, "batch_size": shape.batch_size,
                "num_predict": shape.num_predict, "vocab_size": cfg.vocab_size,
                "steps_timed": sum(s for s, _ in windows), "step_time_s": t,
                "tokens_per_sec": shape.batch_size * shape.seq_len / t if t else None,
                "train_flops_per_step": per_step,
                "train_flops_per_token": per_step / (shape.batch_size * shape.seq_len),
                "achieved_tflops": per_step / t / 1e12 if t else None,
                "peak_tflops": peak / 1e12 if peak else None, "mfu": u, "note": shape.note}

    # --------------------------------------------------------------------------- finetune
    def finetune(self, config, shape: Shape, init_dir, vocab, rte_dir) -> None:
        cdir = os.path.join(self.out, config)
        model_dir, export_dir = os.path.join(cdir, "rte"), os.path.join(cdir, "rte_export")
        t0 = time.time()
        stem = os.path.join(cdir, "finetune")
        cmd = [self.py, "finetune.py", "--task=rte", f"--data_dir={rte_dir}",
               f"--init_checkpoint={init_dir}", f"--vocab_file={vocab}",
               f"--model_dir={model_dir}", "--do_train", "--do_eval", f"--export_dir={export_dir}",
               f"--train_steps={shape.ft_steps}", f"--steps_per_loop={shape.ft_steps_per_loop}",
               f"--log_every={shape.ft_steps_per_loop}", "--eval_every=-1",
               f"--max_train_examples={shape.ft_max_train}",
               f"--max_eval_examples={shape.ft_max_eval}", f"--max_seq_length={shape.ft_seq_len}",
               f"--batch_size={shape.ft_batch_size}"] + self.strategy_flags()
        rc = self.run(cmd, stem)
        summary = json_summary(self.read(stem + ".out"))
        train = (summary or {}).get("train", {})
        evals = (summary or {}).get("evaluations") or []
        acc = evals[-1].get("accuracy") if evals else None
        ok = (rc == 0 and train.get("step") == shape.ft_steps and isinstance(acc, float)
              and 0.0 <= acc <= 1.0)
        loss = (train.get("final") or {}).get("loss")
        self.add(f"{config}/finetune", PASS if ok else FAIL,
                 f"RTE {train.get('step')}/{shape.ft_steps} steps, loss "
                 + (f"{loss:.4f}" if isinstance(loss, float) else f"{loss}")
                 + f", dev accuracy {acc} on {shape.ft_max_eval} examples"
                 + ("" if ok else f"; exit {rc}: {reason(stem + '.log')}"), t0)
        if not ok:
            self.add(f"{config}/export", SKIP, "finetune failed")
            return
        t0 = time.time()
        stem = os.path.join(cdir, "export")
        rc = self.run([self.py, os.path.join(HERE, "tpu_smoke.py"), f"--probe_export={export_dir}"],
                      stem, timeout=min(self.a.stage_timeout, 900))
        out = self.read(stem + ".out")
        m = re.search(r"^EXPORT (.*)$", out, re.M)
        got = json.loads(m.group(1)) if m else {}
        ok = rc == 0 and got.get("ok") is True
        self.add(f"{config}/export", PASS if ok else FAIL,
                 (f"SavedModel reloaded: labels {got.get('labels')}" if ok else
                  f"exit {rc}: {got.get('error') or reason(stem + '.log')}"), t0)

    # -------------------------------------------------------------------------------- all
    def vocab(self) -> Tuple[str, str]:
        bert = os.path.join(shared_data_dir(), "vocab", "bert-base-uncased-vocab.txt")
        if self.a.strategy == "tpu" and os.path.exists(bert):
            return bert, "BERT uncased (30522)"
        return os.path.join(REPO, "data", "demo_vocab.txt"), "demo vocab"

    def rte(self) -> Tuple[str, str]:
        real = os.path.join(shared_data_dir(), "glue", "RTE")
        if os.path.exists(os.path.join(real, "train.tsv")) and \
                os.path.exists(os.path.join(real, "dev.tsv")):
            return real, "GLUE RTE (shared data)"
        return write_rte(os.path.join(self.out, "rte_generated")), "generated RTE-format pairs"

    def all(self, install: Stage) -> int:
        started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self.stages.append(install)
        print(f"tpu_smoke: {install.name} {install.status}"
              + (f" - {install.detail}" if install.detail else ""), flush=True)
        configs = [c for c in self.a.configs.split(",") if c]
        vocab, vocab_note = self.vocab()
        rte_dir, rte_note = self.rte()
        print(f"tpu_smoke: strategy {self.a.strategy}; configs {configs}; vocab {vocab_note}; "
              f"RTE {rte_note}; outputs in {self.out}", flush=True)
        if install.status == FAIL:
            for c in configs:
                self.add(f"{c}", SKIP, "install failed")
        elif self.devices():
            for c in configs:
                shape = shape_for(self.a.strategy, c)
                os.makedirs(os.path.join(self.out, c), exist_ok=True)
                init_dir = self.pretrain(c, shape, vocab)
                if init_dir is None:
                    self.add(f"{c}/finetune", SKIP, "pretraining failed")
                    continue
                self.finetune(c, shape, init_dir, vocab, rte_dir)
        print()
        print(speed_table(self.figures, self.a.strategy))
        print(format_verdict(self.stages), flush=True)
        verdict = overall(self.stages)
        summary = {
            "verdict": verdict, "strategy": self.a.strategy, "configs": configs,
            "started": started,
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": git_commit(), "vocab": vocab, "rte_data": rte_dir, "device": self.device,
            "stages": [dataclasses.asdict(s) for s in self.stages], "speed": self.figures}
        path = os.path.join(self.out, "tpu_smoke.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1, default=str)
            f.write("\n")
        print(f"tpu_smoke: summary {path}")
        return 0 if verdict == PASS else 1


def speed_table(figures: Dict[str, dict], strategy: str) -> str:
    rows = ["| config | seq x batch | steps timed | step ms | tokens/s | train GFLOP/step | "
            "achieved TFLOP/s | peak TFLOP/s | MFU |", "|---|---|---|---|---|---|---|---|---|"]
    for c, f in figures.items():
        t = f["step_time_s"]
        rows.append(
            f"| {c} | {f['seq_len']}x{f['batch_size']} | {f['steps_timed']} | "
            + (f"{t * 1e3:.1f} | {f['tokens_per_sec']:.0f} | " if t else "n/a | n/a | ")
            + f"{f['train_flops_per_step'] / 1e9:.2f} | "
            + (f"{f['achieved_tflops']:.3f} | " if t else "n/a | ")
            + (f"{f['peak_tflops']:g} | " if f["peak_tflops"] else "n/a | ")
            + (f"{100 * f['mfu']:.1f}% |" if f["mfu"] is not None else
               f"n/a{' (CPU)' if strategy != 'tpu' else ''} |"))
    return "\n".join(rows)


def json_summary(text: str) -> Optional[dict]:
    """finetune.py's JSON summary (the indented object it prints last on stdout)."""
    start = text.find("\n{")
    start = 0 if text.startswith("{") else (start + 1 if start >= 0 else -1)
    if start < 0:
        return None
    try:
        return json.JSONDecoder().raw_decode(text[start:])[0]
    except ValueError:
        return None


def git_commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=30)
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def gce_accelerator_type() -> Optional[str]:
    """The TPU VM's accelerator type from the GCE metadata server (3 s timeout), else None."""
    import urllib.request
    req = urllib.request.Request(
        "http://metadata.google.internal/computeMetadata/v1/instance/attributes/accelerator-type",
        headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(req, timeout=3) as r:
            return r.read().decode().strip() or None
    except Exception:  # noqa: BLE001 - not on GCE
        return None


# ------------------------------------------------------------------ probes (subprocesses)
def probe_devices(strategy: str, tpu: str) -> int:
    """Print 'DEVICES {json}': the strategy's kind and replicas, TF version, TPU device kind."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from funnel_tf.engine import strategy as strat
    s = strat.make_strategy(strategy, tpu=tpu if strategy == "tpu" else None)
    info = strat.strategy_info(s)
    kind = None
    for dev in tf.config.list_physical_devices("TPU"):
        try:
            details = tf.config.experimental.get_device_details(dev)
            kind = details.get("device_name") or details.get("device_kind") or kind
        except Exception:  # noqa: BLE001 - not every build reports TPU details
            pass
    out = {"kind": info.kind, "num_replicas": info.num_replicas, "num_workers": info.num_workers,
           "describe": info.describe(), "tf_version": tf.__version__, "device_kind": kind,
           "logical_devices": [d.name for d in tf.config.list_logical_devices()
                               if d.device_type in ("TPU", "CPU", "GPU")][:16]}
    print("DEVICES " + json.dumps(out), flush=True)
    return 0


def probe_export(export_dir: str) -> int:
    """Print 'EXPORT {json}': reload the SavedModel in this fresh process and classify 2 pairs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = {"ok": False}
    try:
        import numpy as np

        from funnel_tf import serving
        loaded = serving.load(export_dir)
        import tensorflow as tf
        fn = loaded.signatures["serving_default"]
        out = fn(text_a=tf.constant(["the river was warm before the train came.",
                                     "the harbor was open after the long winter."]),
                 text_b=tf.constant(["the river was warm.", "the harbor was closed."]))
        probs = out["probabilities"].numpy()
        ok = probs.shape == (2, 2) and bool(np.all(np.isfinite(probs))) and bool(
            np.allclose(probs.sum(-1), 1.0, atol=1e-3))
        result = {"ok": ok, "labels": [x.decode() for x in out["label"].numpy().tolist()],
                  "probabilities": probs.round(4).tolist()}
    except Exception as e:  # noqa: BLE001 - reported as the stage's failure
        result["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
    print("EXPORT " + json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


# ------------------------------------------------------------------------------------ main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strategy", choices=("tpu", "default"), default="tpu")
    p.add_argument("--configs", default="tiny,small", help="comma-separated configs/ names")
    p.add_argument("--out", default=None, help="output folder (default bench/results/"
                   "tpu_smoke_<UTC time>)")
    p.add_argument("--tpu", default="local", help="pretrain.py/finetune.py --tpu (TPU VM: local)")
    p.add_argument("--accelerator_type", default=None, help="e.g. v4-8, v5litepod-8 (default: "
                   "$TPU_ACCELERATOR_TYPE, else the GCE metadata, else the TPU's device kind)")
    p.add_argument("--stage_timeout", type=float, default=1800.0, help="seconds per subprocess")
    p.add_argument("--python", default=None, help="interpreter for the stages (default: this one)")
    p.add_argument("--install_status", default="SKIP", choices=(PASS, FAIL, SKIP))
    p.add_argument("--install_detail", default="not run by tpu_smoke.sh")
    p.add_argument("--probe_devices", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--probe_export", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.probe_devices:
        return probe_devices(a.strategy, a.tpu)
    if a.probe_export:
        return probe_export(a.probe_export)
    a.out = a.out or os.path.join(HERE, "results", "tpu_smoke_" + datetime.datetime.now(
        datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    used = [c for c in a.configs.split(",") if c and os.path.isdir(os.path.join(a.out, c))
            and os.listdir(os.path.join(a.out, c))]
    if used:  # a model_dir there would be resumed, not trained afresh: never reuse one
        print(f"tpu_smoke: {a.out} already holds results of {used}; use a new --out",
              file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    return Runner(a).all(Stage("install", a.install_status, a.install_detail))


if __name__ == "__main__":
    sys.exit(main())
