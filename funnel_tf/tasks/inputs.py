"""What a task reads, as the typed specs `Task.build_inputs(spec, input_context)` takes (Model
Garden's `build_inputs(params, input_context)`): a pretraining run's planned records, or one split
of a finetuning task; and the records reader the pretraining tasks (MLM, ELECTRA) share.

A run plans its input (pretraining/inputs.py turns text into records and checks them; the
finetuning runner parses a split and, on TPU, caches its features as records) and hands the task a
spec; the task turns the spec into the `tf.data.Dataset` the engines consume.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Tuple

from funnel_tf.tasks.defaults import Hparams


@dataclasses.dataclass(frozen=True)
class PretrainingInputSpec:
    """Planned pretraining records and how to batch and mask them (pretraining/inputs.py makes
    it). Batches are per replica of the reading pipeline; the order and the masks are a pure
    function of `seed`, so `start_batch=k` gives batches k, k+1, ... of the stream from 0."""

    files: Tuple[str, ...]          # record files (text/pretraining.py layout + manifest)
    seq_len: int
    global_batch_size: int
    masker: Callable                # a text.masking.MlmMasker (or any batch -> batch function)
    seed: int = 0
    deterministic: bool = True      # fixed element order (a replayed resume needs it)
    start_batch: int = 0            # this pipeline's first batch (a resume starts there)


@dataclasses.dataclass(frozen=True)
class FinetuningInputSpec:
    """One split of a finetuning task. Training (`training=True`): the parsed `examples`
    shuffled with `seed`, repeated, batched per replica (`hp.batch_size` global), read from
    `records` (a text.feature_records.RecordSource of the same rows) when given. Evaluation: the
    ordered rows of `prepared` (the split's `EvalData` from `task.eval_data`, which also holds what
    the metrics need), or, without it, of one made from `examples`."""

    examples: Any = None            # TextExamples, SquadData or RaceExamples
    tokenizer: Any = None
    hp: Optional[Hparams] = None
    training: bool = True
    seed: int = 0
    records: Any = None
    prepared: Any = None            # evaluation only: the split's EvalData

    def __post_init__(self):
        if self.training and self.prepared is not None:
            raise ValueError("a training spec reads its examples; `prepared` is an eval split's")
        if (self.training or self.prepared is None) and (
                self.examples is None or self.tokenizer is None or self.hp is None):
            raise ValueError("a finetuning input spec needs examples, tokenizer and hp "
                             "(or, for evaluation, the prepared EvalData)")


class PretrainingInputs:
    """`build_inputs` of the pretraining tasks (mixed into MaskedLMTask and ElectraTask): their
    features are the same masked records (tasks/mlm.py PRETRAINING_FEATURES)."""

    def build_inputs(self, spec: PretrainingInputSpec, input_context=None):
        """Batches of this input pipeline (`input_context`: files sharded by pipeline id, batches
        per replica; None: one pipeline of global batches), masked with a stateless key of
        (seed, pipeline id, batch index), from the pipeline's batch `spec.start_batch` on.
        [batch, seq] int32 ids / mask / types, [batch, num_predict] positions / ids / weights."""
        if not isinstance(spec, PretrainingInputSpec):
            raise TypeError(f"{type(self).__name__} reads a PretrainingInputSpec, got "
                            f"{type(spec).__name__}")
        from funnel_tf.text import pretraining_reader

        return pretraining_reader.make_pretraining_dataset(
            list(spec.files), spec.seq_len, spec.global_batch_size, input_context=input_context,
            seed=spec.seed, masker=spec.masker, start_batch=spec.start_batch,
            deterministic=spec.deterministic)


__all__ = ["PretrainingInputSpec", "FinetuningInputSpec", "PretrainingInputs"]
