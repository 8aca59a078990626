"""Runs the README's "Using it" block against a tiny HuggingFace folder; used by tests/test_api.py
and, with an installed wheel outside the checkout, by .ci/wheel_check.sh.

    python readme_quickstart.py README.md [workdir]

Imports only the installed funnel_tf (no test fixtures), so it runs wherever the wheel is installed.
"""

import os
import re
import shutil
import sys


def quickstart_code(readme_path: str) -> str:
    """The first ```python block under "## Using it"."""
    with open(readme_path, encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## Using it"):]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    if match is None:
        raise ValueError(f"{readme_path}: no ```python block under '## Using it'")
    return match.group(1)


def make_tiny_hf_folder(directory: str) -> str:
    """A random tiny FunnelModel in HuggingFace's format (config.json + model.safetensors) with the
    shipped demo vocab as vocab.txt: what `hf_dir` names in the quickstart."""
    from funnel_tf import FunnelModel, load_config
    from funnel_tf.checkpoints import export_hf
    from funnel_tf.resources import demo_vocab_path

    with open(demo_vocab_path(), encoding="utf-8") as f:
        vocab_size = sum(1 for _ in f)
    model = FunnelModel(load_config("tiny").replace(vocab_size=vocab_size))
    export_hf(model, directory)
    shutil.copy(demo_vocab_path(), os.path.join(directory, "vocab.txt"))
    return directory


def run(readme_path: str, workdir: str) -> dict:
    """Make `workdir/funnel-small`, run the quickstart with `workdir` as the current directory, and
    return its variables."""
    code = quickstart_code(readme_path)
    hf_dir = re.search(r'^hf_dir = "([^"]+)"', code, flags=re.M).group(1)
    os.makedirs(workdir, exist_ok=True)
    make_tiny_hf_folder(os.path.join(workdir, hf_dir))
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        scope = {"__name__": "__readme__"}
        exec(compile(code, f"{readme_path}:Using it", "exec"), scope)
    finally:
        os.chdir(cwd)
    return scope


if __name__ == "__main__":
    from funnel_tf.logs import quiet_tensorflow

    quiet_tensorflow()
    readme = os.path.abspath(sys.argv[1])
    work = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else "quickstart")
    scope = run(readme, work)
    import funnel_tf

    print(f"quickstart ok: logits {scope['logits'].shape}, funnel_tf from {os.path.dirname(funnel_tf.__file__)}")
