"""HuggingFace Funnel checkpoints: load a local HF directory into our models, export ours back.

Reads `config.json` plus one weight format, in this order of preference: `model.safetensors`
(or a sharded `model.safetensors.index.json`), `pytorch_model.bin` (or its index; needs torch),
`tf_model.h5` (HF TF 4.x, read with h5py). Every format is first turned into a PyTorch-layout
state dict, then mapped through `hf_names` (the single name map shared with the exporter).
"""

import json
import os
import struct
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from funnel_tf.checkpoints import hf_names
from funnel_tf.checkpoints.assign import LoadReport, Target, assign_arrays
from funnel_tf.checkpoints.errors import CheckpointError, read_error
from funnel_tf.checkpoints.registry import WITH_NUM_LABELS, build_model, head_kwargs
from funnel_tf.registry import resolve_class_name
from funnel_tf.config import ConfigError, FunnelConfig

CONFIG_NAME = "config.json"
SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_NAME = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"
TF_H5_NAME = "tf_model.h5"
WEIGHT_FILES = (SAFETENSORS_NAME, SAFETENSORS_INDEX, BIN_NAME, BIN_INDEX, TF_H5_NAME)

BODY_PREFIX = "funnel."  # HF head models keep the backbone under `funnel.`; bare backbones have no prefix
_BODY_ROOTS = ("embeddings.", "encoder.", "decoder.")
# Tensor-name prefixes of each HF head (names without the `funnel.` body prefix).
HEAD_PREFIXES = {
    "FunnelForMaskedLM": ("lm_head.",),
    "FunnelForPreTraining": ("discriminator_predictions.",),
    "FunnelForSequenceClassification": ("classifier.linear_hidden.", "classifier.linear_out."),
    "FunnelForMultipleChoice": ("classifier.linear_hidden.", "classifier.linear_out."),
    "FunnelForTokenClassification": ("classifier.weight", "classifier.bias"),
    "FunnelForQuestionAnswering": ("qa_outputs.",),
}
_ALL_HEAD_PREFIXES = tuple(sorted({p for ps in HEAD_PREFIXES.values() for p in ps}))
_TF_ROOTS = ("funnel", "lm_head", "discriminator_predictions", "classifier", "qa_outputs")


# ---------------------------------------------------------------------------------------------- reading
def is_hf_dir(path: str) -> bool:
    return os.path.isdir(path) and any(os.path.exists(os.path.join(path, f)) for f in WEIGHT_FILES)


def read_hf_config(path: str) -> Tuple[dict, FunnelConfig]:
    """(raw config.json dict, FunnelConfig) of an HF checkpoint directory."""
    cfg_path = os.path.join(path, CONFIG_NAME)
    if not os.path.exists(cfg_path):
        raise CheckpointError(f"no {CONFIG_NAME}: a HuggingFace checkpoint directory needs {CONFIG_NAME} next "
                              f"to its weights (found: {sorted(os.listdir(path)) if os.path.isdir(path) else 'not a directory'})",
                              source=path)
    try:
        with open(cfg_path, encoding="utf-8") as f:
            raw = json.load(f)
        return raw, FunnelConfig.from_hf_dict(raw)
    except (json.JSONDecodeError, ConfigError, TypeError) as e:
        raise CheckpointError(f"cannot read the model config: {e}", source=cfg_path) from e


