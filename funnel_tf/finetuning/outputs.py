"""Where a finetuning run writes, checked before it writes anything: the export folder must not
overlap the run's folder, its predictions or any input, and an existing one may only be replaced
when it is a SavedModel (so `--overwrite_export` can never delete a run, data or a checkpoint)."""

from __future__ import annotations

from typing import Iterable, Optional, Tuple

import tensorflow as tf

from funnel_tf import storage
from funnel_tf.tasks.errors import TaskError
from funnel_tf.engine.output_paths import check_output_dir


def check_output_dirs(model_dir: str, export_dir: Optional[str] = None,
                      predictions_dir: Optional[str] = None, overwrite_export: bool = False,
                      inputs: Iterable[Tuple[str, Optional[str]]] = ()) -> None:
    """TaskError / ExportError / OutputPathError for an output folder that cannot be made (a file
    at or above it, a name too long, a read-only parent), and for an
    export_dir that overlaps model_dir or predictions_dir (the same folder or one inside the
    other), that holds one of `inputs` ((flag, path) pairs), or that exists and may not be
    replaced (see `export.check_export_dir`)."""
    for flag, path in (("--model_dir", model_dir), ("--predictions_dir", predictions_dir)):
        if path and tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path):
            raise TaskError(f"{flag} {path} is a file, not a folder")
    for flag, path in (("--model_dir", model_dir), ("--predictions_dir", predictions_dir),
                       ("--export_dir", export_dir)):
        check_output_dir(flag, path)  # a file above it, a name too long, a read-only parent
    if not export_dir:
        return
    for flag, other in (("--model_dir", model_dir), ("--predictions_dir", predictions_dir)):
        if other and storage.overlap(export_dir, other):
            raise TaskError(f"--export_dir {export_dir} and {flag} {other} overlap (the same "
                            f"folder or one inside the other); give the export a folder of its "
                            f"own")
    for flag, path in inputs:
        if path and storage.contains(export_dir, path):
            raise TaskError(f"--export_dir {export_dir} holds {flag} {path}; give the export a "
                            f"folder of its own")
    from funnel_tf.export import check_export_dir

    check_export_dir(export_dir, overwrite_export)
