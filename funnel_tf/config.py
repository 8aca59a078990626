"""FunnelConfig: the typed model configuration, with readers for HF `config.json` and the original
release's `net_config.json`.

Field names follow HuggingFace's `FunnelConfig` wherever the concept is the same, so an HF
`config.json` loads as is. A few fields exist only to reproduce the original TF1 release
(`d_embed`, `always_mask_cls`, `mlm_transform`); their defaults give HF's behaviour.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from typing import Any, Dict, List, Optional, Sequence

from funnel_tf.errors import UserError

# Activations the model supports; "gelu_new" is the tanh approximation that every release uses.
SUPPORTED_ACTIVATIONS = ("gelu_new", "gelu", "relu", "tanh", "swish", "silu")
# Weight initialisation schemes (`init_scheme`): HF PyTorch's rule, or the original release's.
INIT_SCHEMES = ("hf", "original")
_HF_ATTRIBUTE_MAP = {"hidden_size": "d_model", "num_attention_heads": "n_head"}
# Keys present in published configs that carry no meaning for the model (HF bookkeeping).
_IGNORED_HF_KEYS = {
    "architectures", "model_type", "transformers_version", "max_position_embeddings",
    "type_vocab_size", "rel_attn_type", "_name_or_path", "torch_dtype", "dtype", "id2label",
    "label2id", "num_hidden_layers", "num_blocks", "problem_type", "return_dict",
    "output_hidden_states", "output_attentions", "use_cache", "bos_token_id", "eos_token_id",
    "sep_token_id", "cls_token_id", "finetuning_task", "tokenizer_class",
}


class ConfigError(UserError, ValueError):
    """A configuration that cannot build a working model; the message says why."""


def _type_ok(value: Any, kind: str) -> bool:
    """Does a JSON-ish value fit a field annotated `kind` ("int", "Optional[List[int]]", ...)?"""
    if kind.startswith("Optional["):
        return value is None or _type_ok(value, kind[len("Optional["):-1])
    if kind == "List[int]":
        return isinstance(value, (list, tuple)) and all(_type_ok(v, "int") for v in value)
    if kind == "int":  # 768, np.int64(768) and 768.0 are fine; 768.5, "768" and True are not
        return (isinstance(value, numbers.Integral) and not isinstance(value, bool)) or (
            isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value) and float(value).is_integer())
    if kind == "float":
        return isinstance(value, numbers.Real) and not isinstance(value, bool) \
            and math.isfinite(value)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    return True  # pragma: no cover  (a new annotation kind: add it above)


_KIND_WORDS = {"int": "an integer", "float": "a finite number", "bool": "true or false",
               "str": "a string", "List[int]": "a list of integers"}


def _check_field_types(config: "FunnelConfig") -> None:
    """ConfigError naming the first field whose value has the wrong type (e.g. d_model="big")."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        kind = str(f.type)
        if not _type_ok(value, kind):
            base = kind[len("Optional["):-1] if kind.startswith("Optional[") else kind
            words = _KIND_WORDS.get(base, base) + (" or null" if base != kind else "")
            raise ConfigError(f"FunnelConfig: {f.name} must be {words}, got {value!r} "
                              f"({type(value).__name__})")
        if kind in ("int", "Optional[int]") and value is not None and type(value) is not int:
            setattr(config, f.name, int(value))  # 768.0 / np.int64 -> a plain int (JSON-able)
        elif kind in ("float", "Optional[float]") and value is not None \
                and type(value) is not float:
            setattr(config, f.name, float(value))


