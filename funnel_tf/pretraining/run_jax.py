"""`run_pretraining(PretrainArgs)` on the JAX engine, funnel_tf/engine/jax/ (pretrain.py
--backend=jax; run.py dispatches here): the TensorFlow run's checks (pretraining/run.py's:
flags, config, vocab, input, a resumed model_dir's config and run record, the init checkpoint)
before anything is written, the model_dir lock, the same run
folder (config.json, run.json, vocab.txt, pretrain_args.json, metrics.jsonl, train/ TensorBoard,
checkpoints/jax_<step>/, Orbax), then training with trainer.JaxTrainer, data parallel over every JAX
device, and at the end the backbone exported as a save_pretrained folder (`<model_dir>/pretrained`).

Several hosts (engine/jax/distributed.py): jax.distributed is initialized from the environment
first; each process reads its share of the records through the same tf.data pipeline (one input
pipeline per process, files sharded by process index), as numpy, made global arrays by
jax.make_array_from_process_local_data; process 0 alone writes (lock, run folder, metrics,
checkpoints, export) and the others wait for it at the end."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile

import numpy as np
import tensorflow as tf
from absl import logging

from funnel_tf.engine.jax.checkpoints import has_tf_checkpoint, list_checkpoints
from funnel_tf.errors import UserError
from funnel_tf.pretraining import inputs
from funnel_tf.pretraining import run as tf_run
from funnel_tf.pretraining.args import PretrainArgs
from funnel_tf.pretraining.defaults import DEMO_CORPUS, DEMO_VOCAB, PretrainArgsError, fill_defaults
from funnel_tf.tasks.pretraining import pretraining_task

EXPORT_DIR = "pretrained"


def resolve_precision(requested: str) -> str:
    """"auto" -> mixed_bfloat16 on TPU, float32 elsewhere (engine/precision.py's rule)."""
    import jax

    if requested == "auto":
        return "mixed_bfloat16" if jax.default_backend() == "tpu" else "float32"
    return requested


def batches_fn(task, spec):
    """start_batch -> iterator of this process's numpy batches: `task.build_inputs(spec)` of
    pipeline jax.process_index() of jax.process_count(), from that pipeline's batch
    `start_batch` on."""
    import jax

    n, i = jax.process_count(), jax.process_index()

    def make(start_batch: int):
        ctx = tf.distribute.InputContext(num_input_pipelines=n, input_pipeline_id=i,
                                         num_replicas_in_sync=n)
        start = dataclasses.replace(spec, start_batch=spec.start_batch + start_batch)
        return task.build_inputs(start, ctx).as_numpy_iterator()
    return make


def run_pretraining_jax(args: PretrainArgs) -> "tf_run.PretrainResult":
    """pretraining/run.run_pretraining, on JAX; see the module docstring."""
    from funnel_tf.engine.jax import distributed

    distributed.initialize_from_env()  # several hosts: before any JAX computation
    import jax
    import keras

    from funnel_tf.engine import optimization
    from funnel_tf.engine.jax.trainer import JaxTrainer
    from funnel_tf.engine.loop import CorruptInputError, LoopConfig
    from funnel_tf.engine.run_lock import ModelDirLock

    if args.strategy not in (None, "default"):
        raise PretrainArgsError(f"--strategy={args.strategy} is the TensorFlow engine's; with "
                                f"--backend=jax the run is data parallel over every JAX device")
    saved = None
    if args.model_dir and tf.io.gfile.isdir(args.model_dir) and list_checkpoints(args.model_dir):
        saved = tf_run._saved_record(args.model_dir)[0]
    a, chosen = fill_defaults(args, saved)
    tf_run.check_args(a)
    if a.model_dir and tf.io.gfile.isdir(a.model_dir) and has_tf_checkpoint(a.model_dir):
        raise PretrainArgsError(f"--model_dir {a.model_dir} holds TensorFlow-engine checkpoints; "
                                f"resume it with --backend=tensorflow or use a new --model_dir")
    config = tf_run.resolve_config(a)
    train_data = [DEMO_CORPUS] if a.demo else list(a.train_data)
    plan = inputs.plan_pretraining_input(
        train_data, a.seq_len, config, vocab=a.vocab or (DEMO_VOCAB if a.demo else None),
        data_format=a.train_data_format, masking_strategy=a.masking, num_predict=a.num_predict,
        fallback_encoding=a.fallback_encoding)
    if plan.data_format == "text" and jax.process_count() > 1:
        raise PretrainArgsError(f"raw-text input is converted by one process; for a run of "
                                f"{jax.process_count()} processes create records first with "
                                f"`python -m funnel_tf.text create-pretraining-data`")
    notes = list(chosen)
    if plan.tokenizer.vocab_size != config.vocab_size:
        notes.append(f"vocab {plan.vocab} has {plan.tokenizer.vocab_size} tokens: vocab_size "
                     f"{config.vocab_size} -> {plan.tokenizer.vocab_size}")
        config = config.replace(vocab_size=plan.tokenizer.vocab_size)
    extra = tf_run._objective_kwargs(a)
    objective = pretraining_task(a.objective, config, **extra)
    devices = jax.devices()
    if a.batch_size % len(devices):
        raise PretrainArgsError(f"--batch_size={a.batch_size} (global) is not divisible by the "
                                f"{len(devices)} JAX devices")
    precision = resolve_precision(a.precision)
    keras.config.set_dtype_policy(precision)
    is_chief = jax.process_index() == 0

    created = a.model_dir is None or not tf.io.gfile.exists(a.model_dir)
    model_dir = a.model_dir or tempfile.mkdtemp(prefix="funnel_pretrain_demo_")
    resuming = bool(list_checkpoints(model_dir))
    tf_run.check_same_config(model_dir, config)
    record = tf_run.run_record_of(a, config, plan.vocab, precision)
    if resuming:
        from funnel_tf.engine import run_record
        notes += run_record.check_resume(model_dir, record, *tf_run._saved_record(model_dir))
    init = None
    if a.init_checkpoint and not resuming:
        init = tf_run.resolve_init_checkpoint(a.init_checkpoint)
        notes.append("init checkpoint fits: " + tf_run.check_init_checkpoint(
            init, a.objective, config, **extra))
    keras.utils.set_random_seed(a.seed)
    objective.build()
    schedule = optimization.WarmupLinearDecay(a.learning_rate, min(a.warmup_steps, a.train_steps),
                                              a.train_steps)
    optimizer = optimization.make_optimizer(objective.trainable_variables, schedule,
                                            weight_decay=a.weight_decay)
    loop_config = LoopConfig(
        train_steps=a.train_steps, global_batch_size=a.batch_size, seq_len=a.seq_len,
        model_dir=model_dir, steps_per_loop=a.steps_per_loop, log_every=a.log_every,
        save_every=a.save_every, keep_checkpoints=a.keep_checkpoints, clip_norm=a.clip_norm,
        nonfinite=a.nonfinite, max_nonfinite=a.max_nonfinite, seed=a.seed,
        data_resume="restart" if a.data_resume == "restart" else "replay", warm_start=init)
    loop_config.validate()

    lock = ModelDirLock(model_dir, enabled=is_chief)
    owned = wrote_config = False
    try:
        with lock:
            owned = lock.held and created
            data = inputs.materialize_input(
                plan, a.batch_size, seed=a.seed, deterministic=a.deterministic_input,
                work_dir=model_dir, can_write=is_chief and jax.process_count() == 1,
                skip_undecodable_lines=a.skip_undecodable_lines,
                fallback_encoding=a.fallback_encoding)
            trainer = JaxTrainer(objective, optimizer, batches_fn(objective, data.spec),
                                 loop_config, lambda step: float(schedule(step)),
                                 is_chief=is_chief)
            trainer.prepare()  # a checkpoint that does not fit fails here, before writing
            for note in notes:
                logging.info("%s", note)
            if is_chief:
                tf_run._write_text(os.path.join(model_dir, "config.json"), config.to_json_string())
                from funnel_tf.engine import run_record
                run_record.write_record(model_dir, record)
                tf_run._copy_vocab(plan.vocab, model_dir)
                tf_run._write_text(os.path.join(model_dir, tf_run.ARGS_FILE), json.dumps(
                    {k: v for k, v in dataclasses.asdict(a).items() if k != "flags_text"},
                    indent=1) + "\n")
                if a.flags_text is not None:
                    tf_run._write_text(os.path.join(model_dir, tf_run.FLAGS_FILE), a.flags_text)
                if a.objective == "electra":
                    tf_run._write_text(os.path.join(model_dir, "generator_config.json"),
                                       objective.gen_config.to_json_string())
                wrote_config = True
            logging.info("%s pretraining of %s on JAX (%d device(s), %s): %d steps x %d "
                         "sequences x %d tokens, lr %g, %s", a.objective, a.config, len(devices),
                         jax.default_backend(), a.train_steps, a.batch_size, a.seq_len,
                         a.learning_rate, precision)
            try:
                result = trainer.train()
            except tf.errors.DataLossError as e:
                raise CorruptInputError(f"the training input holds a corrupt or truncated record "
                                        f"({str(e).strip().splitlines()[0][:200]}); last "
                                        f"checkpoint {trainer.checkpoints.latest}") from None
            if is_chief and not result.preempted:
                trainer.write_back()
                objective.backbone.save_pretrained(os.path.join(model_dir, EXPORT_DIR),
                                                   overwrite=True)
            distributed.barrier("funnel_tf.pretraining.done")  # the others wait for the chief
    except UserError:
        if owned and not wrote_config and tf.io.gfile.exists(model_dir):
            tf.io.gfile.rmtree(model_dir)
        raise
    return tf_run.PretrainResult(model_dir=model_dir, step=int(result.step),
                                 preempted=bool(result.preempted), checkpoint=result.checkpoint,
                                 history=list(result.history), metrics=list(objective.metrics))