def _read_safetensors_raw(path: str) -> Dict[str, np.ndarray]:
    """Minimal safetensors reader for dtypes numpy lacks (BF16); float tensors come back as float32."""
    import ml_dtypes  # ships with TensorFlow and with JAX

    dtypes = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
              "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
            data = f.read()
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            if info["dtype"] not in dtypes:
                raise CheckpointError(f"tensor {name}: unsupported dtype {info['dtype']}", source=path)
            a, b = info["data_offsets"]
            if b > len(data):
                raise ValueError(f"tensor {name} ends at byte {b} of a {len(data)}-byte data section")
            arr = np.frombuffer(data[a:b], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
            out[name] = arr.astype(np.float32) if info["dtype"] == "BF16" else arr.copy()
        return out
    except CheckpointError:
        raise
    except Exception as e:  # struct/JSON/reshape errors of a truncated or corrupt file
        raise read_error(path, e, "safetensors file") from e


def read_safetensors(path: str) -> Dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        arrays = load_file(path)
    except TypeError:  # "data type 'bfloat16' not understood" unless ml_dtypes registered it
        return _read_safetensors_raw(path)
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise read_error(path, e, "safetensors file") from e
    return {k: v.astype(np.float32) if v.dtype.name == "bfloat16" else v for k, v in arrays.items()}


def read_torch_bin(path: str) -> Dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as e:
        raise CheckpointError("reading pytorch_model.bin needs torch, which is not installed: `pip install torch` "
                              "(CPU build is enough), or convert the checkpoint to model.safetensors",
                              source=path) from e
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # zip/pickle/EOF errors of a truncated or corrupt file
        raise read_error(path, e, "PyTorch weights file") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"not a state dict (holds a {type(state).__name__})", source=path)
    out = {}
    for k, v in state.items():
        v = v.detach()
        out[k] = (v.to(torch.float32) if v.is_floating_point() else v).numpy()
    return out


def _read_index(path: str, reader) -> Dict[str, np.ndarray]:
    """A sharded checkpoint: `weight_map` name -> shard file, all shards in the same directory."""
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
    except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise read_error(path, e, "sharded checkpoint index") from e
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise CheckpointError("sharded checkpoint index has no weight_map", source=path)
    out = {}
    base = os.path.dirname(path)
    for shard in sorted(set(weight_map.values())):
        shard_path = os.path.join(base, shard)
        if not os.path.exists(shard_path):
            raise CheckpointError(f"shard {shard} listed in the index is missing", source=path)
        out.update(reader(shard_path))
    listed = set(weight_map)
    if set(out) != listed:
        raise CheckpointError("shards do not hold exactly the tensors the index lists", source=path,
                              missing=listed - set(out), unexpected=set(out) - listed)
    return out


def tf_name_to_hf(name: str, array: np.ndarray) -> Tuple[str, np.ndarray]:
    """HF TF 4.x weight name and value -> PyTorch state-dict name and layout.

    `tf_funnel_model/funnel/encoder/blocks_._0_._0/attention/q_head/kernel:0` ->
    `funnel.encoder.blocks.0.0.attention.q_head.weight` with the 2-D kernel transposed to [out, in].
    """
    if name.endswith(":0"):
        name = name[:-2]
    parts = name.split("/")
    roots = [i for i, p in enumerate(parts) if p in _TF_ROOTS]
    if roots:
        parts = parts[roots[-1]:]
    parts = "/".join(parts).replace("_._", "/").split("/")
    leaf = parts[-1]
    if leaf == "kernel":
        parts[-1] = "weight"
        if array.ndim == 2:
            array = np.ascontiguousarray(array.T)
    elif leaf == "gamma":
        parts[-1] = "weight"
    elif leaf == "beta":
        parts[-1] = "bias"
    return ".".join(parts), array


def read_tf_h5(path: str) -> Dict[str, np.ndarray]:
    """HF TF 4.x `tf_model.h5` (Keras 2 h5 weights) -> PyTorch-layout state dict, with h5py only."""
    import h5py

    def decode(x):
        return x.decode("utf-8") if isinstance(x, bytes) else str(x)

    entries: List[Tuple[str, np.ndarray]] = []
    try:
        with h5py.File(path, "r") as f:
            if "layer_names" in f.attrs:
                for lname in f.attrs["layer_names"]:
                    group = f[decode(lname)]
                    for wname in group.attrs.get("weight_names", []):
                        entries.append((decode(wname), np.asarray(group[decode(wname)])))
            else:
                def visit(name, obj):
                    if isinstance(obj, h5py.Dataset):
                        entries.append((name, np.asarray(obj)))
                f.visititems(visit)
    except (OSError, KeyError, ValueError, RuntimeError) as e:  # h5py: truncated/corrupt file
        raise read_error(path, e, "HDF5 weights file") from e
    out = {}
    for name, arr in entries:
        pt_name, pt_arr = tf_name_to_hf(name, arr)
        if pt_name in out:
            raise CheckpointError(f"two h5 datasets map to {pt_name}", source=path)
        out[pt_name] = pt_arr
    return out


