"""A pretraining run (MLM or ELECTRA) as one call: `run_pretraining(PretrainArgs)`.

`pretrain.py` maps its flags onto `PretrainArgs`; `demo.py` and tests call `run_pretraining`
directly. Order matters for "bad input loses nothing": flags, output folder, config, vocab,
every input file, the masking settings, a resumed model_dir's config and settings (run.json) and
the init checkpoint are all checked before the first byte is written to model_dir; the strategy
is connected before the first TensorFlow op. Then the run takes the model_dir lock (chief only)
for its whole life, turns raw text into records (cached under `<model_dir>/data`), writes
`config.json` / `run.json` / `vocab.txt` / `pretrain_args.json` and trains with the shared
engine (`loop.Trainer`).

Files under `model_dir`: checkpoints/, train/ (TensorBoard), metrics.jsonl (the engine's),
config.json (+ generator_config.json for ELECTRA), vocab.txt (the run's vocab), run.json (what
defines the run, compared on resume: training/run_record.py), pretrain_args.json,
pretrain_flags.txt (when run from pretrain.py), data/seq<L>/ (records made from raw text).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from typing import Dict, List, Optional, Tuple

from funnel_tf.pretraining.args import MASKING, OBJECTIVES, PretrainArgs

import tensorflow as tf
from absl import logging

from funnel_tf.config import ConfigError, FunnelConfig, load_config
from funnel_tf.errors import UserError
from funnel_tf.pretraining import inputs
from funnel_tf.tasks.pretraining import pretraining_task
from funnel_tf.engine import run_record
from funnel_tf import checkpoints
from funnel_tf.checkpoints import init_checkpoint, training
from funnel_tf.checkpoints.errors import CheckpointError
from funnel_tf.engine.output_paths import check_output_dir
from funnel_tf.engine.jax.checkpoints import list_checkpoints as list_jax_checkpoints
from funnel_tf.engine.choices import JIT_MODES, PRECISIONS, STRATEGIES
from funnel_tf.pretraining.defaults import (DEMO_CORPUS, DEMO_DEFAULTS, DEMO_VOCAB,
                                                     RUN_DEFAULTS, PretrainArgsError,
                                                     fill_defaults)

ARGS_FILE = "pretrain_args.json"
FLAGS_FILE = "pretrain_flags.txt"
VOCAB_FILE = "vocab.txt"
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: restart with the same model_dir to resume


@dataclasses.dataclass
class PretrainResult:
    """What a run did: where it stopped, its progress records and where its outputs are."""

    model_dir: str
    step: int
    preempted: bool
    checkpoint: Optional[str]
    history: List[dict]
    metrics: List[str]          # the objective's metric names, in display order

    @property
    def exit_code(self) -> int:
        return EXIT_PREEMPTED if self.preempted else 0


# ------------------------------------------------------------------------------ checks
def check_args(a: PretrainArgs) -> None:
    """PretrainArgsError for settings that cannot work (`a` has its defaults filled in)."""
    def bad(flag, value, need):
        raise PretrainArgsError(f"--{flag}={value}: {need}")

    if not a.demo and not a.model_dir:
        raise PretrainArgsError("--model_dir is required with --train_data")
    if a.model_dir and tf.io.gfile.exists(a.model_dir) and not tf.io.gfile.isdir(a.model_dir):
        raise PretrainArgsError(f"--model_dir {a.model_dir} exists and is not a directory")
    check_output_dir("--model_dir", a.model_dir)  # records (data/) and summaries (train/) go inside
    for name, minimum in (("train_steps", 1), ("batch_size", 1), ("seq_len", 1),
                          ("steps_per_loop", 1), ("log_every", 1), ("save_every", 0),
                          ("warmup_steps", 0), ("keep_checkpoints", 1), ("max_nonfinite", 0)):
        value = getattr(a, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            bad(name, value, f"must be an integer >= {minimum}")
    if a.num_predict is not None and a.num_predict < 1:
        bad("num_predict", a.num_predict, "must be >= 1 (unset: 85 per 512 tokens)")
    for name, lo, lo_open in (("learning_rate", 0.0, True), ("weight_decay", 0.0, False),
                              ("clip_norm", 0.0, False), ("disc_weight", 0.0, False)):
        value = getattr(a, name)
        if not math.isfinite(value) or value < lo or (lo_open and value <= lo):
            bad(name, value, f"must be a finite number {'>' if lo_open else '>='} {lo:g}")
    if not 0.0 < a.generator_width <= 1.0:
        bad("generator_width", a.generator_width, "must be in (0, 1]")
    for name, allowed in (("objective", OBJECTIVES), ("strategy", STRATEGIES),
                          ("precision", PRECISIONS), ("jit_compile", JIT_MODES),
                          ("masking", MASKING), ("nonfinite", ("stop", "skip")),
                          ("data_resume", ("auto", "replay", "restart")),
                          ("train_data_format", inputs.DATA_FORMATS)):
        if getattr(a, name) not in allowed:
            bad(name, getattr(a, name), f"must be one of {', '.join(allowed)}")
    if a.tpu and a.strategy != "tpu":
        raise PretrainArgsError(f"--tpu={a.tpu} needs --strategy=tpu (or leave --strategy unset), "
                                f"got --strategy={a.strategy}")
    if a.init_checkpoint is not None and not a.init_checkpoint.strip():
        raise PretrainArgsError("--init_checkpoint is empty")


def parse_config_overrides(items: List[str]) -> Dict[str, object]:
    """["d_model=256", "block_sizes=[2,2]", "pooling_type=max"] -> {field: value}; the value is
    JSON, or a bare string when it does not parse as JSON."""
    out: Dict[str, object] = {}
    for item in items:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise ConfigError(f"--config_override {item!r}: expected key=value, e.g. d_model=256")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw  # bare strings: pooling_type=max
    return out


def resolve_config(a: PretrainArgs) -> FunnelConfig:
    """The model config: --config (name or file) with --config_override applied and checked."""
    try:
        config = load_config(a.config).replace(init_scheme=a.init_scheme)
    except ConfigError as e:
        raise ConfigError(f"--init_scheme: {e}") from None
    overrides = parse_config_overrides(a.config_override)  # an init_scheme override still wins
    if overrides:
        try:
            config = config.replace(**overrides)
        except ConfigError as e:
            raise ConfigError(f"--config_override: {e}") from None
    return config


def check_same_config(model_dir: str, config: FunnelConfig) -> None:
    """A resumed run must use the model it checkpointed (config.json in model_dir)."""
    path = os.path.join(model_dir, "config.json")
    if not tf.io.gfile.exists(path):
        return
    try:
        with tf.io.gfile.GFile(path) as f:
            saved = json.load(f)
    except ValueError as e:
        raise ConfigError(f"{path}: unreadable ({e}); use a new --model_dir") from None
    now = json.loads(config.to_json_string())
    try:  # fields added since the run started take their defaults
        saved = json.loads(FunnelConfig.from_dict(saved).to_json_string())
    except (ConfigError, TypeError):
        pass
    ignored = {"init_scheme"}  # decides only fresh weights; a resumed run restores its own
    diff = sorted(k for k in set(saved) | set(now)
                  if k not in ignored and saved.get(k) != now.get(k))
    if diff:
        raise ConfigError(f"{path} was written with a different model config (fields {diff}); "
                          f"use a new --model_dir or the same config")


# What a resume may not change (run_record.py): the rest of PretrainArgs may change, and is logged.
DEFINING = ("objective", "seq_len", "batch_size", "seed", "learning_rate", "warmup_steps",
            "weight_decay", "masking", "num_predict")
ELECTRA_DEFINING = ("disc_weight", "generator_width")
CHANGEABLE = ("train_steps", "steps_per_loop", "log_every", "save_every", "keep_checkpoints",
              "clip_norm", "nonfinite", "max_nonfinite", "jit_compile", "strategy", "train_data",
              "data_resume", "deterministic_input")


def _defining(a: PretrainArgs) -> Dict[str, object]:
    names = DEFINING + (ELECTRA_DEFINING if a.objective == "electra" else ())
    return {k: getattr(a, k) for k in names}


def run_record_of(a: PretrainArgs, config: FunnelConfig, vocab: Optional[str],
                  precision: str) -> dict:
    """This run's identity (run.json): the settings above, the model config (less init_scheme,
    which only decides fresh weights), the vocab's content and the resolved precision."""
    model = json.loads(config.to_json_string())
    model.pop("init_scheme", None)
    defining = dict(_defining(a), config=model, precision=precision)
    if vocab:
        defining["vocab"] = run_record.vocab_fingerprint(vocab)
    return run_record.make_record("pretraining", defining,
                                  {k: getattr(a, k) for k in CHANGEABLE})


