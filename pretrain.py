"""Pretrain a Funnel-Transformer with MLM or ELECTRA on CPU, GPUs or TPU slices/pods.

    python pretrain.py                      # demo: tiny model, shipped demo corpus, CPU, ~1 minute
    python pretrain.py --train_data='gs://bucket/records/pretrain-*.tfrecord' \
        --model_dir=gs://bucket/runs/small-electra --config=small --objective=electra \
        --tpu=local --batch_size=256 --seq_len=512 --train_steps=1000000

Run `python pretrain.py --helpfull` for every flag. Without --train_data the demo settings apply to
every flag you leave unset (shown as "demo:" in the help); with it, the run settings do ("run:").
Restarting with the same --model_dir resumes from its newest checkpoint.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

from absl import app, flags, logging

REPO = os.path.dirname(os.path.abspath(__file__))
DEMO_CORPUS = os.path.join(REPO, "data", "demo_corpus.txt")
DEMO_VOCAB = os.path.join(REPO, "data", "demo_vocab.txt")

# Settings for flags left unset: the embedded demo (no --train_data) and a real run.
DEMO = dict(config="tiny", objective="mlm", seq_len=64, batch_size=16, train_steps=300,
            learning_rate=1e-3, warmup_steps=30, steps_per_loop=25, log_every=25, save_every=100,
            strategy="default")
RUN = dict(config="small", objective="mlm", seq_len=512, batch_size=256, train_steps=1_000_000,
           learning_rate=1e-4, warmup_steps=10_000, steps_per_loop=200, log_every=200,
           save_every=5_000, strategy="default")


def _both(name):
    return f"(demo: {DEMO[name]}; run: {RUN[name]})"


FLAGS = flags.FLAGS
flags.DEFINE_string("config", None, "Model config: a name in configs/ (tiny, small, medium, "
                    "large, ...) or a path to a JSON config (ours, HF config.json or the original "
                    f"net_config.json). {_both('config')}")
flags.DEFINE_multi_string("config_override", [], "key=value overriding one config field; the "
                          "value is JSON (e.g. d_model=256, block_sizes=[2,2,2], "
                          "hidden_dropout=0.0). Repeatable.")
flags.DEFINE_enum("objective", None, ["mlm", "electra"], "mlm: masked LM on the full model "
                  "(decoder output) at the masked positions. electra: a 1/4-width generator "
                  "(sharing the embeddings) fills the masks by Gumbel sampling and the model "
                  f"learns replaced-token detection; loss = gen MLM + disc_weight x disc. "
                  f"{_both('objective')}")
flags.DEFINE_list("train_data", None, "Training data, comma-separated globs: TFRecords from "
                  "`python -m funnel_tf.text create-pretraining-data`, or plain-text files (one "
                  "sentence per line, blank line between documents) turned into records once in "
                  "<model_dir>/data. Unset: the demo corpus data/demo_corpus.txt.")
flags.DEFINE_enum("train_data_format", "auto", ["auto", "tfrecord", "text"],
                  "How to read --train_data; auto looks at file names and manifest.json.")
flags.DEFINE_bool("skip_undecodable_lines", False, "Raw-text input: skip (and count) lines that are "
                  "not valid UTF-8 instead of stopping with the file and line.")
flags.DEFINE_string("fallback_encoding", None, "Raw-text input: decode non-UTF-8 lines with this "
                    "encoding (e.g. latin-1) instead of failing or skipping.")
flags.DEFINE_string("vocab", None, "WordPiece vocab.txt. Default: the manifest's vocab for "
                    "records, data/demo_vocab.txt for the demo. Its size overrides the config's "
                    "vocab_size.")
flags.DEFINE_string("model_dir", None, "Where checkpoints (checkpoints/), TensorBoard logs "
                    "(train/), metrics.jsonl and the resolved config go; gs:// works on TPU. "
                    "Reusing a directory resumes training. Required with --train_data; the demo "
                    "uses a fresh temporary directory.")
flags.DEFINE_integer("train_steps", None, f"Total optimizer steps. {_both('train_steps')}")
flags.DEFINE_integer("batch_size", None, "GLOBAL batch size (split across all replicas); "
                     f"losses are means over the global batch. {_both('batch_size')}")
flags.DEFINE_integer("seq_len", None, f"Tokens per example. {_both('seq_len')}")
flags.DEFINE_float("learning_rate", None, "Peak learning rate of the linear warmup / linear "
                   f"decay schedule (decays to 0 at train_steps). {_both('learning_rate')}")
flags.DEFINE_integer("warmup_steps", None, f"Linear warmup steps. {_both('warmup_steps')}")
flags.DEFINE_float("weight_decay", 0.01, "AdamW decoupled weight decay (never applied to "
                   "LayerNorm parameters or biases). AdamW uses beta1 0.9, beta2 0.99, eps 1e-6.")
flags.DEFINE_float("clip_norm", 1.0, "Clip the global norm of the (cross-replica summed) "
                   "gradient to this; 0 disables.")
flags.DEFINE_string("tpu", None, "TPU to train on: 'local' on a TPU VM, a TPU name, or a "
                    "grpc:// address. Implies --strategy=tpu.")
flags.DEFINE_string("tpu_zone", None, "GCE zone of a named TPU (with --tpu=<name>).")
flags.DEFINE_string("gcp_project", None, "GCP project of a named TPU (with --tpu=<name>).")
flags.DEFINE_enum("strategy", None, ["default", "cpu", "one_device", "mirrored", "multi_worker",
                                     "tpu"],
                  "Distribution: default (one device), cpu, one_device, mirrored (all local "
                  "GPUs), multi_worker (MultiWorkerMirroredStrategy from TF_CONFIG), tpu. "
                  "Default: tpu when --tpu is given, else default.")
flags.DEFINE_enum("precision", "auto", ["auto", "float32", "mixed_bfloat16"],
                  "float32, or mixed_bfloat16 (bf16 compute, float32 variables, logits and "
                  "losses). auto: mixed_bfloat16 on TPU, float32 elsewhere.")
flags.DEFINE_integer("steps_per_loop", None, "Training steps run inside one tf.function call "
                     f"(fewer host round trips; large on TPU). {_both('steps_per_loop')}")
flags.DEFINE_integer("log_every", None, "Steps between progress lines / TensorBoard points "
                     f"(loss, accuracy, lr, steps/s, examples/s, tokens/s, ETA). {_both('log_every')}")
flags.DEFINE_integer("save_every", None, "Steps between checkpoints (0: only at the end). "
                     f"{_both('save_every')}")
flags.DEFINE_integer("keep_checkpoints", 5, "Newest checkpoints to keep.")
flags.DEFINE_string("init_checkpoint", None, "Warm-start the backbone of a fresh run from a "
                    "converted checkpoint (*.weights.h5 or a save_pretrained directory) or a "
                    "funnel-tf training checkpoint. Ignored when model_dir already has one.")
flags.DEFINE_enum("masking", "single_token", ["single_token", "word_span"],
                  "Masking: random single tokens, or the original's whole-word spans of 1-5 words.")
flags.DEFINE_integer("num_predict", None, "Masked positions per example (default: 85 per 512 "
                     "tokens, scaled with --seq_len).")
flags.DEFINE_float("disc_weight", 50.0, "ELECTRA: weight of the discriminator loss.")
flags.DEFINE_float("generator_width", 0.25, "ELECTRA: generator width as a fraction of the "
                   "model's d_model, n_head and d_inner.")
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"], "XLA-compile the whole train step. "
                  "auto: on for GPU/TPU; off on CPU, where the model runs on TF's kernels with its "
                  "elementwise parts XLA-fused and the update (clipping, AdamW and, with "
                  "mixed_bfloat16, the bf16 weight copies the forward reads) one XLA function: "
                  "the fastest CPU path with mixed_bfloat16, within ~5% of whole-step XLA in "
                  "float32, and it starts sooner (bench/README.md).")
flags.DEFINE_enum("nonfinite", "stop", ["stop", "skip"], "On a NaN/Inf loss or gradient: stop "
                  "with an error (the update is not applied; the last checkpoint stays good), or "
                  "skip that step and count it (giving up after --max_nonfinite).")
flags.DEFINE_integer("max_nonfinite", 100, "With --nonfinite=skip: stop after this many skips.")
flags.DEFINE_enum("data_resume", "replay", ["auto", "replay", "restart"], "Input position on "
                  "resume. replay: rebuild the input and skip the batches already consumed (exact "
                  "with --deterministic_input; costs one pass over them). auto: checkpoint the "
                  "tf.data iterator where possible (single device), else replay. restart: start "
                  "the input over (cheapest; for very long pod runs).")
flags.DEFINE_bool("deterministic_input", True, "Mask batches sequentially so the input is "
                  "identical across runs with the same --seed (exact resume). Turn off for "
                  "parallel masking when the host CPU is the bottleneck.")
flags.DEFINE_integer("seed", 0, "Seed for initialisation, data order, masking and sampling.")


def _setting(name):
    value = getattr(FLAGS, name)
    if value is not None:
        return value
    return (DEMO if FLAGS.train_data is None else RUN)[name]


def _parse_overrides(items):
    out = {}
    for item in items:
        if "=" not in item:
            raise app.UsageError(f"--config_override {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw  # bare strings: pooling_type=max
    return out


def _check_same_config(model_dir, config):
    """A resumed run must use the model it checkpointed."""
    import tensorflow as tf
    path = os.path.join(model_dir, "config.json")
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            saved = json.load(f)
        if saved != json.loads(config.to_json_string()):
            diff = sorted(k for k in set(saved) | set(config.to_dict())
                          if saved.get(k) != json.loads(config.to_json_string()).get(k))
            raise app.UsageError(f"{path} was written with a different model config (fields "
                                 f"{diff}); use a new --model_dir or the same config")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import keras
    import tensorflow as tf

    from funnel_tf.config import load_config
    from funnel_tf.training import inputs, loop, objectives, optimization, strategy as strat

    demo = FLAGS.train_data is None
    model_dir = FLAGS.model_dir
    if model_dir is None:
        if not demo:
            raise app.UsageError("--model_dir is required with --train_data")
        model_dir = tempfile.mkdtemp(prefix="funnel_pretrain_demo_")
    kind = FLAGS.strategy or ("tpu" if FLAGS.tpu else _setting("strategy"))
    strategy = strat.make_strategy(kind, tpu=FLAGS.tpu, zone=FLAGS.tpu_zone,
                                   project=FLAGS.gcp_project)
    info = strat.strategy_info(strategy)
    precision = FLAGS.precision
    if precision == "auto":
        precision = "mixed_bfloat16" if info.kind == "tpu" else "float32"
    strat.set_precision(precision)
    jit = {"true": True, "false": False}.get(FLAGS.jit_compile)
    if jit is None:
        jit = bool(tf.config.list_physical_devices("GPU")) or info.kind == "tpu"
    keras.utils.set_random_seed(FLAGS.seed)

    config = load_config(_setting("config"))
    overrides = _parse_overrides(FLAGS.config_override)
    if overrides:
        config = config.replace(**overrides)
    seq_len, batch = _setting("seq_len"), _setting("batch_size")
    train_data = [DEMO_CORPUS] if demo else FLAGS.train_data
    vocab = FLAGS.vocab or (DEMO_VOCAB if demo else None)
    data = inputs.build_pretraining_input(
        train_data, seq_len, batch, config, vocab=vocab, data_format=FLAGS.train_data_format,
        work_dir=model_dir, masking_strategy=FLAGS.masking, num_predict=FLAGS.num_predict,
        seed=FLAGS.seed, deterministic=FLAGS.deterministic_input,
        can_write=info.is_chief and info.num_workers == 1,
        skip_undecodable_lines=FLAGS.skip_undecodable_lines, fallback_encoding=FLAGS.fallback_encoding)
    if data.tokenizer.vocab_size != config.vocab_size:
        logging.info("vocab %s has %d tokens: vocab_size %d -> %d", data.tokenizer.vocab_path,
                     data.tokenizer.vocab_size, config.vocab_size, data.tokenizer.vocab_size)
        config = config.replace(vocab_size=data.tokenizer.vocab_size)
    _check_same_config(model_dir, config)
    if info.is_chief:
        tf.io.gfile.makedirs(model_dir)
        with tf.io.gfile.GFile(os.path.join(model_dir, "config.json"), "w") as f:
            f.write(config.to_json_string())
        with tf.io.gfile.GFile(os.path.join(model_dir, "pretrain_flags.txt"), "w") as f:
            f.write(FLAGS.flags_into_string())

    objective_name = _setting("objective")
    extra = dict(disc_weight=FLAGS.disc_weight, generator_width=FLAGS.generator_width) \
        if objective_name == "electra" else {}
    objective = objectives.make_objective(objective_name, config, **extra)
    train_steps = _setting("train_steps")
    schedule = optimization.WarmupLinearDecay(_setting("learning_rate"),
                                              min(_setting("warmup_steps"), train_steps),
                                              train_steps)

    def optimizer_fn(variables):
        return optimization.make_optimizer(variables, schedule, weight_decay=FLAGS.weight_decay)

    loop_config = loop.LoopConfig(
        train_steps=train_steps, global_batch_size=batch, seq_len=seq_len, model_dir=model_dir,
        steps_per_loop=_setting("steps_per_loop"), log_every=_setting("log_every"),
        save_every=_setting("save_every"), keep_checkpoints=FLAGS.keep_checkpoints,
        clip_norm=FLAGS.clip_norm, jit_compile=jit, nonfinite=FLAGS.nonfinite,
        max_nonfinite=FLAGS.max_nonfinite, seed=FLAGS.seed, data_resume=FLAGS.data_resume,
        warm_start=FLAGS.init_checkpoint)
    logging.info("%s pretraining of %s (%s) on %s: %d steps x %d sequences x %d tokens, lr %g, "
                 "%s, jit_compile=%s, data %s%s", objective_name, _setting("config"),
                 f"d_model {config.d_model}, blocks {config.block_sizes}", info.describe(),
                 train_steps, batch, seq_len, _setting("learning_rate"), precision, jit,
                 f"{len(data.files)} record file(s)",
                 f" ({data.num_examples} examples)" if data.num_examples else "")
    if objective_name == "electra" and info.is_chief:
        with tf.io.gfile.GFile(os.path.join(model_dir, "generator_config.json"), "w") as f:
            f.write(objective.gen_config.to_json_string())
    trainer = loop.Trainer(strategy, objective, optimizer_fn, data.dataset_fn, loop_config)
    result = trainer.train()

    last = result.history[-1] if result.history else {}
    summary = ", ".join(f"{k} {last[k]:.4f}" for k in objective.metrics if k in last)
    print(f"\n{'stopped (preempted)' if result.preempted else 'finished'} at step {result.step}"
          f"{': ' + summary if summary else ''}")
    if len(result.history) > 1:
        first = result.history[0]
        print(f"loss {first['loss']:.4f} at step {first['step']} -> {last['loss']:.4f} at step "
              f"{last['step']}")
    print(f"outputs in {model_dir}:\n"
          f"  checkpoints   {os.path.join(model_dir, 'checkpoints')} (newest: {result.checkpoint})\n"
          f"  TensorBoard   tensorboard --logdir {os.path.join(model_dir, 'train')}\n"
          f"  metrics       {os.path.join(model_dir, 'metrics.jsonl')}\n"
          f"  model config  {os.path.join(model_dir, 'config.json')}")
    if result.preempted:
        sys.exit(75)  # EX_TEMPFAIL: restart with the same --model_dir to resume


if __name__ == "__main__":
    app.run(main)
