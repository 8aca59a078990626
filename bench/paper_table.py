"""The paper's main comparison at bench scale: a 3-block funnel against the paper's baseline (one
block, no pooling, same relative attention) at matched training FLOPs per token, both pretrained
with MLM on the same tokens of the shared English corpus, then finetuned on five GLUE tasks.

    python bench/paper_table.py --work_dir=/tmp/paper_table          # the whole run (~3 h, 2 cores)
    python bench/paper_table.py --work_dir=/tmp/paper_table --stages=pretrain   # stage 1 only
    python bench/paper_table.py --render_only bench/results/paper_table_<date>.json

Stages: (1) pretrain `funnel` and `baseline` with `pretrain.py` (word-span masking; a killed run
resumes from its newest checkpoint); (2) finetune `funnel`, `baseline` and `funnel_scratch` (the
funnel from the original release's random initialisation, no pretraining) on each task: seed 0 at
every learning rate of --lrs, the best on the dev set is kept, then the other seeds at that rate.
Every finished run is appended to bench/results/paper_table_<date>.json at once, so rerunning the
same command skips finished work; the README table and the loss-vs-FLOPs plot are rendered from
that file alone (`render`), so a partial run renders a partial table.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import glob
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
for _path in (REPO, HERE):  # funnel_tf, and this module for the finetuning child processes
    if _path not in sys.path:
        sys.path.insert(0, _path)

from funnel_tf.errors import UserError, one_line  # noqa: E402

SHARED = os.environ.get("FUNNEL_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
CORPUS_GLOBS = ("corpus/gutenberg/*.txt", "corpus/inaugural/*.txt", "corpus/state_union/*.txt",
                "corpus/wikitext-2-raw/wiki.test.raw")
README = os.path.join(HERE, "README.md")
SECTION_START = "<!-- paper_table:start (written by bench/paper_table.py; edit the script, not this) -->"
SECTION_END = "<!-- paper_table:end -->"
MODELS = ("funnel", "baseline", "funnel_scratch")
PRETRAINED = ("funnel", "baseline")
# Per-task recipes, scaled down from the repo's GLUE recipes (10 epochs at 1e-5..2e-5 on the full
# train sets) to ~120 steps of batch 32 each, so that 3 models x 5 tasks x 4 runs fit ~2 h on 2 cores:
# the first 2000 train examples (RTE: all 2490 for 1.5 epochs), seq 64 for the single-sentence tasks
# (their sentences are short). Dev sets are always full.
RECIPES = {
    "sst-2": dict(max_train_examples=2000, epochs=2.0, max_seq_length=64, batch_size=32),
    "cola": dict(max_train_examples=2000, epochs=2.0, max_seq_length=64, batch_size=32),
    "mrpc": dict(max_train_examples=2000, epochs=2.0, max_seq_length=128, batch_size=32),
    "sts-b": dict(max_train_examples=2000, epochs=2.0, max_seq_length=128, batch_size=32),
    "rte": dict(max_train_examples=0, epochs=1.5, max_seq_length=128, batch_size=32),
}


class BenchError(UserError):
    """Bad flags or a work_dir that belongs to a different plan."""


# ------------------------------------------------------------------------------------ the plan
@dataclasses.dataclass
class Plan:
    """Everything that defines a run; stored in <work_dir>/plan.json and checked on resume."""

    results: str                       # the results JSON (bench/results/paper_table_<date>.json)
    vocab: str
    glue_dir: str
    corpus: List[str]                  # globs of the raw corpus
    d_model: int = 256
    n_head: int = 4
    d_head: int = 64
    d_inner: int = 1024
    funnel_blocks: List[int] = dataclasses.field(default_factory=lambda: [4, 4, 4])
    decoder_layers: int = 2
    baseline_layers: int = 9
    seq_len: int = 128
    batch_size: int = 32
    pretrain_steps: int = 1000
    pretrain_lr: float = 5e-4
    warmup_steps: int = 100
    save_every: int = 100
    precision: str = "mixed_bfloat16"
    tasks: List[str] = dataclasses.field(default_factory=lambda: list(RECIPES))
    seeds: List[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    lrs: List[float] = dataclasses.field(default_factory=lambda: [1e-4, 3e-4])
    recipes: Dict[str, dict] = dataclasses.field(default_factory=lambda: dict(RECIPES))
    finetune_precision: str = "mixed_bfloat16"


def model_configs(plan: Plan) -> Dict[str, "object"]:
    """{"funnel", "baseline"} FunnelConfigs; both start from the original release's initialisation."""
    from funnel_tf.config import FunnelConfig

    common = dict(d_model=plan.d_model, n_head=plan.n_head, d_head=plan.d_head, d_inner=plan.d_inner,
                  init_scheme="original", initializer_std=None)
    funnel = FunnelConfig(block_sizes=list(plan.funnel_blocks), block_repeats=[1] * len(plan.funnel_blocks),
                          num_decoder_layers=plan.decoder_layers, **common)
    baseline = FunnelConfig(block_sizes=[plan.baseline_layers], block_repeats=[1], num_decoder_layers=0,
                            **common)
    return {"funnel": funnel, "baseline": baseline}