def _saved_record(model_dir: str) -> Tuple[Optional[dict], str]:
    """(record, file it came from) of the run in model_dir: run.json, or for a folder written
    before it existed the settings in pretrain_args.json (its vocab and config are checked
    elsewhere: the manifest / config.json)."""
    return run_record.saved_record(model_dir, ARGS_FILE, _record_from_args)


def _record_from_args(saved: dict) -> dict:
    """The record of a pretrain_args.json (written before run.json existed)."""
    fields = {f.name for f in dataclasses.fields(PretrainArgs)}
    old = PretrainArgs(**{k: v for k, v in saved.items() if k in fields})
    defining = _defining(old)
    if old.precision != "auto":
        defining["precision"] = old.precision
    return run_record.make_record("pretraining", defining,
                                  {k: getattr(old, k) for k in CHANGEABLE})


def _has_training_checkpoint(model_dir: str) -> bool:
    return tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")) is not None


def resolve_init_checkpoint(path: str):
    """--init_checkpoint resolved (once per run, during its checks): a `checkpoints.resolver.Resolved`
    or a CheckpointError naming the flag."""
    try:
        return checkpoints.resolve(path)
    except UserError as e:
        raise CheckpointError(f"--init_checkpoint {e}") from None


def check_init_checkpoint(init, objective_name: str, config: FunnelConfig,
                          **objective_kwargs) -> str:
    """Load `init` (resolved by `resolve_init_checkpoint`; a path is resolved here) into throwaway
    models of this run, built on the host, by the same route the run then takes
    (`init_checkpoint.load_init_checkpoint`): a checkpoint of another size is one CheckpointError
    that counts and names the tensors that do not fit, before anything is written. Returns what
    would be loaded."""
    if isinstance(init, str):
        init = resolve_init_checkpoint(init)
    probe = pretraining_task(objective_name, config, **objective_kwargs)
    with tf.device("/cpu:0"):
        probe.build()
    fix = "pass the --config / --config_override the checkpoint was trained with"
    path = init.path
    if init.kind not in ("pretraining_run", "training_checkpoint"):
        try:
            return init_checkpoint.load_init_checkpoint(probe.backbone, init, probe.models)
        except UserError as e:
            try:
                h5 = training.weights_file(path) if init.kind in ("keras_weights", "native", "finetuning_run") \
                    else None
            except CheckpointError:
                h5 = None  # several files: the load error itself says so
            detail = h5 and training.h5_shape_mismatch(h5, [probe.backbone, *probe.models.values()])
            if not detail:
                lines = [ln.strip(" :;") for ln in str(e).strip().splitlines() if ln.strip(" :;")]
                detail = "; ".join(lines[2:6] if len(lines) > 2 else lines)[:400]
            raise CheckpointError(
                f"--init_checkpoint {path} does not fit this model: {detail}; {fix}") from None
    prefix = training.resolve_checkpoint(path)
    name, missing, mismatched, n = training.compare_backbone(prefix, probe.backbone)
    if not missing and not mismatched:
        return f"backbone ({n} tensors) from training checkpoint {prefix} [{name}]"
    parts = []
    if mismatched:
        parts.append(f"{len(mismatched)} of {n} backbone tensors have another shape "
                     f"(checkpoint vs model: {'; '.join(mismatched[:3])}"
                     f"{'; ...' if len(mismatched) > 3 else ''})")
    if missing:
        parts.append(f"{len(missing)} of {n} are missing (e.g. {', '.join(missing[:3])})")
    raise CheckpointError(
        f"--init_checkpoint {prefix} does not fit this model: {' and '.join(parts)}; {fix}")