@dataclasses.dataclass
class FunnelConfig:
    """Hyper-parameters of a Funnel-Transformer, with HuggingFace's field names.

    Checked on construction: a value of the wrong type or out of range is a `ConfigError` (a
    `UserError`) naming the field. Read one from a file with `load_config` or `from_json_file`.

    Args:
        vocab_size: tokens in the vocab (the embedding table's rows).
        block_sizes: encoder layers per block; the sequence is pooled (halved) between blocks.
        block_repeats: times each block's layers are applied with shared weights (default 1 each).
        num_decoder_layers: layers of the upsampling decoder (FunnelModel and token-level heads).
        decoder_repeats: times each decoder layer is applied with shared weights.
        d_model: hidden width; d_model = n_head * d_head in the published models.
        n_head: attention heads.
        d_head: width of each attention head.
        d_inner: width of the feed-forward layer.
        hidden_act: feed-forward activation, one of `SUPPORTED_ACTIVATIONS`.
        hidden_dropout: dropout on embeddings and residual branches, in [0, 1).
        attention_dropout: dropout on attention probabilities, in [0, 1).
        activation_dropout: dropout after the feed-forward activation, in [0, 1).
        initializer_range: uniform-init range of the relative attention biases (HF's rule).
        initializer_std: std of the weight matrices' normal init (None: HF's fan-in rule, or
            0.02 with init_scheme="original").
        init_scheme: "hf" or "original": how a model that loads no checkpoint draws its weights.
        layer_norm_eps: LayerNorm epsilon.
        pooling_type: "mean" or "max" pooling between blocks.
        attention_type: "relative_shift" (fast, TPU friendly) or "factorized" position attention.
        separate_cls: keep the CLS token out of pooling.
        truncate_seq: drop the last token before pooling when separate_cls (keeps lengths even).
        pool_q_only: pool only the queries of each block's first layer (keys/values full length).
        pad_token_id: HF bookkeeping, kept for HF export; the model reads the attention mask.
        tie_word_embeddings: HF's flag, kept for HF export: the MLM head always projects with the
            input embedding table (an HF checkpoint with a separate lm_head is refused).
        d_embed: embedding width when it differs from d_model (original release); None = d_model.
        always_mask_cls: zero the CLS row/column of the position terms without separate_cls too.
        mlm_transform: dense -> activation -> LayerNorm before the MLM projection (original release).
        mask_pooling: "min" (HF) or "max" (original release) pooling of the attention mask.

    Example:

    >>> from funnel_tf import FunnelConfig
    >>> config = FunnelConfig(vocab_size=100, block_sizes=[1, 1], num_decoder_layers=1,
    ...                       d_model=32, n_head=2, d_head=16, d_inner=64)
    >>> config.num_hidden_layers
    2
    >>> config.pooled_lengths(16)  # the sequence length each block sees
    [16, 8]
    >>> FunnelConfig.from_dict(config.to_dict()) == config  # JSON-able, round trips
    True
    >>> config.replace(d_model=48, n_head=3).d_model
    48
    >>> FunnelConfig(d_model="big")
    Traceback (most recent call last):
    ...
    funnel_tf.config.ConfigError: FunnelConfig: d_model must be an integer, got 'big' (str)
    """

    vocab_size: int = 30522
    block_sizes: List[int] = dataclasses.field(default_factory=lambda: [4, 4, 4])
    block_repeats: Optional[List[int]] = None
    num_decoder_layers: int = 2
    # Each decoder layer is applied this many times in a row with shared weights (the original's
    # decoder_size "1x2"); HF has no such option, so it is 1 for every HF checkpoint.
    decoder_repeats: int = 1
    d_model: int = 768
    n_head: int = 12
    d_head: int = 64
    d_inner: int = 3072
    hidden_act: str = "gelu_new"
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    initializer_range: float = 0.1
    initializer_std: Optional[float] = None
    # How a fresh model draws its weights (see funnel_tf/modeling/initializers.py): "hf" is HF
    # PyTorch's rule (what HF builds before loading weights into it); "original" is the original
    # release's pretraining initialisation, truncated normal with std initializer_std (0.02 when
    # unset) for every weight matrix. It only matters where no checkpoint is loaded.
    init_scheme: str = "hf"
    layer_norm_eps: float = 1e-9
    pooling_type: str = "mean"
    attention_type: str = "relative_shift"
    separate_cls: bool = True
    truncate_seq: bool = True
    pool_q_only: bool = True
    pad_token_id: Optional[int] = None
    tie_word_embeddings: bool = True
    # --- original-release compatibility (defaults = HF behaviour) ---
    # Width of the word embedding; None means d_model. When it differs, the encoder projects
    # embeddings to d_model first (the original's `encoder/input_projection`).
    d_embed: Optional[int] = None
    # The original zeroes the CLS row/column of the positional and segment terms even when
    # separate_cls is off; HF only does so with separate_cls.
    always_mask_cls: bool = False
    # The original MLM head applies dense -> gelu -> LayerNorm before the tied projection (`lm_proj`);
    # HF's FunnelForMaskedLM projects the hidden state directly.
    mlm_transform: bool = False
    # How the key mask is pooled between blocks: "min" keeps a pooled slot only if every member is a
    # real token (HF); "max" keeps it if any member is (the original release min-pools its 1 = pad mask).
    mask_pooling: str = "min"

    def __post_init__(self):
        _check_field_types(self)
        self.block_sizes = [int(b) for b in self.block_sizes]
        if self.block_repeats is None:
            self.block_repeats = [1] * len(self.block_sizes)
        self.block_repeats = [int(r) for r in self.block_repeats]
        self.validate()
        self.validate_init()

    # ------------------------------------------------------------------ derived
    @property
    def num_blocks(self) -> int:
        return len(self.block_sizes)

    @property
    def num_hidden_layers(self) -> int:
        """Parameterised encoder layers (HF's definition)."""
        return sum(self.block_sizes)

    @property
    def embedding_size(self) -> int:
        return self.d_embed or self.d_model

    @property
    def upsample_stride(self) -> int:
        return 2 ** (self.num_blocks - 1)

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        def fail(msg):
            raise ConfigError(f"FunnelConfig: {msg}")

        if not self.block_sizes or any(b < 1 for b in self.block_sizes):
            fail(f"block_sizes must be a non-empty list of positive ints, got {self.block_sizes}")
        if len(self.block_repeats) != len(self.block_sizes):
            fail(f"block_repeats {self.block_repeats} must have one entry per block "
                 f"(block_sizes {self.block_sizes})")
        if any(r < 1 for r in self.block_repeats):
            fail(f"block_repeats must be positive, got {self.block_repeats}")
        for name in ("vocab_size", "d_model", "n_head", "d_head", "d_inner"):
            if int(getattr(self, name)) < 1:
                fail(f"{name} must be positive, got {getattr(self, name)}")
        if self.d_model % 2:
            fail(f"d_model must be even (sin/cos position features), got {self.d_model}")
        if self.decoder_repeats < 1:
            fail(f"decoder_repeats must be >= 1, got {self.decoder_repeats}")
        if self.num_decoder_layers < 0:
            fail(f"num_decoder_layers must be >= 0, got {self.num_decoder_layers}")
        if self.pooling_type not in ("mean", "max"):
            fail(f"pooling_type must be 'mean' or 'max', got {self.pooling_type!r}")
        if self.attention_type not in ("relative_shift", "factorized"):
            fail(f"attention_type must be 'relative_shift' or 'factorized', got {self.attention_type!r}")
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            fail(f"hidden_act {self.hidden_act!r} not supported; choose one of {SUPPORTED_ACTIVATIONS}")
        for name in ("hidden_dropout", "attention_dropout", "activation_dropout"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                fail(f"{name} must be in [0, 1), got {v}")
        if self.layer_norm_eps <= 0:
            fail(f"layer_norm_eps must be positive, got {self.layer_norm_eps}")
        if self.mask_pooling not in ("min", "max"):
            fail(f"mask_pooling must be 'min' (HF) or 'max' (original release), got {self.mask_pooling!r}")
        if self.d_embed is not None and self.d_embed < 1:
            fail(f"d_embed must be positive or null, got {self.d_embed}")

    def validate_init(self) -> None:
        """The initialisation fields: a known scheme and a positive std (or none)."""
        if self.init_scheme not in INIT_SCHEMES:
            raise ConfigError(f"FunnelConfig: init_scheme must be one of {list(INIT_SCHEMES)} "
                              f"('original' for pretraining from scratch), got {self.init_scheme!r}")
        if self.initializer_std is not None and not self.initializer_std > 0:
            raise ConfigError(f"FunnelConfig: initializer_std must be positive or null, "
                              f"got {self.initializer_std}")
        if not self.initializer_range > 0:
            raise ConfigError(f"FunnelConfig: initializer_range must be positive, "
                              f"got {self.initializer_range}")

    def pooled_lengths(self, seq_len: int) -> List[int]:
        """Sequence length seen by each block for an input of `seq_len` tokens."""
        lengths = [int(seq_len)]
        for _ in range(1, self.num_blocks):
            t = lengths[-1]
            if self.separate_cls and not self.truncate_seq:
                t = t + 1
            lengths.append(math.ceil(t / 2))
        return lengths

    def check_seq_len(self, seq_len: int) -> None:
        """Raise ConfigError if `seq_len` cannot be pooled by every block.

        Every block after the first must pool; with separate_cls a sequence of 2 or fewer tokens
        (CLS + one) cannot be pooled, without it a single token cannot.
        """
        minimum = 3 if self.separate_cls else 2
        if seq_len < 1:
            raise ConfigError(f"sequence length must be positive, got {seq_len}")
        lengths = self.pooled_lengths(seq_len)
        for b in range(1, self.num_blocks):
            if lengths[b - 1] < minimum:
                need = self.min_seq_len()
                raise ConfigError(
                    f"sequence length {seq_len} is too short for {self.num_blocks} blocks: block {b} "
                    f"would pool a length-{lengths[b - 1]} sequence (needs >= {minimum}); "
                    f"use seq_len >= {need}")

    def min_seq_len(self) -> int:
        for n in range(1, 1 << 16):
            lengths = self.pooled_lengths(n)
            minimum = 3 if self.separate_cls else 2
            if all(lengths[b - 1] >= minimum for b in range(1, self.num_blocks)):
                return n
        raise ConfigError("no usable sequence length")  # pragma: no cover

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model_type"] = "funnel"
        return d

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json_string())

    @classmethod
    def from_dict(cls, d: Dict[str, Any], strict: bool = True) -> "FunnelConfig":
        """Build from our own dict or an HF config dict (HF aliases and bookkeeping keys accepted)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {}
        unknown = []
        for k, v in d.items():
            k = _HF_ATTRIBUTE_MAP.get(k, k)
            if k in fields:
                kwargs[k] = v
            elif k not in _IGNORED_HF_KEYS:
                unknown.append(k)
        if unknown and strict:
            raise ConfigError(f"FunnelConfig: unknown keys {sorted(unknown)}")
        return cls(**kwargs)

    @classmethod
    def from_hf_dict(cls, d: Dict[str, Any]) -> "FunnelConfig":
        """An HF `config.json` dict; keys HF itself would ignore are ignored."""
        if d.get("model_type", "funnel") != "funnel":
            raise ConfigError(f"not a Funnel config: model_type={d.get('model_type')!r}")
        return cls.from_dict(d, strict=False)

    @classmethod
    def from_original_dict(cls, d: Dict[str, Any], truncate_seq: bool = True) -> "FunnelConfig":
        """The original release's `net_config.json` (`block_size: "4_4_4"`, `decoder_size`, ...).

        `truncate_seq` is a runtime flag of the original (default True), not part of its json.
        """
        def parse_blocks(spec: str):
            sizes, repeats = [], []
            for part in str(spec).split("_"):
                if "x" in part:
                    p, r = part.split("x")
                    sizes.append(int(p)); repeats.append(int(r))
                else:
                    sizes.append(int(part)); repeats.append(1)
            return sizes, repeats

        try:
            sizes, repeats = parse_blocks(d["block_size"])
            dec_sizes, dec_repeats = parse_blocks(d.get("decoder_size", "0"))
        except (KeyError, ValueError) as e:
            raise ConfigError(f"bad original net_config block/decoder size: {e}") from e
        if len(set(dec_repeats)) > 1:
            raise ConfigError(f"decoder_size {d.get('decoder_size')!r}: mixed repeat counts are not supported")
        act = d.get("ff_activation", "gelu")
        d_model = int(d["d_model"])
        d_embed = int(d.get("d_embed", d_model))
        return cls(
            vocab_size=int(d["vocab_size"]),
            block_sizes=sizes,
            block_repeats=repeats,
            num_decoder_layers=sum(dec_sizes),
            decoder_repeats=dec_repeats[0] if dec_repeats else 1,
            d_model=d_model,
            n_head=int(d["n_head"]),
            d_head=int(d["d_head"]),
            d_inner=int(d["d_inner"]),
            hidden_act="gelu_new" if act == "gelu" else act,
            hidden_dropout=float(d.get("dropout", 0.1)),
            attention_dropout=float(d.get("dropatt", 0.1)),
            activation_dropout=float(d.get("dropact", 0.0)),
            initializer_range=float(d.get("init_range", 0.1)),
            initializer_std=float(d.get("init_std", 0.02)),
            layer_norm_eps=1e-8,
            pooling_type=d.get("pooling_type", "mean"),
            attention_type="factorized" if d.get("rel_attn_type", "factorized") == "factorized"
            else "relative_shift",
            separate_cls=bool(d.get("separate_cls", True)),
            truncate_seq=truncate_seq,
            pool_q_only=bool(d.get("pool_q_only", True)),
            d_embed=None if d_embed == d_model else d_embed,
            always_mask_cls=True,
            mlm_transform=True,
            mask_pooling="max",
        )

    @classmethod
    def from_json_file(cls, path: str) -> "FunnelConfig":
        """Read our JSON, an HF config.json, or an original net_config.json (detected by keys).

        Every problem is a ConfigError that starts with the file's path."""
        if not os.path.exists(path):
            raise ConfigError(f"config file not found: {path}")
        if os.path.isdir(path):
            raise ConfigError(f"{path}: is a directory, not a config JSON file")
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: invalid JSON ({e})") from e
        except (UnicodeDecodeError, OSError) as e:
            raise ConfigError(f"{path}: cannot read the config ({e})") from e
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: a config must be a JSON object of fields, got a "
                              f"{type(d).__name__}")
        try:
            if "block_size" in d:
                return cls.from_original_dict(d)
            return cls.from_hf_dict(d) if "transformers_version" in d or "architectures" in d \
                else cls.from_dict(d)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from e
        except (KeyError, ValueError, TypeError) as e:  # an original net_config with bad fields
            what = f"missing field {e}" if isinstance(e, KeyError) else str(e)
            raise ConfigError(f"{path}: not a usable config ({what})") from e

    def replace(self, **overrides) -> "FunnelConfig":
        """A copy with `overrides` applied (validated: unknown fields and wrong types are a
        ConfigError naming the field)."""
        fields = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(k for k in overrides if _HF_ATTRIBUTE_MAP.get(k, k) not in fields)
        if unknown:
            import difflib
            near = sorted({m for k in unknown for m in difflib.get_close_matches(k, fields, 3)})
            raise ConfigError(f"FunnelConfig: unknown fields {unknown}"
                              + (f" (did you mean {', '.join(near)}?)" if near else
                                 f"; known fields: {', '.join(sorted(fields))}"))
        return dataclasses.replace(self, **{_HF_ATTRIBUTE_MAP.get(k, k): v
                                            for k, v in overrides.items()})