def flops_per_token(config, seq_len: int) -> float:
    """Training FLOPs per input token of the pretrained network (encoder + decoder, forward+backward)."""
    from funnel_tf import flops

    return flops.flops_per_token(config, seq_len, with_decoder=True, train=True)


def check_plan(plan: Plan, tolerance: float = 0.05) -> Dict[str, float]:
    """FLOPs per token of both models; BenchError unless they match within `tolerance`."""
    configs = model_configs(plan)
    for c in configs.values():
        c.check_seq_len(plan.seq_len)
    per = {name: flops_per_token(c, plan.seq_len) for name, c in configs.items()}
    ratio = per["funnel"] / per["baseline"]
    if abs(ratio - 1) > tolerance:
        raise BenchError(f"training FLOPs per token differ by {100 * (ratio - 1):+.1f}% (funnel "
                         f"{per['funnel'] / 1e6:.2f}M, baseline {per['baseline'] / 1e6:.2f}M); "
                         f"change --funnel_blocks or --baseline_layers to match within 5%")
    unknown = [t for t in plan.tasks if t not in plan.recipes]
    if unknown:
        raise BenchError(f"no recipe for task(s) {unknown}; known: {sorted(plan.recipes)}")
    from funnel_tf.tasks.defaults import Hparams

    for task in plan.tasks:  # a bad recipe fails now, not an hour into the run
        recipe = {k: v for k, v in plan.recipes[task].items() if k != "max_train_examples"}
        try:
            Hparams().replace(**recipe, learning_rate=plan.lrs[0])
        except (TypeError, ValueError) as e:
            raise BenchError(f"recipe of {task}: {e}") from None
        if not isinstance(plan.recipes[task].get("max_train_examples", 0), int):
            raise BenchError(f"recipe of {task}: max_train_examples must be an integer")
    return per


