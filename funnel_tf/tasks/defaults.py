"""Per-task finetuning hyper-parameters, from the Funnel-Transformer repo's recipes.

Sources (see `/work/shared/reference/original_funnel_transformer.md` §4): the PyTorch README table
(RTE, MRPC, CoLA, SST-2, QNLI, MNLI, QQP), the TF README (CoLA 5350 steps / 535 warmup; IMDB
seq 512, bsz 32, 4000 steps / 400 warmup; RACE bsz 16, lr 2e-5, 24000 steps / 2400 warmup) and
`scripts/tpu_squad.sh` (bsz 48, lr 3e-5, layer-wise decay 0.75, 8000 steps / 1000 warmup). All
recipes warm up linearly for 10% of training, then decay linearly to 0; AdamW(0.9, 0.99, 1e-6),
clip 1.0, weight decay 0.01 (the PyTorch finetuner's value). `source` says where each row comes
from; rows marked "assumed" have no recipe in the repo and reuse the nearest task's.
Every field is overridable from `finetune.py` flags (`Hparams.replace`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from funnel_tf.tasks.errors import TaskError


@dataclasses.dataclass(frozen=True)
class Hparams:
    """One finetuning recipe. Exactly one of `epochs` / `train_steps` sets the training length."""

    batch_size: int = 32
    learning_rate: float = 2e-5
    epochs: Optional[float] = 3.0
    train_steps: Optional[int] = None
    warmup_ratio: float = 0.1
    warmup_steps: Optional[int] = None      # overrides warmup_ratio when set
    layer_decay: float = 1.0                # layer-wise LR decay (1.0 = off)
    weight_decay: float = 0.01
    max_seq_length: int = 128
    eval_batch_size: Optional[int] = None   # None = batch_size
    # SQuAD
    doc_stride: int = 128
    max_query_length: int = 64
    max_answer_length: int = 64
    n_best: int = 5
    # RACE
    max_qa_length: int = 128
    source: str = ""

    def replace(self, **overrides) -> "Hparams":
        """A copy with every non-None override applied (flags left unset stay at the default).

        Setting `epochs` clears `train_steps` and vice versa, so a flag always wins over the
        recipe's other way of stating the length."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if "epochs" in overrides:
            overrides.setdefault("train_steps", None)
        elif "train_steps" in overrides:
            overrides["epochs"] = None
        out = dataclasses.replace(self, **overrides)
        out.validate()
        return out

    def validate(self) -> None:
        """TaskError naming the first field out of range (each field is a finetune.py flag)."""
        def bad(name, want):
            raise TaskError(f"--{name} must be {want}, got {getattr(self, name)}")

        def finite(x):
            return x is not None and math.isfinite(x)

        if self.batch_size < 1:
            bad("batch_size", ">= 1")
        if self.eval_batch_size is not None and self.eval_batch_size < 1:
            bad("eval_batch_size", ">= 1")
        if not (finite(self.learning_rate) and self.learning_rate > 0):
            bad("learning_rate", "a finite number > 0")
        if (self.epochs is None) == (self.train_steps is None):
            raise TaskError("set exactly one of --epochs / --train_steps")
        if self.epochs is not None and not (finite(self.epochs) and self.epochs > 0):
            bad("epochs", "a finite number > 0")
        if self.train_steps is not None and self.train_steps < 1:
            bad("train_steps", ">= 1")
        if not (finite(self.warmup_ratio) and 0.0 <= self.warmup_ratio < 1.0):
            bad("warmup_ratio", "in [0, 1)")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            bad("warmup_steps", ">= 0")
        if not (finite(self.layer_decay) and 0.0 < self.layer_decay <= 1.0):
            bad("layer_decay", "in (0, 1]")
        if not (finite(self.weight_decay) and self.weight_decay >= 0):
            bad("weight_decay", "a finite number >= 0")
        if self.max_seq_length < 8:
            bad("max_seq_length", ">= 8")
        for name in ("doc_stride", "max_query_length", "max_answer_length", "n_best",
                     "max_qa_length"):
            if getattr(self, name) < 1:
                bad(name, ">= 1")

    def check_for_task(self, key: str) -> None:
        """TaskError for lengths that cannot fit the task family's inputs (`key`, a DEFAULTS key):
        a SQuAD window keeps the question and at least one paragraph token, a RACE row the
        question+option and one passage token (3 special tokens each)."""
        room = self.max_seq_length - 4
        for family, name, what in (("squad", "max_query_length", "paragraph"),
                                   ("race", "max_qa_length", "passage")):
            if key == family and getattr(self, name) > room:
                raise TaskError(f"--{name}={getattr(self, name)} must be at most --max_seq_length "
                                f"- 4 = {room} so each sequence keeps a {what} token; lower "
                                f"--{name} or raise --max_seq_length")

    @property
    def global_eval_batch_size(self) -> int:
        return self.eval_batch_size or self.batch_size

    def total_steps(self, num_train_examples: int) -> int:
        """Training steps: `train_steps`, or ceil(epochs * examples / batch) (at least 1)."""
        if self.train_steps is not None:
            return int(self.train_steps)
        return max(1, int(math.ceil(self.epochs * num_train_examples / self.batch_size)))

    def steps_per_epoch(self, num_train_examples: int) -> int:
        return max(1, num_train_examples // self.batch_size)

    def num_warmup_steps(self, total_steps: int) -> int:
        if self.warmup_steps is not None:
            return min(int(self.warmup_steps), total_steps)
        return int(round(self.warmup_ratio * total_steps))


_GLUE_SMALL = dict(batch_size=16, epochs=10.0, max_seq_length=128)
_WEB = dict(batch_size=32, learning_rate=1e-5, max_seq_length=512)

DEFAULTS = {
    # GLUE (pytorch/README unless noted)
    "cola": Hparams(learning_rate=1e-5, **_GLUE_SMALL, source="pytorch/README + TF README"),
    "sst-2": Hparams(learning_rate=1e-5, **_GLUE_SMALL, source="pytorch/README"),
    "mrpc": Hparams(learning_rate=2e-5, **_GLUE_SMALL, source="pytorch/README (1e-5..3e-5)"),
    "rte": Hparams(learning_rate=2e-5, **_GLUE_SMALL, source="pytorch/README (1e-5, 2e-5)"),
    "sts-b": Hparams(learning_rate=2e-5, **_GLUE_SMALL, source="assumed: as MRPC/RTE"),
    "wnli": Hparams(learning_rate=1e-5, **_GLUE_SMALL, source="assumed: as SST-2"),
    "qnli": Hparams(batch_size=32, epochs=3.0, learning_rate=2e-5, source="pytorch/README"),
    "mnli": Hparams(batch_size=64, epochs=3.0, learning_rate=1e-5, source="pytorch/README"),
    "qqp": Hparams(batch_size=64, epochs=5.0, learning_rate=2e-5, source="pytorch/README"),
    "ax": Hparams(batch_size=64, epochs=3.0, learning_rate=1e-5,
                  source="predict-only (MNLI model)"),
    # Text classification
    "imdb": Hparams(epochs=None, train_steps=4000, warmup_steps=400, **_WEB,
                    source="TF README (seq 512, 4000 steps, 400 warmup)"),
    "ag_news": Hparams(epochs=3.0, **_WEB, source="assumed: IMDB recipe, 3 epochs"),
    "dbpedia": Hparams(epochs=2.0, **_WEB, source="assumed: IMDB recipe, 2 epochs"),
    "yelp2": Hparams(epochs=2.0, **_WEB, source="assumed: IMDB recipe, 2 epochs"),
    "yelp5": Hparams(epochs=2.0, **_WEB, source="assumed: IMDB recipe, 2 epochs"),
    "amazon2": Hparams(epochs=1.0, **_WEB, source="assumed: IMDB recipe, 1 epoch"),
    "amazon5": Hparams(epochs=1.0, **_WEB, source="assumed: IMDB recipe, 1 epoch"),
    "csv": Hparams(batch_size=32, epochs=3.0, learning_rate=2e-5, source="generic default"),
    # Reading comprehension
    "squad": Hparams(batch_size=48, learning_rate=3e-5, epochs=None, train_steps=8000,
                     warmup_steps=1000, layer_decay=0.75, max_seq_length=512,
                     source="tensorflow/scripts/tpu_squad.sh"),
    # The repo gives no layer-wise decay for RACE (its flag defaults to 1.0, as XLNet's RACE
    # recipe); the README recipe is bsz 16, lr 2e-5, 24000 steps, 2400 warmup.
    "race": Hparams(batch_size=16, learning_rate=2e-5, epochs=None, train_steps=24000,
                    warmup_steps=2400, layer_decay=1.0, max_seq_length=512,
                    source="TF README (RACE)"),
}


def default_hparams(key: str) -> Hparams:
    """The recipe for a task family key (see DEFAULTS); KeyError lists the known keys."""
    if key not in DEFAULTS:
        raise KeyError(f"no finetuning defaults for {key!r}; known: {sorted(DEFAULTS)}")
    return DEFAULTS[key]