# ------------------------------------------------------------------------------ the run
def _objective_kwargs(a: PretrainArgs) -> dict:
    return dict(disc_weight=a.disc_weight, generator_width=a.generator_width) \
        if a.objective == "electra" else {}


def _write_text(path: str, text: str) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)


def _copy_vocab(vocab: str, model_dir: str) -> None:
    """model_dir/vocab.txt: the run's vocab travels with it (finetune.py --init_checkpoint=<this
    run> and convert find it there)."""
    from funnel_tf import storage

    target = os.path.join(model_dir, VOCAB_FILE)
    if storage.canonical(vocab) != storage.canonical(target):
        tf.io.gfile.copy(vocab, target, overwrite=True)


def _make_strategy(a: PretrainArgs):
    """The run's tf.distribute strategy; a cluster or TPU that cannot be reached is a user error."""
    from funnel_tf.engine import strategy as strat
    try:
        return strat.make_strategy(a.strategy, tpu=a.tpu, zone=a.tpu_zone, project=a.gcp_project)
    except UserError:
        raise
    except (OSError, ValueError, RuntimeError, tf.errors.OpError) as e:
        if a.strategy not in ("tpu", "multi_worker"):
            raise  # one host, no cluster to reach: a bug, keep its traceback
        where = f"TPU {a.tpu!r}" if a.tpu else "the TPU / cluster (TF_CONFIG)"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PretrainArgsError(f"--strategy={a.strategy}: cannot reach {where}: {first[:300]} "
                                f"(check --tpu, --tpu_zone, --gcp_project or TF_CONFIG)") from None


