"""Console scripts (setup.py): funnel-pretrain, funnel-finetune, funnel-convert, funnel-text.

Each hides TensorFlow's C++ log noise first (funnel_tf.logs), then runs the script's own
`if __name__ == "__main__":` block, so `funnel-finetune ...` is exactly `python finetune.py ...`
(same flag checks, error lines and exit codes) and nothing here needs to follow their changes.
"""

import runpy

from funnel_tf.logs import quiet_tensorflow


def _run_as_main(module: str) -> None:
    """Run `module` as `python -m module` would; sys.argv (and so the program name) is left as is."""
    quiet_tensorflow()
    runpy.run_module(module, run_name="__main__")


def pretrain():
    """`funnel-pretrain`: pretrain.py."""
    _run_as_main("pretrain")


def finetune():
    """`funnel-finetune`: finetune.py."""
    _run_as_main("finetune")


def convert():
    """`funnel-convert`: python -m funnel_tf.convert."""
    _run_as_main("funnel_tf.convert")


def text():
    """`funnel-text`: python -m funnel_tf.text (build-vocab, create-pretraining-data)."""
    _run_as_main("funnel_tf.text")