# ------------------------------------------------------------------------------------ results file
def load_results(path: str) -> dict:
    if not os.path.exists(path):
        return {"runs": []}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def save_results(path: str, results: dict) -> None:
    """Atomic: a kill during the write leaves the previous file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def find_run(results: dict, **key) -> Optional[dict]:
    for run in results["runs"]:
        if all(run.get(k) == v for k, v in key.items()):
            return run
    return None


def add_run(path: str, record: dict) -> None:
    results = load_results(path)
    results["runs"].append(record)
    save_results(path, results)


# ------------------------------------------------------------------------------------ stage 1
def prepare_corpus(plan: Plan, work_dir: str) -> List[str]:
    """A UTF-8 copy of the corpus in <work_dir>/corpus with long lines split at sentence ends, so
    the 128-token examples do not cut off most of a WikiText paragraph (one file = one document)."""
    out_dir = os.path.join(work_dir, "corpus")
    done = os.path.join(out_dir, "DONE")
    files = sorted(f for g in plan.corpus for f in glob.glob(g))
    if not files:
        raise BenchError(f"no corpus files match {plan.corpus}")
    if not os.path.exists(done):
        os.makedirs(out_dir, exist_ok=True)
        for i, path in enumerate(files):
            with open(path, "rb") as f:
                raw = f.read()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            lines = []
            for line in text.replace("\r\n", "\n").split("\n"):
                if len(line) > 300:
                    lines.extend(s for s in re.split(r"(?<=[.!?])\s+", line) if s.strip())
                else:
                    lines.append(line)
            with open(os.path.join(out_dir, f"{i:03d}.txt"), "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
        with open(done, "w") as f:
            f.write(f"{len(files)} files\n")
    return [os.path.join(out_dir, "*.txt")]


def pretrain_command(plan: Plan, name: str, config_path: str, model_dir: str,
                     train_data: List[str]) -> List[str]:
    return [sys.executable, os.path.join(REPO, "pretrain.py"), f"--config={config_path}",
            f"--train_data={','.join(train_data)}", f"--vocab={plan.vocab}", f"--model_dir={model_dir}",
            "--objective=mlm", "--masking=word_span", f"--seq_len={plan.seq_len}",
            f"--batch_size={plan.batch_size}", f"--train_steps={plan.pretrain_steps}",
            f"--learning_rate={plan.pretrain_lr}", f"--warmup_steps={plan.warmup_steps}",
            f"--save_every={plan.save_every}", f"--log_every={min(plan.save_every, 20)}",
            f"--steps_per_loop={min(plan.save_every, 20)}", f"--precision={plan.precision}",
            "--seed=0"]


def run_subprocess(cmd: List[str], log_path: str) -> int:
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        return subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


def read_curve(model_dir: str) -> List[dict]:
    """metrics.jsonl of a pretraining run as [{step, loss, elapsed_sec}], last value per step."""
    by_step = {}
    path = os.path.join(model_dir, "metrics.jsonl")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
                if "loss" in row and "step" in row:
                    by_step[int(row["step"])] = {"step": int(row["step"]), "loss": float(row["loss"]),
                                                 "elapsed_sec": row.get("elapsed_sec")}
    return [by_step[s] for s in sorted(by_step)]


def pretrain(plan: Plan, work_dir: str, name: str, runner: Callable[[List[str], str], int]) -> dict:
    """Pretrain one model (resuming its model_dir) and record it; skipped when recorded."""
    done = find_run(load_results(plan.results), kind="pretrain", model=name)
    if done:
        print(f"[skip] pretraining {name}: recorded (final MLM loss {done['final_mlm_loss']:.3f})")
        return done
    config_path = os.path.join(work_dir, "configs", f"{name}.json")
    config = write_configs(plan, work_dir)[name]
    model_dir = os.path.join(work_dir, "pretrain", name)
    train_data = prepare_corpus(plan, work_dir)
    attempts_path = os.path.join(work_dir, "pretrain", f"{name}.attempts.json")
    attempts = _read_attempts(attempts_path, model_dir)
    print(f"[run] pretraining {name}: {plan.pretrain_steps} steps x {plan.batch_size} x "
          f"{plan.seq_len} (log {model_dir}.log)", flush=True)
    os.makedirs(os.path.dirname(model_dir), exist_ok=True)
    attempts.append({"start": time.time()})
    _write_json(attempts_path, attempts)
    rc = runner(pretrain_command(plan, name, config_path, model_dir, train_data), model_dir + ".log")
    attempts[-1].update(wall_s=time.time() - attempts[-1]["start"], rc=rc)
    _write_json(attempts_path, attempts)
    if rc != 0:
        raise BenchError(f"pretraining {name} failed (exit {rc}); see {model_dir}.log, then rerun "
                         f"to resume")
    curve = read_curve(model_dir)
    if not curve or curve[-1]["step"] != plan.pretrain_steps:
        raise BenchError(f"pretraining {name}: {model_dir}/metrics.jsonl does not reach step "
                         f"{plan.pretrain_steps}; rerun to resume")
    per_token = flops_per_token(config, plan.seq_len)
    tokens_per_step = plan.batch_size * plan.seq_len
    record = {
        "kind": "pretrain", "model": name, "config": config.to_dict(),
        "params": _param_count(config), "train_flops_per_token": per_token,
        "steps": plan.pretrain_steps, "tokens": plan.pretrain_steps * tokens_per_step,
        "flops": per_token * plan.pretrain_steps * tokens_per_step,
        "final_mlm_loss": curve[-1]["loss"], "first_mlm_loss": curve[0]["loss"],
        "curve": [[c["step"], c["loss"]] for c in curve],
        "wall_s": sum(a["wall_s"] for a in attempts), "attempts": len(attempts),
        "model_dir": model_dir,
    }
    add_run(plan.results, record)
    return record


def write_configs(plan: Plan, work_dir: str) -> Dict[str, "object"]:
    """<work_dir>/configs/{funnel,baseline}.json with the vocab's size; returns the configs."""
    out = {}
    os.makedirs(os.path.join(work_dir, "configs"), exist_ok=True)
    for name, config in model_configs(plan).items():
        out[name] = config.replace(vocab_size=_vocab_size(plan.vocab))
        out[name].save(os.path.join(work_dir, "configs", f"{name}.json"))
    return out


