"""Load a text-in SavedModel that funnel_tf exported, and the README.txt that says how.

The SavedModels of `finetune.py --export_dir` and `FunnelTextClassifier.export` tokenize inside
the graph with tensorflow-text ops, which TensorFlow only knows after `import tensorflow_text`;
without it loading fails with "Op type not registered 'TFText>...'". `load` does that import first.
"""

from __future__ import annotations

import os

from funnel_tf.errors import UserError

README_NAME = "README.txt"

# Signature inputs and outputs by task kind (funnel_tf/export.py's serving modules).
_SIGNATURES = {
    ("classification", False): ("text [N] string", "logits [N, C], probabilities [N, C], label_id [N], label [N]"),
    ("classification", True): ("text_a [N] string, text_b [N] string",
                               "logits [N, C], probabilities [N, C], label_id [N], label [N]"),
    ("regression", False): ("text [N] string", "score [N]"),
    ("regression", True): ("text_a [N] string, text_b [N] string", "score [N]"),
    ("question_answering", False): ("question [N] string, context [N] string",
                                    "answer [N], answer_start / answer_end [N] (byte offsets), start_logit, "
                                    "end_logit, null_odds, has_answer [N]"),
    ("multiple_choice", False): ("article [N] string, question [N] string, options [N, 4] string",
                                 "logits [N, 4], probabilities [N, 4], answer_id [N], answer [N]"),
}


class ServingError(UserError, OSError):
    """A folder that is not a loadable funnel_tf SavedModel; says what is missing and what to install."""


def load(export_dir: str):
    """`tf.saved_model.load(export_dir)` after registering tensorflow-text's ops.

    Call `loaded.signatures["serving_default"](text=tf.constant([...]))` (inputs per task: see the
    folder's README.txt) or `loaded.serve(...)`.

    Args:
        export_dir: a folder written by `finetune.py --export_dir` or `FunnelTextClassifier.export`.

    Returns:
        The loaded SavedModel; a ServingError (a UserError) when the folder is not one, or when
        tensorflow-text is missing or of another TensorFlow version.
    """
    try:
        import tensorflow_text  # noqa: F401  (registers the TFText>... ops the graph uses)
    except ImportError as e:
        raise ServingError(f"{export_dir}: loading needs tensorflow-text (same minor version as "
                           f"TensorFlow): pip install 'tensorflow-text=={_tf_minor()}.*' ({e})") from None
    import tensorflow as tf

    if not any(tf.io.gfile.exists(os.path.join(export_dir, n)) for n in ("saved_model.pb", "saved_model.pbtxt")):
        raise ServingError(f"{export_dir}: not a SavedModel (no saved_model.pb); pass the folder written by "
                           f"finetune.py --export_dir or FunnelTextClassifier.export")
    try:
        return tf.saved_model.load(export_dir)
    except (tf.errors.NotFoundError, ValueError) as e:
        if "Op type not registered" in str(e):
            raise ServingError(f"{export_dir}: this TensorFlow / tensorflow-text cannot run the exported graph "
                               f"({str(e).splitlines()[0]}); install tensorflow-text of the TensorFlow version "
                               f"it was exported with") from None
        raise


def _tf_minor() -> str:
    try:
        import tensorflow as tf

        return ".".join(tf.__version__.split(".")[:2])
    except ImportError:  # pragma: no cover
        return "<your TensorFlow version>"


def readme_text(info: dict) -> str:
    """How to load and call an export described by `info` (its task.json)."""
    kind = info.get("kind", "classification")
    inputs, outputs = _SIGNATURES.get((kind, bool(info.get("pair", False))), ("see the signature", "-"))
    example_input = inputs.split(" [")[0] if kind in ("classification", "regression") and not info.get("pair") \
        else None
    call = (f'out = loaded.signatures["serving_default"]({example_input}=tf.constant(["some text"]))'
            if example_input else 'out = loaded.signatures["serving_default"](**inputs)  # see below')
    labels = [str(n) for n in info.get("label_names") or []]
    return "\n".join([
        "funnel-tf SavedModel: raw text in, predictions out (tokenization is inside the graph).",
        f"task: {kind}; max_seq_length: {info.get('max_seq_length')}"
        + (f"; labels: {labels}" if labels else ""),
        "",
        "Load it with TensorFlow + tensorflow-text of the same minor version. tensorflow_text must be",
        "imported before loading, or TensorFlow fails with \"Op type not registered 'TFText>...'\":",
        "",
        "    import tensorflow as tf",
        "    import tensorflow_text  # noqa: F401  (registers the tokenizer ops)",
        "    loaded = tf.saved_model.load(\"path/to/this/folder\")",
        f"    {call}",
        "",
        "or, with funnel_tf installed (it does the import for you):",
        "",
        "    from funnel_tf import serving",
        "    loaded = serving.load(\"path/to/this/folder\")",
        "",
        f"serving_default inputs:  {inputs}",
        f"serving_default outputs: {outputs}",
        "The task description is in assets.extra/task.json.",
        "",
    ])


def write_readme(directory: str, info: dict) -> str:
    """Write README.txt (how to load this export) into `directory`; returns its path."""
    import tensorflow as tf

    path = os.path.join(directory, README_NAME)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(readme_text(info))
    return path


__all__ = ["load", "ServingError", "readme_text", "write_readme", "README_NAME"]
