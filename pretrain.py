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

from funnel_tf import flags_from_args
from funnel_tf.cli import absl_flags_parser, main_with_user_errors
from funnel_tf.logs import quiet_tensorflow
from funnel_tf.pretraining.args import PretrainArgs
from funnel_tf.pretraining.defaults import PretrainArgsError

FLAGS = flags.FLAGS
# One flag per PretrainArgs field (help and choices are declared there); --vocab_file and
# --max_seq_length (finetune.py's spellings) stay as deprecated aliases that warn.
flags_from_args.define_flags(PretrainArgs)


def args_from_flags() -> PretrainArgs:
    """PretrainArgs from the parsed flags (unset flags stay None: the library fills the demo /
    run defaults)."""
    return flags_from_args.args_from_flags(PretrainArgs, FLAGS, flags_text=FLAGS.flags_into_string())


@main_with_user_errors("pretrain.py")
def main(argv):
    if len(argv) > 1:
        raise PretrainArgsError(f"unexpected arguments {argv[1:]}: flags are --name=value")
    from funnel_tf.engine.jax.backend import choose_backend

    args = args_from_flags()
    choose_backend(args.backend)  # sets KERAS_BACKEND before Keras is first imported
    from funnel_tf.pretraining.run import format_summary, run_pretraining

    result = run_pretraining(args)
    print(format_summary(result))
    return result.exit_code  # 75 (EX_TEMPFAIL) when preempted: rerun with the same --model_dir


if __name__ == "__main__":
    quiet_tensorflow()  # before TF loads; keeps a TF_CPP_MIN_LOG_LEVEL the user set
    app.run(main, flags_parser=absl_flags_parser("pretrain.py", __doc__))