def read_hf_tensors(path: str) -> Tuple[Dict[str, np.ndarray], str]:
    """(state dict in PyTorch names and layouts, the weight file used) of an HF directory."""
    readers = [(SAFETENSORS_NAME, read_safetensors), (SAFETENSORS_INDEX, lambda p: _read_index(p, read_safetensors)),
               (BIN_NAME, read_torch_bin), (BIN_INDEX, lambda p: _read_index(p, read_torch_bin)),
               (TF_H5_NAME, read_tf_h5)]
    for fname, reader in readers:
        fpath = os.path.join(path, fname)
        if os.path.exists(fpath):
            return reader(fpath), fpath
    found = sorted(os.listdir(path)) if os.path.isdir(path) else "not a directory"
    raise CheckpointError(f"no HuggingFace weights: expected one of {list(WEIGHT_FILES)} (found: {found})",
                          source=path)


# ---------------------------------------------------------------------------------------------- mapping
def _core(name: str) -> str:
    return name[len(BODY_PREFIX):] if name.startswith(BODY_PREFIX) else name


def _is_body(core: str) -> bool:
    return core.startswith(_BODY_ROOTS)


def _is_known_head(core: str) -> bool:
    return core.startswith(_ALL_HEAD_PREFIXES) or core == "lm_head.weight"


def detect_hf_class(raw_config: dict, names: Sequence[str]) -> str:
    """The HF class a state dict was saved from: its head tensors first, `architectures` to break ties."""
    cores = {_core(n) for n in names}
    found = [cls for cls, prefixes in HEAD_PREFIXES.items()
             if any(c.startswith(prefixes) for c in cores)]
    archs = [a for a in (raw_config.get("architectures") or []) if isinstance(a, str)]
    for arch in archs:
        if arch in found:
            return arch
    if found:
        return found[0]
    return "FunnelModel" if any(c.startswith("decoder.") for c in cores) else "FunnelBaseModel"


def hf_targets(model) -> Tuple[List[Target], Dict[str, callable]]:
    """Targets named as in the HF state dict of `model`'s class, plus the inverse transforms."""
    mappings = hf_names.model_mappings(model)
    targets = [Target(m.hf_name, m.variable, m.to_keras, is_head=not _is_body(_core(m.hf_name)))
               for m in mappings]
    return targets, {m.hf_name: m.to_hf for m in mappings}


def normalize_names(arrays: Dict[str, np.ndarray], prefixed: bool) -> Dict[str, np.ndarray]:
    """Rename body tensors to carry (head models) or drop (backbones) the `funnel.` prefix."""
    out = {}
    for name, arr in arrays.items():
        core = _core(name)
        new = (BODY_PREFIX + core if prefixed else core) if _is_body(core) else name
        if new in out:
            raise CheckpointError(f"tensor {core} appears both with and without the '{BODY_PREFIX}' prefix")
        out[new] = arr
    return out


def _untie_lm_head(arrays: Dict[str, np.ndarray], prefixed: bool, source: str, tied: bool):
    """HF may store the tied `lm_head.weight` (pytorch_model.bin) next to, or instead of, the embeddings."""
    if "lm_head.weight" not in arrays:
        return
    emb = (BODY_PREFIX if prefixed else "") + "embeddings.word_embeddings.weight"
    head = arrays.pop("lm_head.weight")
    if emb not in arrays:
        arrays[emb] = head
    elif not (tied and np.array_equal(arrays[emb], head)):
        raise CheckpointError("lm_head.weight differs from the word embeddings: funnel_tf ties the MLM output "
                              "layer to the input embeddings and cannot hold a separate one", source=source)


