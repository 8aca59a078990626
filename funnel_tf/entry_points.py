"""Console scripts (setup.py): funnel-pretrain, funnel-finetune, funnel-convert, funnel-text.

Each hides TensorFlow's C++ log noise first (funnel_tf.logs), then runs the same code as
`python pretrain.py`, `python finetune.py`, `python -m funnel_tf.convert`, `python -m funnel_tf.text`.
"""

import runpy
import sys

from funnel_tf.logs import quiet_tensorflow


def _absl_script(module_name: str, required=()):
    """Run an absl entry script's `run()` if it has one, else `app.run(main)` as its __main__ does."""
    quiet_tensorflow()
    import importlib

    from absl import app, flags

    module = importlib.import_module(module_name)
    if hasattr(module, "run"):
        return module.run()
    if required:
        flags.mark_flags_as_required(list(required))
    app.run(module.main)


def pretrain():
    """`funnel-pretrain`: pretrain.py."""
    _absl_script("pretrain")


def finetune():
    """`funnel-finetune`: finetune.py."""
    _absl_script("finetune", required=("task", "model_dir"))


def convert():
    """`funnel-convert`: python -m funnel_tf.convert."""
    quiet_tensorflow()
    from funnel_tf.convert import run

    run()


def text():
    """`funnel-text`: python -m funnel_tf.text (build-vocab, create-pretraining-data)."""
    quiet_tensorflow()
    runpy.run_module("funnel_tf.text", run_name="__main__")  # argv[0] stays "funnel-text"
    sys.exit(0)
