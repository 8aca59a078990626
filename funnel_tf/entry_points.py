"""Console scripts (setup.py): funnel-pretrain, funnel-finetune, funnel-convert, funnel-text,
funnel-glue-submission.

Each hides TensorFlow's C++ log noise first (funnel_tf.logs), then runs the script's own
`if __name__ == "__main__":` block, so `funnel-finetune ...` is exactly `python finetune.py ...`
(same flag checks, help, error lines and exit codes) and nothing here needs to follow their
changes; only the program name differs: messages name the command as invoked (`funnel-finetune:
error: ...`, not `finetune.py: error: ...`).
"""

import os
import runpy
import sys

from funnel_tf.cli import set_program_name
from funnel_tf.logs import quiet_tensorflow


def _run_as_main(module: str, default_name: str) -> None:
    """Run `module` as `python -m module` would; sys.argv is left as is, and the messages that
    would name the program `default_name` name it as invoked (sys.argv[0])."""
    set_program_name(default_name, os.path.basename(sys.argv[0]) or default_name)
    try:
        quiet_tensorflow()
        runpy.run_module(module, run_name="__main__")
    finally:  # called in-process (tests, a notebook): later direct calls keep their own name
        set_program_name(default_name, default_name)


def pretrain():
    """`funnel-pretrain`: pretrain.py."""
    _run_as_main("pretrain", "pretrain.py")


def finetune():
    """`funnel-finetune`: finetune.py."""
    _run_as_main("finetune", "finetune.py")


def convert():
    """`funnel-convert`: python -m funnel_tf.convert."""
    _run_as_main("funnel_tf.convert", "python -m funnel_tf.convert")


def glue_submission():
    """`funnel-glue-submission`: python -m funnel_tf.glue_submission (GLUE server zip)."""
    _run_as_main("funnel_tf.glue_submission", "python -m funnel_tf.glue_submission")


def text():
    """`funnel-text`: python -m funnel_tf.text (build-vocab, create-pretraining-data)."""
    _run_as_main("funnel_tf.text", "python -m funnel_tf.text")