def _resolve_num_labels(class_name, num_labels, raw_config, arrays):
    if class_name not in WITH_NUM_LABELS:
        return {}
    if num_labels is not None:
        return {"num_labels": int(num_labels)}
    head_weight = {"FunnelForSequenceClassification": "classifier.linear_out.weight",
                   "FunnelForTokenClassification": "classifier.weight"}[class_name]
    if head_weight in arrays:  # the checkpoint's own head decides
        return {"num_labels": int(arrays[head_weight].shape[0])}
    if "num_labels" in raw_config:
        return {"num_labels": int(raw_config["num_labels"])}
    if isinstance(raw_config.get("id2label"), dict):
        return {"num_labels": len(raw_config["id2label"])}
    return {"num_labels": 2}


def load_hf_weights(model, arrays: Dict[str, np.ndarray], source: str = "<arrays>",
                    allow_missing: Sequence[str] = ()) -> LoadReport:
    """Assign an HF state dict (PyTorch names/layouts, with or without `funnel.`) to `model`.

    Tensors of another head, or the decoder when `model` has none, are skipped and reported; any
    other mismatch raises CheckpointError.
    """
    targets, inverse = hf_targets(model)
    prefixed = any(t.name.startswith(BODY_PREFIX) for t in targets)
    arrays = normalize_names(arrays, prefixed)
    _untie_lm_head(arrays, prefixed, source, tied=bool(getattr(model.config, "tie_word_embeddings", True)))
    own_head = HEAD_PREFIXES.get(type(model).__name__, ())
    has_decoder = any(_core(t.name).startswith("decoder.") for t in targets)

    def skippable(name):
        core = _core(name)
        if core.startswith("decoder.") and not has_decoder:
            return True
        return _is_known_head(core) and not core.startswith(own_head)

    return assign_arrays(targets, arrays, source=source, fmt="hf", model_class=type(model).__name__,
                         allow_missing=allow_missing, skippable=skippable, to_source=inverse)


def load_hf(path: str, model_class: Optional[str] = None, allow_missing: Sequence[str] = (),
            num_labels: Optional[int] = None, return_report: bool = False, dtype=None, **config_overrides):
    """Build and load a model from a local HF checkpoint directory.

    model_class: a registry alias or class name ("base", "mlm", "FunnelForMaskedLM", ...); default:
    the class the checkpoint was saved from. config_overrides: FunnelConfig fields to change
    (e.g. dropout rates for finetuning; never shapes). dtype: the model's precision policy
    (default: the global one).
    """
    raw, config = read_hf_config(path)
    if config_overrides:
        config = config.replace(**config_overrides)
    arrays, source = read_hf_tensors(path)
    class_name = resolve_class_name(model_class) if model_class else detect_hf_class(raw, list(arrays))
    model = build_model(class_name, config, dtype=dtype,
                        **_resolve_num_labels(class_name, num_labels, raw, normalize_names(arrays, False)))
    report = load_hf_weights(model, arrays, source=source, allow_missing=allow_missing)
    return (model, report) if return_report else model