def _read_attempts(path: str, model_dir: str) -> List[dict]:
    """Earlier attempts of one pretraining; one killed with this script (no wall_s) counts until
    its log was last written."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        attempts = json.load(f)
    log = model_dir + ".log"
    for a in attempts:
        if "wall_s" not in a:
            end = os.path.getmtime(log) if os.path.exists(log) else a["start"]
            a.update(wall_s=max(0.0, end - a["start"]), rc="killed")
    return attempts


def _write_json(path: str, value) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f)
    os.replace(tmp, path)


def _vocab_size(vocab: str) -> int:
    with open(vocab, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def _param_count(config) -> int:
    d, v, n = config.d_model, config.vocab_size, config.n_head * config.d_head
    # q/k/v/o kernels, k/v/o biases, r_kernel, r_w/r_r/r_s biases, seg_embed, FFN, 2 LayerNorms
    per_layer = 5 * d * n + 2 * n + d + 3 * n + 2 * n + 2 * d * config.d_inner + config.d_inner + d + 4 * d
    layers = sum(config.block_sizes) + config.num_decoder_layers
    return v * d + 2 * d + layers * per_layer + v  # embeddings + LN, layers, MLM bias


# ------------------------------------------------------------------------------------ stage 2
def finetune_args(plan: Plan, work_dir: str, model: str, task: str, lr: float, seed: int):
    from funnel_tf.finetuning.args import FinetuneArgs

    recipe = dict(plan.recipes[task])
    max_train = int(recipe.pop("max_train_examples", 0))
    model_dir = os.path.join(work_dir, "finetune", model, task, f"lr{lr:g}_seed{seed}")
    if model == "funnel_scratch":
        init, config = None, os.path.join(work_dir, "configs", "funnel.json")
    else:
        init, config = os.path.join(work_dir, "pretrain", model), None
    return FinetuneArgs(
        task=task, model_dir=model_dir, data_dir=plan.glue_dir, init_checkpoint=init, config=config,
        vocab_file=plan.vocab, precision=plan.finetune_precision,
        hparams=dict(recipe, learning_rate=lr, eval_batch_size=128),
        run=dict(seed=seed, eval_every=-1, max_train_examples=max_train, steps_per_loop=50,
                 log_every=50))


def run_finetune(args) -> dict:
    """One finetuning run in this process; -> {"metrics", "metric", "value", "steps"}."""
    import keras

    from funnel_tf.finetuning.run import run_finetuning

    keras.backend.clear_session()
    summary = run_finetuning(args)
    final = summary["evaluations"][-1] if summary.get("evaluations") else {}
    best = summary.get("best") or {}
    metrics = final.get("metrics", final)
    return {"metric": best.get("metric"), "value": best.get("value"),
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
            "steps": (summary.get("train") or {}).get("step")}


def run_finetune_isolated(args) -> dict:
    """`run_finetune` in a fresh child process: 60 runs in one process would keep growing its
    memory (each run builds and traces new models), and a crash takes down only that run."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(run_finetune, (args,))


