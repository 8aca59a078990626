"""What every entry point shares: a user error is one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import functools
import sys

from funnel_tf.errors import UserError, one_line, storage_problem

USAGE_ERROR = 2

# --init_checkpoint means the same in pretrain.py and finetune.py: one loading route
# (funnel_tf/training/init_checkpoint.py).
INIT_CHECKPOINT_HELP = (
    "Initialise a fresh run from a checkpoint of any kind: a funnel_tf directory (save_pretrained "
    "or a finetune model_dir), a HuggingFace directory (config.json + weights), an original-release "
    "directory (net_config.json + model.ckpt), a TF training checkpoint of pretrain.py or "
    "finetune.py, or a *.weights.h5 file. The backbone always, heads where the checkpoint has "
    "them; a checkpoint that does not fit the config is refused with the tensors named.")


def main_with_user_errors(prog: str):
    """Decorator for an absl `main(argv)`: a `UserError`, or the file system refusing a write
    (disk full, quota, read-only, permissions: `errors.storage_problem`), ends as
    `prog: error: <one line>` on stderr and exit status 2, with no traceback."""
    def wrap(main):
        @functools.wraps(main)
        def wrapped(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except UserError as e:
                print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
                return USAGE_ERROR
            except Exception as e:  # noqa: BLE001 - only storage refusals are handled here
                problem = storage_problem(e)
                if problem is None:
                    raise
                print(f"{prog}: error: {problem}", file=sys.stderr)
                return USAGE_ERROR
        return wrapped
    return wrap


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its usage errors on one line too (`prog: error: <message> (see --help)`,
    exit status 2) instead of the usage block followed by the message."""

    def error(self, message):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def absl_flags_parser(prog: str):
    """A `flags_parser` for absl's `app.run`: a flag error (unknown flag, bad value) is
    `prog: error: <one line> (see --helpfull)` and exit status 2, not absl's two lines and 1."""
    def parse(argv):
        from absl import flags

        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            print(f"{prog}: error: {one_line(e)} (see --helpfull)", file=sys.stderr)
            sys.exit(USAGE_ERROR)
    return parse


def define_engine_flags() -> None:
    """The flags pretrain.py and finetune.py share, defined once with one meaning: where the run
    goes (strategy, TPU) and how it computes (precision, XLA, non-finite steps)."""
    from absl import flags

    flags.DEFINE_string("tpu", None, "TPU to run on: 'local' on a TPU VM, a TPU name, or a "
                        "grpc:// address. Implies --strategy=tpu.")
    flags.DEFINE_string("tpu_zone", None, "GCE zone of a named TPU (with --tpu=<name>).")
    flags.DEFINE_string("gcp_project", None, "GCP project of a named TPU (with --tpu=<name>).")
    flags.DEFINE_enum("strategy", None, ["default", "cpu", "one_device", "mirrored",
                                         "multi_worker", "tpu"],
                      "Distribution: default (one device), cpu, one_device, mirrored (all local "
                      "GPUs), multi_worker (MultiWorkerMirroredStrategy from TF_CONFIG), tpu. "
                      "Default: tpu when --tpu is given, else default.")
    flags.DEFINE_enum("precision", "auto", ["auto", "float32", "mixed_bfloat16"],
                      "float32, or mixed_bfloat16 (bf16 compute, float32 variables, logits and "
                      "losses). auto: mixed_bfloat16 on TPU, float32 elsewhere.")
    flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                      "XLA-compile the whole train (and predict) step. auto: on for GPU/TPU; off "
                      "on CPU, where the model runs on TF's kernels with its elementwise parts "
                      "XLA-fused and the update (clipping, AdamW and, with mixed_bfloat16, the "
                      "bf16 weight copies the forward reads) one XLA function: the fastest CPU "
                      "path with mixed_bfloat16, within ~5% of whole-step XLA in float32, and it "
                      "starts sooner (bench/README.md). Where TF has no XLA:CPU (tensorflow-tpu) "
                      "host steps run on TF's kernels whatever this says.")
    flags.DEFINE_enum("nonfinite", "stop", ["stop", "skip"], "On a NaN/Inf loss or gradient: "
                      "stop with an error (the update is not applied; the last checkpoint stays "
                      "good), or skip that step and count it.")
