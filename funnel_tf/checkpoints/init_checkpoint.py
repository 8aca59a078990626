"""The one route by which a fresh run loads `--init_checkpoint`, for pretraining and finetuning alike.

Accepted, whatever the run (see resolver.py for the kinds): a finetuning model_dir (its best/
model), a pretraining run or another TF training checkpoint of ours (the backbone by variable
path), a Keras `*.weights.h5` file, or a checkpoint folder in any format `load_model` reads (ours,
a HuggingFace folder, the original release). Folders holding a model are built by the format's
loader and copied by name into the run's head model: its backbone (and decoder, when both have
one) always, head variables where the checkpoint has them; head variables it lacks keep their fresh
initialisation. Everything raises `CheckpointError` (a UserError) naming the tensors, before any is
assigned.
"""

from __future__ import annotations

from typing import Mapping, Optional, Union

import keras

from funnel_tf.checkpoints import training
from funnel_tf.checkpoints.errors import HEAD, CheckpointError
from funnel_tf.checkpoints.resolver import Resolved, resolve


def owner_of(backbone: keras.Model, models: Optional[Mapping[str, keras.Model]]) -> keras.Model:
    """The model among `models` whose backbone is `backbone` (the one a checkpoint's head fits),
    else the backbone itself."""
    for model in (models or {}).values():
        if getattr(model, "funnel", None) is backbone:
            return model
    return backbone


def load_init_checkpoint(backbone: keras.Model, init: Union[Resolved, str],
                         models: Optional[Mapping[str, keras.Model]] = None) -> str:
    """Initialise a freshly built run from `init` (resolved once by the run; a path is resolved
    here); returns a one-line description of what loaded.

    backbone: the run's FunnelModel / FunnelBaseModel; models: the run's named models (a
    pretraining task's, or {"model": task_model} when finetuning), among which the owner of
    `backbone` receives the checkpoint's head where it has one.
    """
    from funnel_tf.checkpoints.native import copy_weights

    if not isinstance(init, Resolved):
        init = resolve(init)
    if not init.holds_model or init.kind == "pretraining_run":
        return training.warm_start(backbone, init.path, models)
    target = owner_of(backbone, models)
    try:
        source = init.load()
        report = copy_weights(source, target, allow_missing=[HEAD], source=init.path)
    except (CheckpointError, ValueError) as e:
        raise CheckpointError(f"{init.path} ({init.format} checkpoint) does not fit the "
                              f"{type(target).__name__} built from this config:\n{e}") from None
    del source
    return f"{init.format} checkpoint {init.path}: " + report.summary()


__all__ = ["owner_of", "load_init_checkpoint"]