def finetune_one(plan: Plan, work_dir: str, model: str, task: str, lr: float, seed: int,
                 finetuner: Callable) -> dict:
    key = dict(kind="finetune", model=model, task=task, lr=lr, seed=seed)
    done = find_run(load_results(plan.results), **key)
    if done:
        print(f"[skip] {model} {task} lr {lr:g} seed {seed}: {done['metric']} {done['value']:.4f}")
        return done
    args = finetune_args(plan, work_dir, model, task, lr, seed)
    shutil.rmtree(args.model_dir, ignore_errors=True)  # an interrupted attempt starts over
    print(f"[run] {model} {task} lr {lr:g} seed {seed}", flush=True)
    start = time.time()
    out = finetuner(args)
    pre = find_run(load_results(plan.results), kind="pretrain", model=model) or {}
    record = dict(key, metric=out["metric"], value=out["value"], metrics=out["metrics"],
                  steps=out["steps"], wall_s=time.time() - start,
                  recipe=plan.recipes[task], pretrain_flops=pre.get("flops", 0.0),
                  pretrain_tokens=pre.get("tokens", 0), final_mlm_loss=pre.get("final_mlm_loss"))
    add_run(plan.results, record)
    shutil.rmtree(args.model_dir, ignore_errors=True)  # checkpoints are not kept (disk)
    return record


def chosen_lr(results: dict, model: str, task: str, lrs: List[float]) -> Optional[float]:
    """The rate whose seed-0 dev score is best (ties: the smaller), once every rate has run."""
    scores = []
    for lr in lrs:
        run = find_run(results, kind="finetune", model=model, task=task, lr=lr, seed=0)
        if run is None:
            return None
        scores.append((run["value"], -lr))
    return -max(scores)[1]


def finetune_all(plan: Plan, work_dir: str, finetuner: Callable, readme: str) -> None:
    seed0, others = plan.seeds[0], plan.seeds[1:]
    for task in plan.tasks:
        for model in MODELS:
            if model in PRETRAINED and not find_run(load_results(plan.results), kind="pretrain",
                                                    model=model):
                print(f"[wait] {model} {task}: {model} is not pretrained yet")
                continue
            for lr in plan.lrs:
                finetune_one(plan, work_dir, model, task, lr, seed0, finetuner)
            lr = chosen_lr(load_results(plan.results), model, task, plan.lrs)
            for seed in others:
                finetune_one(plan, work_dir, model, task, lr, seed, finetuner)
            render(plan.results, readme)