def run_pretraining(args: PretrainArgs) -> PretrainResult:
    """Check everything, then pretrain (or resume) in `args.model_dir`; see the module docstring.

    Raises a UserError subclass for anything the user can fix, before writing when it can be
    known up front (raw text too short for one example is found while making records: those are
    removed again, and so is a model_dir this call created)."""
    from funnel_tf.engine.jax.backend import choose_backend
    if choose_backend(args.backend) == "jax":  # the JAX engine (engine/jax/), same checks and folder
        from funnel_tf.pretraining.run_jax import run_pretraining_jax
        return run_pretraining_jax(args)
    import keras

    from funnel_tf.engine import loop
    from funnel_tf.engine import strategy as strat
    from funnel_tf.engine import optimization
    from funnel_tf.engine import precision as run_precision
    from funnel_tf.engine.inputs import task_dataset_fn
    from funnel_tf.engine.run_lock import ModelDirLock

    saved = None
    if args.model_dir and tf.io.gfile.isdir(args.model_dir) and \
            _has_training_checkpoint(args.model_dir):
        saved = _saved_record(args.model_dir)[0]
    a, chosen = fill_defaults(args, saved)
    check_args(a)
    if a.model_dir and tf.io.gfile.isdir(a.model_dir) and list_jax_checkpoints(a.model_dir):
        raise PretrainArgsError(f"--model_dir {a.model_dir} holds JAX-engine checkpoints; "
                                f"resume it with --backend=jax or use a new --model_dir")
    config = resolve_config(a)
    train_data = [DEMO_CORPUS] if a.demo else list(a.train_data)
    # The strategy before any TensorFlow op: on a pod, ops run before `connect_to_cluster` /
    # `initialize_tpu_system` land on the wrong devices, and MultiWorkerMirroredStrategy can
    # configure its collective ops only before TF's runtime starts. Checking the input below
    # runs ops (the tokenizer's lookup tables, tf.data); the checks above need none.
    strategy = _make_strategy(a)
    plan = inputs.plan_pretraining_input(
        train_data, a.seq_len, config, vocab=a.vocab or (DEMO_VOCAB if a.demo else None),
        data_format=a.train_data_format, masking_strategy=a.masking, num_predict=a.num_predict,
        fallback_encoding=a.fallback_encoding)
    notes = list(chosen)  # logged once everything is checked: a user error stays one line
    if plan.tokenizer.vocab_size != config.vocab_size:
        notes.append(f"vocab {plan.vocab} has {plan.tokenizer.vocab_size} tokens: vocab_size "
                     f"{config.vocab_size} -> {plan.tokenizer.vocab_size}")
        config = config.replace(vocab_size=plan.tokenizer.vocab_size)
    extra = _objective_kwargs(a)
    objective = pretraining_task(a.objective, config, **extra)

    info = strat.strategy_info(strategy)
    if a.batch_size % info.num_replicas:
        raise PretrainArgsError(f"--batch_size={a.batch_size} (global) is not divisible by the "
                                f"{info.num_replicas} replicas of {info.describe()}")
    resolved = run_precision.resolve(a.precision, a.jit_compile, info.kind)
    run_precision.set_precision(resolved.precision)
    precision, jit = resolved.precision, resolved.jit_compile

    created = a.model_dir is None or not tf.io.gfile.exists(a.model_dir)
    model_dir = a.model_dir or tempfile.mkdtemp(prefix="funnel_pretrain_demo_")
    resuming = tf.io.gfile.exists(model_dir) and _has_training_checkpoint(model_dir)
    check_same_config(model_dir, config)
    record = run_record_of(a, config, plan.vocab, precision)
    if resuming:  # a run that differs in what defines it is refused; the rest is logged
        notes += run_record.check_resume(model_dir, record, *_saved_record(model_dir))
    init = None  # --init_checkpoint, resolved once here and handed to the loop
    if a.init_checkpoint and not resuming:
        init = resolve_init_checkpoint(a.init_checkpoint)
        notes.append("init checkpoint fits: " + check_init_checkpoint(
            init, a.objective, config, **extra))
    keras.utils.set_random_seed(a.seed)  # after the probe models: the run's init is unchanged

    train_steps = a.train_steps
    schedule = optimization.WarmupLinearDecay(a.learning_rate, min(a.warmup_steps, train_steps),
                                              train_steps)

    def optimizer_fn(variables):
        return optimization.make_optimizer(variables, schedule, weight_decay=a.weight_decay)

    loop_config = loop.LoopConfig(
        train_steps=train_steps, global_batch_size=a.batch_size, seq_len=a.seq_len,
        model_dir=model_dir, steps_per_loop=a.steps_per_loop, log_every=a.log_every,
        save_every=a.save_every, keep_checkpoints=a.keep_checkpoints, clip_norm=a.clip_norm,
        jit_compile=jit, nonfinite=a.nonfinite, max_nonfinite=a.max_nonfinite, seed=a.seed,
        data_resume=a.data_resume, warm_start=init)
    loop_config.validate()

    # Everything is checked: from here on the run writes, holding the model_dir for its life.
    lock = ModelDirLock(model_dir, enabled=info.is_chief)
    owned = wrote_config = False
    try:
        with lock:
            owned = lock.held and created
            data = inputs.materialize_input(
                plan, a.batch_size, seed=a.seed, deterministic=a.deterministic_input,
                work_dir=model_dir, can_write=info.is_chief and info.num_workers == 1,
                skip_undecodable_lines=a.skip_undecodable_lines,
                fallback_encoding=a.fallback_encoding)
            trainer = loop.Trainer(strategy, objective, optimizer_fn,
                                   task_dataset_fn(objective, data.spec), loop_config)
            trainer.prepare()  # restore or warm-start: a checkpoint that does not fit fails here
            for note in notes:
                logging.info("%s", note)
            if info.is_chief:
                _write_text(os.path.join(model_dir, "config.json"), config.to_json_string())
                run_record.write_record(model_dir, record)
                _copy_vocab(plan.vocab, model_dir)
                _write_text(os.path.join(model_dir, ARGS_FILE), json.dumps(
                    {k: v for k, v in dataclasses.asdict(a).items() if k != "flags_text"},
                    indent=1) + "\n")
                if a.flags_text is not None:
                    _write_text(os.path.join(model_dir, FLAGS_FILE), a.flags_text)
                if a.objective == "electra":
                    _write_text(os.path.join(model_dir, "generator_config.json"),
                                objective.gen_config.to_json_string())
                wrote_config = True
            logging.info("%s pretraining of %s (d_model %d, blocks %s) on %s: %d steps x %d "
                         "sequences x %d tokens, lr %g, %s, jit_compile=%s, data %d record "
                         "file(s)%s", a.objective, a.config, config.d_model, config.block_sizes,
                         info.describe(), train_steps, a.batch_size, a.seq_len, a.learning_rate,
                         precision, jit, len(data.files),
                         f" ({data.num_examples} examples)" if data.num_examples else "")
            try:
                result = trainer.train()
            except loop.CorruptInputError as e:
                found = inputs.find_corrupt_record_file(data.files)
                if found is None:
                    raise
                raise loop.CorruptInputError(
                    f"{found[0]}: corrupt or truncated record ({found[1]}); {e.where}: remake "
                    f"or remove that file and rerun", detail=found[1], where=e.where) from None
    except UserError:
        if owned and not wrote_config and tf.io.gfile.exists(model_dir):
            tf.io.gfile.rmtree(model_dir)  # a failed first run leaves no half-made model_dir
        elif info.is_chief:  # an existing model_dir keeps what it had, without empty new folders
            for d in (os.path.join(model_dir, "data", f"seq{a.seq_len}"),
                      os.path.join(model_dir, "data")):
                if tf.io.gfile.isdir(d) and not tf.io.gfile.listdir(d):
                    tf.io.gfile.rmtree(d)
        raise
    return PretrainResult(model_dir=model_dir, step=int(result.step),
                          preempted=bool(result.preempted), checkpoint=result.checkpoint,
                          history=list(result.history), metrics=list(objective.metrics))


