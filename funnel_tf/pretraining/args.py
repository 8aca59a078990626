"""`PretrainArgs`: everything a pretraining run takes, one field per pretrain.py flag.

Each field declares its flag (help, choices; `funnel_tf.flags_from_args` turns them into absl
flags and back), so the flag is written once, beside the value the run reads. No TensorFlow here:
`pretrain.py --help` and flag errors stay fast.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional

from funnel_tf.flags_from_args import ENGINE_FLAGS, INIT_CHECKPOINT_HELP, flag
from funnel_tf.pretraining.defaults import DEMO_DEFAULTS, RUN_DEFAULTS

OBJECTIVES = ("mlm", "electra")
MASKING = ("single_token", "word_span")


def _both(name: str) -> str:
    return f"(demo: {DEMO_DEFAULTS[name]}; run: {RUN_DEFAULTS[name]})"


def _f(default, help_text: str, **kwargs):
    return dataclasses.field(default=default, metadata=flag(help_text, **kwargs))


@dataclasses.dataclass
class PretrainArgs:
    """Everything a pretraining run needs, as plain values (pretrain.py's flags map 1:1).

    Fields left None take DEMO_DEFAULTS without train_data and RUN_DEFAULTS with it."""

    train_data: Optional[List[str]] = _f(  # globs; None = the shipped demo corpus
        None, "Training data, comma-separated globs: TFRecords from `python -m funnel_tf.text "
        "create-pretraining-data`, or plain-text files (one sentence per line, blank line between "
        "documents) turned into records once in <model_dir>/data (made again when the text, vocab "
        "or settings change). Unset: the demo corpus data/demo_corpus.txt.")
    model_dir: Optional[str] = _f(  # None only for the demo (a fresh temp dir)
        None, "Where checkpoints (checkpoints/), TensorBoard logs (train/), metrics.jsonl and the "
        "resolved config go; gs:// works on TPU. Reusing a directory resumes training. Required "
        "with --train_data; the demo uses a fresh temporary directory.")
    config: Optional[str] = _f(
        None, "Model config: a name in configs/ (tiny, small, medium, large, ...) or a path to a "
        "JSON config (ours, HF config.json or the original net_config.json). " + _both("config"))
    config_override: List[str] = dataclasses.field(  # "key=json value"
        default_factory=list, metadata=flag(
            "key=value overriding one config field; the value is JSON (e.g. d_model=256, "
            "block_sizes=[2,2,2], hidden_dropout=0.0). Repeatable.", kind="multi_string"))
    objective: Optional[str] = _f(
        None, "mlm: masked LM on the full model (decoder output) at the masked positions. electra: "
        "a 1/4-width generator (sharing the embeddings) fills the masks by Gumbel sampling and the "
        "model learns replaced-token detection; loss = gen MLM + disc_weight x disc. "
        + _both("objective"), choices=OBJECTIVES)
    train_data_format: str = _f("auto", "How to read --train_data; auto looks at file names and "
                                "manifest.json.", choices=("auto", "tfrecord", "text"))
    skip_undecodable_lines: bool = _f(False, "Raw-text input: skip (and count) lines that are not "
                                      "valid UTF-8 instead of stopping with the file and line.")
    fallback_encoding: Optional[str] = _f(
        None, "Raw-text input: decode non-UTF-8 lines with this encoding (e.g. latin-1) instead "
        "of failing or skipping.")
    vocab: Optional[str] = _f(
        None, "WordPiece vocab.txt. Default: the manifest's vocab for records, "
        "data/demo_vocab.txt for the demo. Its size overrides the config's vocab_size.",
        deprecated=("vocab_file",))
    train_steps: Optional[int] = _f(None, f"Total optimizer steps. {_both('train_steps')}")
    batch_size: Optional[int] = _f(  # global
        None, "GLOBAL batch size (split across all replicas); losses are means over the global "
        f"batch. {_both('batch_size')}")
    seq_len: Optional[int] = _f(None, f"Tokens per example. {_both('seq_len')}",
                                deprecated=("max_seq_length",))
    learning_rate: Optional[float] = _f(
        None, "Peak learning rate of the linear warmup / linear decay schedule (decays to 0 at "
        f"train_steps). {_both('learning_rate')}")
    warmup_steps: Optional[int] = _f(None, f"Linear warmup steps. {_both('warmup_steps')}")
    weight_decay: float = _f(0.01, "AdamW decoupled weight decay (never applied to LayerNorm "
                             "parameters or biases). AdamW uses beta1 0.9, beta2 0.99, eps 1e-6.")
    clip_norm: float = _f(1.0, "Clip the global norm of the (cross-replica summed) gradient to "
                          "this; 0 disables.")
    tpu: Optional[str] = dataclasses.field(default=None, metadata=ENGINE_FLAGS["tpu"])
    tpu_zone: Optional[str] = dataclasses.field(default=None, metadata=ENGINE_FLAGS["tpu_zone"])
    gcp_project: Optional[str] = dataclasses.field(default=None, metadata=ENGINE_FLAGS["gcp_project"])
    strategy: Optional[str] = dataclasses.field(default=None, metadata=ENGINE_FLAGS["strategy"])
    precision: str = dataclasses.field(default="auto", metadata=ENGINE_FLAGS["precision"])
    steps_per_loop: Optional[int] = _f(
        None, "Training steps run inside one tf.function call (fewer host round trips; large on "
        f"TPU). {_both('steps_per_loop')}")
    log_every: Optional[int] = _f(
        None, "Steps between progress lines / TensorBoard points (loss, accuracy, lr, steps/s, "
        f"examples/s, tokens/s, ETA). {_both('log_every')}")
    save_every: Optional[int] = _f(None, "Steps between checkpoints (0: only at the end). "
                                   + _both("save_every"))
    keep_checkpoints: int = _f(5, "Newest checkpoints to keep.")
    init_checkpoint: Optional[str] = _f(None, INIT_CHECKPOINT_HELP + " Ignored when model_dir "
                                        "already has a checkpoint (the run resumes from it).")
    masking: str = _f("single_token", "Masking: random single tokens, or the original's "
                      "whole-word spans of 1-5 words.", choices=MASKING)
    num_predict: Optional[int] = _f(None, "Masked positions per example (default: 85 per 512 "
                                    "tokens, scaled with --seq_len).")
    disc_weight: float = _f(50.0, "ELECTRA: weight of the discriminator loss.")
    generator_width: float = _f(0.25, "ELECTRA: generator width as a fraction of the model's "
                                "d_model, n_head and d_inner.")
    jit_compile: str = dataclasses.field(default="auto", metadata=ENGINE_FLAGS["jit_compile"])
    nonfinite: str = dataclasses.field(default="stop", metadata=ENGINE_FLAGS["nonfinite"])
    max_nonfinite: int = _f(100, "With --nonfinite=skip: give up after this many skipped steps.")
    data_resume: str = _f(
        "replay", "Input position on resume. replay: rebuild the input and skip the batches "
        "already consumed (exact with --deterministic_input; costs one pass over them). auto: "
        "checkpoint the tf.data iterator where possible (single device), else replay. restart: "
        "start the input over (cheapest; for very long pod runs).",
        choices=("auto", "replay", "restart"))
    deterministic_input: bool = _f(
        True, "Mask batches sequentially so the input is identical across runs with the same "
        "--seed (exact resume). Turn off for parallel masking when the host CPU is the bottleneck.")
    seed: int = _f(0, "Seed for initialisation, data order, masking and sampling.")
    # Fresh weights: "original" = the original release's truncated normal 0.02 (first MLM loss ~ln V);
    # "hf" = HF PyTorch's rule (~240-350 at the published sizes). Restored or warm-started weights
    # are not affected. See funnel_tf/modeling/initializers.py.
    init_scheme: str = _f(
        "original", "Initialisation of a fresh model: original = the original release's truncated "
        "normal, std 0.02 (first MLM loss ~ln(vocab)); hf = HuggingFace's rule (N(0, 1) "
        "embeddings: first loss ~240+ at the published sizes). Does not touch what "
        "--init_checkpoint or a resume loads.", choices=("original", "hf"))
    backend: Optional[str] = _f(
        None, "Training engine (the Keras backend): tensorflow (tf.distribute strategies) or jax "
        "(data parallel over every JAX device; MLM and ELECTRA). Unset: KERAS_BACKEND, else "
        "tensorflow; when both are set they must agree.", choices=("tensorflow", "jax"))
    flags_text: Optional[str] = None             # pretrain.py's flags, saved as pretrain_flags.txt

    @property
    def demo(self) -> bool:
        return self.train_data is None

    def with_defaults(self) -> "PretrainArgs":
        """A copy with every unset (None) setting filled from DEMO_DEFAULTS / RUN_DEFAULTS."""
        table = DEMO_DEFAULTS if self.demo else RUN_DEFAULTS
        filled = {k: v for k, v in table.items() if getattr(self, k) is None}
        if "strategy" in filled and self.tpu:
            filled["strategy"] = "tpu"
        return dataclasses.replace(self, **filled)


__all__ = ["PretrainArgs", "OBJECTIVES", "MASKING"]