# ------------------------------------------------------------------------------------ rendering
def summarize(results: dict) -> dict:
    """{model: {task: {"median", "min", "max", "n", "lr"}}, "pretrain": {model: record}} for the runs
    at each (model, task)'s chosen rate (seed 0 decides among rates)."""
    pre = {r["model"]: r for r in results["runs"] if r["kind"] == "pretrain"}
    fine = [r for r in results["runs"] if r["kind"] == "finetune"]
    table: Dict[str, Dict[str, dict]] = {}
    for model, task in sorted({(r["model"], r["task"]) for r in fine}):
        runs = [r for r in fine if r["model"] == model and r["task"] == task]
        first_seed = min(r["seed"] for r in runs)
        best = max((r for r in runs if r["seed"] == first_seed), key=lambda r: (r["value"], -r["lr"]))
        values = [r["value"] for r in fine if r["model"] == model and r["task"] == task
                  and r["lr"] == best["lr"]]
        table.setdefault(model, {})[task] = {
            "median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values), "lr": best["lr"], "metric": best["metric"]}
    return {"table": table, "pretrain": pre}


def _fmt_cell(cell: Optional[dict]) -> str:
    if not cell:
        return "–"
    s = f"{100 * cell['median']:.1f}"
    if cell["n"] > 1:
        s += f" ({100 * cell['min']:.1f}–{100 * cell['max']:.1f})"
    return s + ("" if cell["n"] >= 3 else f" [n={cell['n']}]")


def render_markdown(results: dict, results_link: str, plot_link: Optional[str]) -> str:
    """The README section: the table, what was run, and links (relative to the README)."""
    s = summarize(results)
    table, pre = s["table"], s["pretrain"]
    tasks = []
    for r in results["runs"]:
        if r["kind"] == "finetune" and r["task"] not in tasks:
            tasks.append(r["task"])
    metric_of = {}
    for model in table.values():
        for task, cell in model.items():
            metric_of[task] = cell["metric"]
    lines = [f"### Results (`{results_link}`)", ""]
    meta = results.get("plan", {})
    if meta:
        lines.append(
            f"MLM pretraining (word-span masking) on the shared corpus, {meta.get('pretrain_steps')} "
            f"steps x {meta.get('batch_size')} x {meta.get('seq_len')} tokens, d_model "
            f"{meta.get('d_model')}; funnel B{'-'.join(map(str, meta.get('funnel_blocks', [])))} + "
            f"{meta.get('decoder_layers')}-layer decoder vs the baseline L{meta.get('baseline_layers')} "
            f"(one block, no pooling, same relative attention). GLUE dev, x100: median of "
            f"{len(meta.get('seeds', []))} seeds (min–max) at the learning rate of "
            f"{meta.get('lrs')} that won on seed 0. `funnel_scratch`: the funnel finetuned from "
            f"random initialisation.")
        lines.append("")
    header = ["model"] + [f"{t} ({metric_of.get(t, '')})" for t in tasks] + [
        "average", "pretrain FLOPs", "pretrain wall", "final MLM loss"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in MODELS:
        if model not in table and model not in pre:
            continue
        cells = table.get(model, {})
        row = [model] + [_fmt_cell(cells.get(t)) for t in tasks]
        complete = tasks and all(t in cells for t in tasks)
        row.append(f"{100 * statistics.mean(cells[t]['median'] for t in tasks):.1f}" if complete else "–")
        p = pre.get(model)
        if p:
            row += [f"{p['flops']:.3g}", f"{p['wall_s'] / 60:.0f} min", f"{p['final_mlm_loss']:.3f}"]
        else:
            row += ["0 (no pretraining)" if model == "funnel_scratch" else "–", "–", "–"]
        lines.append("| " + " | ".join(row) + " |")
    if pre:
        lines.append("")
        lines.append("Pretraining: " + "; ".join(
            f"{m} {p['params'] / 1e6:.1f}M params, {p['train_flops_per_token'] / 1e6:.1f}M train "
            f"FLOPs/token, {p['tokens'] / 1e6:.1f}M tokens, {p['wall_s'] / p['steps']:.2f} s/step"
            for m, p in sorted(pre.items())) + ".")
    chosen = [f"{m} {t} {c['lr']:g}" for m in MODELS for t, c in table.get(m, {}).items()]
    if chosen:
        lines += ["", "Learning rates kept (best seed-0 dev score): " + ", ".join(chosen) + "."]
    if results.get("code_commits"):
        lines += ["", "Code: " + ", ".join(f"`{c[:12]}{'+dirty' if c.endswith('+dirty') else ''}`"
                                          for c in results["code_commits"]) + "."]
    if plot_link:
        lines += ["", f"![MLM loss against training FLOPs]({plot_link})"]
    lines.append("")
    return "\n".join(lines)


def render_plot(results: dict, path: str) -> bool:
    """MLM loss against training FLOPs, one line per pretrained model; False without matplotlib."""
    pre = [r for r in results["runs"] if r["kind"] == "pretrain"]
    if not pre:
        return False
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install matplotlib): no plot")
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in sorted(pre, key=lambda r: r["model"]):
        per_step = r["flops"] / r["steps"]
        steps, losses = zip(*r["curve"])
        ax.plot([s * per_step for s in steps], losses, label=r["model"])
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("MLM loss")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def replace_section(text: str, section: str) -> str:
    """`text` with the paper_table section replaced (appended when absent); others untouched."""
    block = f"{SECTION_START}\n{section.rstrip()}\n{SECTION_END}"
    if SECTION_START in text and SECTION_END in text:
        head, rest = text.split(SECTION_START, 1)
        tail = rest.split(SECTION_END, 1)[1]
        return head + block + tail
    return text.rstrip("\n") + "\n\n" + block + "\n"


def render(results_path: str, readme: str) -> str:
    """Write the plot next to the results file and the table into `readme`; returns the table."""
    results = load_results(results_path)
    stem = os.path.splitext(os.path.basename(results_path))[0]
    plot_path = os.path.join(os.path.dirname(os.path.abspath(results_path)), stem + "_mlm_loss.png")
    plotted = render_plot(results, plot_path)
    here = os.path.dirname(os.path.abspath(readme))
    section = render_markdown(results, os.path.relpath(os.path.abspath(results_path), here),
                              os.path.relpath(plot_path, here) if plotted else None)
    text = open(readme, encoding="utf-8").read() if os.path.exists(readme) else "# Benchmarks\n"
    tmp = readme + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(replace_section(text, section))
    os.replace(tmp, readme)
    return section


# ------------------------------------------------------------------------------------ entry point
def make_plan(args) -> Plan:
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    results = args.results or os.path.join(HERE, "results", f"paper_table_{date}.json")
    plan = Plan(results=os.path.abspath(results), vocab=os.path.abspath(args.vocab),
                glue_dir=os.path.abspath(args.glue_dir), corpus=list(args.corpus))
    for field in ("d_model", "n_head", "d_head", "d_inner", "decoder_layers", "baseline_layers",
                  "seq_len", "batch_size", "pretrain_steps", "pretrain_lr", "warmup_steps",
                  "save_every", "precision", "finetune_precision"):
        value = getattr(args, field)
        if value is not None:
            setattr(plan, field, value)
    if args.funnel_blocks is not None:
        plan.funnel_blocks = _parse_list("--funnel_blocks", args.funnel_blocks, int)
    if args.tasks is not None:
        plan.tasks = _parse_list("--tasks", args.tasks, str)
    if args.seeds is not None:
        plan.seeds = _parse_list("--seeds", args.seeds, int)
    if args.lrs is not None:
        plan.lrs = _parse_list("--lrs", args.lrs, float)
    if args.recipes is not None:
        try:
            with open(args.recipes, encoding="utf-8") as f:
                plan.recipes = json.load(f)
        except (OSError, ValueError) as e:
            raise BenchError(f"--recipes {args.recipes}: {e}") from None
        if not isinstance(plan.recipes, dict) or not all(isinstance(r, dict) for r in plan.recipes.values()):
            raise BenchError(f"--recipes {args.recipes}: expected {{task: {{hparam: value}}}}")
    for name in ("pretrain_steps", "batch_size", "save_every", "d_model", "n_head", "d_head",
                 "d_inner", "baseline_layers", "seq_len"):
        if getattr(plan, name) < 1:
            raise BenchError(f"--{name}={getattr(plan, name)}: must be >= 1")
    if plan.decoder_layers < 0 or plan.warmup_steps < 0 or not plan.pretrain_lr > 0:
        raise BenchError("--decoder_layers and --warmup_steps must be >= 0, --pretrain_lr > 0")
    if not plan.lrs or any(not lr > 0 for lr in plan.lrs) or not plan.seeds:
        raise BenchError(f"--lrs {plan.lrs} and --seeds {plan.seeds}: need positive rates and a seed")
    return plan


def _parse_list(flag: str, text: str, kind) -> list:
    try:
        values = [kind(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BenchError(f"{flag}={text!r}: expected a comma-separated list of {kind.__name__}") from None
    if not values:
        raise BenchError(f"{flag}={text!r}: empty")
    return values


def resume_plan(work_dir: str, fresh: Plan, results_given: bool) -> Plan:
    """The work_dir's stored plan; a rerun with different settings is refused (its results would
    mix two experiments). Without --results the stored results path (dated at the start) is kept."""
    path = os.path.join(work_dir, "plan.json")
    if not os.path.exists(path):
        os.makedirs(work_dir, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(dataclasses.asdict(fresh), f, indent=1, sort_keys=True)
        return fresh
    try:
        with open(path, encoding="utf-8") as f:
            stored = Plan(**json.load(f))
    except (ValueError, TypeError) as e:
        raise BenchError(f"{path}: unreadable plan ({e}); use a new --work_dir") from None
    mine = dataclasses.asdict(fresh)
    if not results_given:
        mine["results"] = stored.results
    diff = sorted(k for k, v in mine.items() if dataclasses.asdict(stored)[k] != v)
    if diff:
        raise BenchError(f"{path} holds a different plan (fields {diff}); rerun with the same "
                         f"flags to resume, or use a new --work_dir")
    return stored


def _git_commit() -> Optional[str]:
    """The checkout's commit (with "+dirty" when files differ), recorded with the results. The
    files this script itself writes (bench/README.md, bench/results/) do not count: a resumed run
    would otherwise call its own rendered table a local change."""
    try:
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no",
                                "--", ".", ":!bench/README.md", ":!bench/results"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="paper_table", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work_dir", help="checkpoints, logs and plan.json (resume: same dir)")
    p.add_argument("--results", help="results JSON (default bench/results/paper_table_<date>.json)")
    p.add_argument("--render_only", metavar="RESULTS_JSON", help="only re-render README + plot")
    p.add_argument("--readme", default=README, help="README whose paper_table section is written")
    p.add_argument("--stages", default="pretrain,finetune", help="pretrain, finetune or both")
    p.add_argument("--vocab", default=os.path.join(SHARED, "vocab", "bert-base-uncased-vocab.txt"))
    p.add_argument("--glue_dir", default=os.path.join(SHARED, "glue"))
    p.add_argument("--corpus", nargs="+", default=[os.path.join(SHARED, g) for g in CORPUS_GLOBS])
    for name, kind in (("d_model", int), ("n_head", int), ("d_head", int), ("d_inner", int),
                       ("decoder_layers", int), ("baseline_layers", int), ("seq_len", int),
                       ("batch_size", int), ("pretrain_steps", int), ("pretrain_lr", float),
                       ("warmup_steps", int), ("save_every", int)):
        p.add_argument(f"--{name}", type=kind)
    p.add_argument("--precision", choices=["float32", "mixed_bfloat16"])
    p.add_argument("--finetune_precision", choices=["float32", "mixed_bfloat16"])
    p.add_argument("--funnel_blocks", help="e.g. 4,4,4")
    p.add_argument("--tasks", help=f"comma-separated (default {','.join(RECIPES)})")
    p.add_argument("--seeds", help="comma-separated (default 0,1,2; the first picks the rate)")
    p.add_argument("--lrs", help="comma-separated learning rates (default 1e-4,3e-4)")
    p.add_argument("--recipes", help="JSON file {task: {max_train_examples, epochs, max_seq_length, "
                                     "batch_size, ...}} replacing the built-in recipes")
    return p.parse_args(argv)


def run(argv=None, pretrain_runner: Callable = run_subprocess,
        finetuner: Callable = run_finetune_isolated) -> int:
    args = parse_args(argv)
    if args.render_only:
        if not os.path.exists(args.render_only):
            raise BenchError(f"--render_only {args.render_only}: no such file")
        print(render(args.render_only, args.readme))
        return 0
    if not args.work_dir:
        raise BenchError("--work_dir is required (where checkpoints and plan.json go)")
    stages = set(args.stages.split(","))
    if not stages or stages - {"pretrain", "finetune"}:
        raise BenchError(f"--stages {args.stages!r}: use pretrain, finetune or pretrain,finetune")
    for path, what in ((args.vocab, "--vocab"), (args.glue_dir, "--glue_dir")):
        if not os.path.exists(path):
            raise BenchError(f"{what} {path} does not exist")
    work_dir = os.path.abspath(args.work_dir)
    fresh = make_plan(args)
    per = check_plan(fresh)  # before anything is written
    plan = resume_plan(work_dir, fresh, results_given=bool(args.results))
    results = load_results(plan.results)
    results["plan"] = dataclasses.asdict(plan)
    results["flops_per_token"] = per
    results.setdefault("code_commits", [])
    commit = _git_commit()
    if commit and commit not in results["code_commits"]:
        results["code_commits"].append(commit)  # more than one: a resumed run spans commits
    save_results(plan.results, results)
    print(f"training FLOPs/token: funnel {per['funnel'] / 1e6:.2f}M, baseline "
          f"{per['baseline'] / 1e6:.2f}M ({100 * (per['funnel'] / per['baseline'] - 1):+.1f}%); "
          f"results {plan.results}")
    if "pretrain" in stages:
        for name in PRETRAINED:
            pretrain(plan, work_dir, name, pretrain_runner)
        render(plan.results, args.readme)
    if "finetune" in stages:
        write_configs(plan, work_dir)  # funnel_scratch builds from configs/funnel.json
        finetune_all(plan, work_dir, finetuner, args.readme)
    print(render(plan.results, args.readme))
    return 0


def main(argv=None) -> int:
    try:
        return run(argv)
    except UserError as e:
        print(f"paper_table: error: {one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