def load_config(name_or_path: str, configs_dir: Optional[str] = None) -> FunnelConfig:
    """A config by short name from the shipped `configs/` (e.g. "tiny", "small") or by path.

    Args:
        name_or_path: a shipped config's name, or the path of a JSON file: our own, an HF
            `config.json` or the original release's `net_config.json` (told apart by their keys).
        configs_dir: where to look names up instead of the shipped configs.

    Returns:
        The `FunnelConfig`; a `ConfigError` (a `UserError`) for an unknown name or a bad file.

    Example:

    >>> from funnel_tf import load_config
    >>> config = load_config("tiny")
    >>> config.block_sizes, config.d_model
    ([2, 2, 2], 64)
    >>> small = config.replace(vocab_size=100, d_inner=128)  # a validated copy
    >>> load_config("no-such-config")
    Traceback (most recent call last):
    ...
    funnel_tf.config.ConfigError: unknown config 'no-such-config'; not a file and not one of [...]
    """
    if os.path.exists(name_or_path):
        return FunnelConfig.from_json_file(name_or_path)
    if configs_dir is None:  # the checkout's configs/, or the wheel's package data
        from funnel_tf.resources import configs_dir as shipped_configs_dir

        configs_dir = shipped_configs_dir()
    path = os.path.join(configs_dir, f"{name_or_path}.json")
    if not os.path.exists(path):
        known = sorted(p[:-5] for p in os.listdir(configs_dir) if p.endswith(".json")) \
            if os.path.isdir(configs_dir) else []
        raise ConfigError(f"unknown config {name_or_path!r}; not a file and not one of {known}")
    return FunnelConfig.from_json_file(path)