def format_summary(result: PretrainResult) -> str:
    """The lines pretrain.py prints at the end: where the run stopped and where outputs went."""
    last = result.history[-1] if result.history else {}
    summary = ", ".join(f"{k} {last[k]:.4f}" for k in result.metrics if k in last)
    lines = [f"\n{'stopped (preempted)' if result.preempted else 'finished'} at step "
             f"{result.step}{': ' + summary if summary else ''}"]
    if len(result.history) > 1:
        first = result.history[0]
        lines.append(f"loss {first['loss']:.4f} at step {first['step']} -> {last['loss']:.4f} "
                     f"at step {last['step']}")
    d = result.model_dir
    lines.append(f"outputs in {d}:\n"
                 f"  checkpoints   {os.path.join(d, 'checkpoints')} (newest: {result.checkpoint})\n"
                 f"  TensorBoard   tensorboard --logdir {os.path.join(d, 'train')}\n"
                 f"  metrics       {os.path.join(d, 'metrics.jsonl')}\n"
                 f"  model config  {os.path.join(d, 'config.json')}")
    return "\n".join(lines)


__all__ = ["PretrainResult", "PretrainArgsError", "run_pretraining",
           "format_summary", "check_args", "resolve_init_checkpoint", "check_init_checkpoint",
           "parse_config_overrides",
           "DEMO_DEFAULTS", "RUN_DEFAULTS", "EXIT_PREEMPTED"]
