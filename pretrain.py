r"""Pretrain a Funnel-Transformer with MLM or ELECTRA on CPU, GPUs or TPU slices/pods.

    python pretrain.py                      # demo: tiny model, shipped demo corpus, CPU, ~1 minute
    python pretrain.py --train_data='gs://bucket/records/pretrain-*.tfrecord' \
        --model_dir=gs://bucket/runs/small-electra --config=small --objective=electra \
        --tpu=local --batch_size=256 --seq_len=512 --train_steps=1000000

Run `python pretrain.py --helpfull` for every flag. Without --train_data the demo settings apply to
every flag you leave unset (shown as "demo:" in the help); with it, the run settings do ("run:").
Restarting with the same --model_dir resumes from its newest checkpoint; one run at a time holds
a --model_dir. Bad flags, files, vocab, config or init checkpoint end with one line on stderr and
exit status 2 before anything is written; a preempted run exits with 75 (rerun to resume). The
work is done by `funnel_tf.pretraining.run.run_pretraining`; this file maps flags onto it.
"""

from __future__ import annotations

from absl import app, flags

from funnel_tf import cli
from funnel_tf.cli import absl_flags_parser, define_engine_flags, main_with_user_errors
from funnel_tf.logs import quiet_tensorflow
from funnel_tf.pretraining.defaults import DEMO_DEFAULTS as DEMO
from funnel_tf.pretraining.defaults import RUN_DEFAULTS as RUN
from funnel_tf.pretraining.defaults import PretrainArgsError


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
                  "<model_dir>/data (made again when the text, vocab or settings change). Unset: "
                  "the demo corpus data/demo_corpus.txt.")
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
define_engine_flags()  # --tpu --tpu_zone --gcp_project --strategy --precision --jit_compile --nonfinite
flags.adopt_module_key_flags(cli)  # listed by --help as this script's own
flags.DEFINE_integer("steps_per_loop", None, "Training steps run inside one tf.function call "
                     f"(fewer host round trips; large on TPU). {_both('steps_per_loop')}")
flags.DEFINE_integer("log_every", None, "Steps between progress lines / TensorBoard points "
                     f"(loss, accuracy, lr, steps/s, examples/s, tokens/s, ETA). {_both('log_every')}")
flags.DEFINE_integer("save_every", None, "Steps between checkpoints (0: only at the end). "
                     f"{_both('save_every')}")
flags.DEFINE_integer("keep_checkpoints", 5, "Newest checkpoints to keep.")
flags.DEFINE_string("init_checkpoint", None, cli.INIT_CHECKPOINT_HELP + " Ignored when "
                    "model_dir already has a checkpoint (the run resumes from it).")
flags.DEFINE_enum("masking", "single_token", ["single_token", "word_span"],
                  "Masking: random single tokens, or the original's whole-word spans of 1-5 words.")
flags.DEFINE_integer("num_predict", None, "Masked positions per example (default: 85 per 512 "
                     "tokens, scaled with --seq_len).")
flags.DEFINE_float("disc_weight", 50.0, "ELECTRA: weight of the discriminator loss.")
flags.DEFINE_float("generator_width", 0.25, "ELECTRA: generator width as a fraction of the "
                   "model's d_model, n_head and d_inner.")
flags.DEFINE_integer("max_nonfinite", 100, "With --nonfinite=skip: give up after this many "
                     "skipped steps.")
flags.DEFINE_enum("data_resume", "replay", ["auto", "replay", "restart"], "Input position on "
                  "resume. replay: rebuild the input and skip the batches already consumed (exact "
                  "with --deterministic_input; costs one pass over them). auto: checkpoint the "
                  "tf.data iterator where possible (single device), else replay. restart: start "
                  "the input over (cheapest; for very long pod runs).")
flags.DEFINE_bool("deterministic_input", True, "Mask batches sequentially so the input is "
                  "identical across runs with the same --seed (exact resume). Turn off for "
                  "parallel masking when the host CPU is the bottleneck.")
flags.DEFINE_integer("seed", 0, "Seed for initialisation, data order, masking and sampling.")
flags.DEFINE_enum("init_scheme", "original", ["original", "hf"], "Initialisation of a fresh model: "
                  "original = the original release's truncated normal, std 0.02 (first MLM loss "
                  "~ln(vocab)); hf = HuggingFace's rule (N(0, 1) embeddings: first loss ~240+ at the "
                  "published sizes). Does not touch what --init_checkpoint or a resume loads.")

# finetune.py's names for the same things (both scripts accept both spellings).
flags.DEFINE_alias("vocab_file", "vocab")
flags.DEFINE_alias("max_seq_length", "seq_len")


def args_from_flags():
    """PretrainArgs from the parsed flags (unset flags stay None: the library fills the demo /
    run defaults)."""
    from funnel_tf.pretraining.run import PretrainArgs

    f = FLAGS
    return PretrainArgs(
        train_data=f.train_data, model_dir=f.model_dir, config=f.config,
        config_override=list(f.config_override), objective=f.objective,
        train_data_format=f.train_data_format, skip_undecodable_lines=f.skip_undecodable_lines,
        fallback_encoding=f.fallback_encoding, vocab=f.vocab, train_steps=f.train_steps,
        batch_size=f.batch_size, seq_len=f.seq_len, learning_rate=f.learning_rate,
        warmup_steps=f.warmup_steps, weight_decay=f.weight_decay, clip_norm=f.clip_norm,
        tpu=f.tpu, tpu_zone=f.tpu_zone, gcp_project=f.gcp_project, strategy=f.strategy,
        precision=f.precision, steps_per_loop=f.steps_per_loop, log_every=f.log_every,
        save_every=f.save_every, keep_checkpoints=f.keep_checkpoints,
        init_checkpoint=f.init_checkpoint, masking=f.masking, num_predict=f.num_predict,
        disc_weight=f.disc_weight, generator_width=f.generator_width,
        jit_compile=f.jit_compile, nonfinite=f.nonfinite, max_nonfinite=f.max_nonfinite,
        data_resume=f.data_resume, deterministic_input=f.deterministic_input, seed=f.seed,
        init_scheme=f.init_scheme,
        flags_text=f.flags_into_string())


@main_with_user_errors("pretrain.py")
def main(argv):
    if len(argv) > 1:
        raise PretrainArgsError(f"unexpected arguments {argv[1:]}: flags are --name=value")
    from funnel_tf.pretraining.run import format_summary, run_pretraining

    result = run_pretraining(args_from_flags())
    print(format_summary(result))
    return result.exit_code  # 75 (EX_TEMPFAIL) when preempted: rerun with the same --model_dir


if __name__ == "__main__":
    quiet_tensorflow()  # before TF loads; keeps a TF_CPP_MIN_LOG_LEVEL the user set
    app.run(main, flags_parser=absl_flags_parser("pretrain.py", __doc__))
