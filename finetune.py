r"""Finetune a Funnel-Transformer on GLUE, text classification, SQuAD or RACE.

    python finetune.py --task=sst-2 --data_dir=glue_data --init_checkpoint=funnel-small \
        --vocab_file=vocab.txt --model_dir=runs/sst2 --do_train --do_eval --do_predict \
        --export_dir=exports/sst2

`--backend=jax` (or KERAS_BACKEND=jax) trains on the JAX engine: GLUE, text classification and
csv tasks (SQuAD and RACE are refused for now; --export_dir runs on tensorflow).

Defaults per task come from the paper's recipes (funnel_tf/tasks/defaults.py); every flag left
unset keeps the recipe's value. `--helpfull` explains every flag. The work itself is done by
`funnel_tf.finetuning.run.run_finetuning`; this file only maps flags onto it.

Exit status: 0 done; 2 a user error (one line on stderr, nothing written); 75 preempted or
interrupted (SIGTERM, Ctrl-C): the checkpoint is saved, nothing was predicted or exported, and
rerunning the same command resumes and finishes. Every path may be on gs://.
"""

from __future__ import annotations

import sys

from absl import app, flags

from funnel_tf import flags_from_args
from funnel_tf.cli import absl_flags_parser, main_with_user_errors, program_name
from funnel_tf.finetuning.args import FinetuneArgs
from funnel_tf.logs import quiet_tensorflow

FLAGS = flags.FLAGS
# One flag per FinetuneArgs field or flag-group member (help and choices are declared there);
# --vocab and --seq_len (pretrain.py's spellings) stay as deprecated aliases that warn.
flags_from_args.define_flags(FinetuneArgs)


def args_from_flags(f=FLAGS) -> FinetuneArgs:
    """FinetuneArgs from the parsed flags."""
    return flags_from_args.args_from_flags(FinetuneArgs, f)


EX_TEMPFAIL = 75  # preempted or interrupted: rerun with the same flags to resume (as pretrain.py)


@main_with_user_errors("finetune.py")
def main(argv):
    from funnel_tf.engine.jax.backend import choose_backend

    args = args_from_flags()
    choose_backend(args.backend)  # sets KERAS_BACKEND before Keras is first imported
    from funnel_tf.tasks.errors import TaskError

    if len(argv) > 1:  # the flags parser refuses these already; main() called directly too
        raise TaskError(f"unexpected arguments {argv[1:]}: flags are --name=value")
    from funnel_tf.finetuning.run import run_finetuning

    try:
        summary = run_finetuning(args)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM outside the training loop
        print(f"{program_name('finetune.py')}: interrupted ({e or 'Ctrl-C'}) before the run finished; rerun with "
              f"the same flags to resume from the last checkpoint", file=sys.stderr)
        return EX_TEMPFAIL
    from funnel_tf import json_text

    summary = {k: v for k, v in summary.items() if k != "hparams"}
    print(json_text.dumps(summary, indent=1, default=str))  # valid JSON: NaN -> null
    if summary.get("preempted"):
        train = summary.get("train", {})
        print(f"{program_name('finetune.py')}: preempted at step {train.get('step')} of {train.get('total_steps')} "
              f"(checkpoint saved; nothing predicted or exported); rerun with the same flags to "
              f"resume", file=sys.stderr)
        return EX_TEMPFAIL
    return 0


if __name__ == "__main__":
    quiet_tensorflow()  # before TF loads; keeps a TF_CPP_MIN_LOG_LEVEL the user set
    flags.mark_flags_as_required(["task", "model_dir"])
    app.run(main, flags_parser=absl_flags_parser("finetune.py", __doc__))