# ---------------------------------------------------------------------------------------------- export
def hf_incompatibilities(model, allow_mask_pooling_change: bool = False) -> List[str]:
    """Reasons HF's FunnelModel would compute something else than `model` (empty list: exportable).

    allow_mask_pooling_change: accept that HF pools the key mask with "min" where the model (an
    original-release checkpoint) uses "max"; HF's own converter makes that change silently.
    """
    cfg = model.config
    why = []
    if getattr(cfg, "mask_pooling", "min") != "min" and not allow_mask_pooling_change:
        why.append(f"mask_pooling={cfg.mask_pooling!r}: HF drops a pooled key slot if any member is padding "
                   "(the original keeps it if any member is real), so outputs differ for padded inputs whose "
                   "pooling pairs straddle the padding; pass allow_mask_pooling_change=True "
                   "(--allow_mask_pooling_change) to export with HF's behaviour")
    if cfg.d_embed is not None and cfg.d_embed != cfg.d_model:
        why.append(f"d_embed={cfg.d_embed} != d_model={cfg.d_model} (the original's input projection)")
    if cfg.decoder_repeats != 1:
        why.append(f"decoder_repeats={cfg.decoder_repeats} (HF has no shared-weight decoder repeats)")
    if cfg.always_mask_cls and not cfg.separate_cls:
        why.append("always_mask_cls with separate_cls=False (HF masks CLS only with separate_cls)")
    body = getattr(model, "funnel", model)
    if body.decoder is not None and cfg.block_repeats[0] > 1:
        why.append(f"block_repeats[0]={cfg.block_repeats[0]} with a decoder (HF feeds the decoder "
                   "hidden_states[block_sizes[0]], not the first block's output)")
    if getattr(model, "transform", None) is not None:
        why.append("MLM head with the original's lm_proj transform (HF's FunnelForMaskedLM has none)")
    return why


def hf_config_dict(model) -> dict:
    """HF `config.json` content for `model`."""
    cfg = model.config
    d = {
        "architectures": [type(model).__name__],
        "model_type": "funnel",
        "vocab_size": cfg.vocab_size,
        "block_sizes": list(cfg.block_sizes),
        "block_repeats": list(cfg.block_repeats),
        "num_decoder_layers": cfg.num_decoder_layers,
        "d_model": cfg.d_model,
        "n_head": cfg.n_head,
        "d_head": cfg.d_head,
        "d_inner": cfg.d_inner,
        "hidden_act": cfg.hidden_act,
        "hidden_dropout": cfg.hidden_dropout,
        "attention_dropout": cfg.attention_dropout,
        "activation_dropout": cfg.activation_dropout,
        "initializer_range": cfg.initializer_range,
        "initializer_std": cfg.initializer_std,
        "layer_norm_eps": cfg.layer_norm_eps,
        "pooling_type": cfg.pooling_type,
        "attention_type": cfg.attention_type,
        "separate_cls": cfg.separate_cls,
        "truncate_seq": cfg.truncate_seq,
        "pool_q_only": cfg.pool_q_only,
        "pad_token_id": cfg.pad_token_id,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "dtype": "float32",
    }
    n = head_kwargs(model).get("num_labels")
    if n is not None:
        d["id2label"] = {str(i): f"LABEL_{i}" for i in range(n)}
        d["label2id"] = {f"LABEL_{i}": i for i in range(n)}
    return d


def export_hf(model, out_dir: str, allow_mask_pooling_change: bool = False) -> Dict[str, str]:
    """Write `model.safetensors` + `config.json` that HF's `from_pretrained` loads as the same model.

    Raises CheckpointError when HF cannot express the model (see `hf_incompatibilities`).
    Returns the written paths.
    """
    why = hf_incompatibilities(model, allow_mask_pooling_change)
    if why:
        raise CheckpointError("cannot export to HuggingFace format:\n  " + "\n  ".join(why), source=out_dir)
    try:
        mappings = hf_names.model_mappings(model)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"cannot export to HuggingFace format: {e}", source=out_dir) from e
    from safetensors.numpy import save_file

    tensors = {m.hf_name: np.ascontiguousarray(m.to_hf(np.asarray(m.variable.numpy())), dtype=np.float32)
               for m in mappings}
    os.makedirs(out_dir, exist_ok=True)
    weights = os.path.join(out_dir, SAFETENSORS_NAME)
    save_file(tensors, weights, metadata={"format": "pt"})
    config = os.path.join(out_dir, CONFIG_NAME)
    with open(config, "w", encoding="utf-8") as f:
        json.dump(hf_config_dict(model), f, indent=2, sort_keys=True)
        f.write("\n")
    return {"weights": weights, "config": config}
