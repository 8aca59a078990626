"""The original TF1 release (laiguokun/Funnel-Transformer): `model.ckpt-*` + `net_config.json`.

Read with `tf.train.load_checkpoint` (no TF1 graph). Variable layout (reference §1.9):
`model/input/word_embedding/lookup_table`, `model/encoder/layer_{k}/rel_attn/{q,k,v,o,r}/...`,
`model/decoder/layer_{n+j}/...`, heads `lm_proj` + `lm_loss/bias` (MLM) and `binary_proj/dense` +
`binary_loss/{weight,bias}` (ELECTRA discriminator). Attention kernels are already stored with split
heads ([d_model, n_head, d_head]), our layout, so body tensors copy as they are.

The original ELECTRA head predicts 1 = *original* token; ours (and HF's) 1 = *replaced*, so its
weight and bias are negated on import. Optimizer slots, `global_step` and the ELECTRA `generator/`
scope are skipped (and reported).
"""

import collections.abc
import glob
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from funnel_tf.checkpoints.assign import LoadReport, Target, assign_arrays
from funnel_tf.checkpoints.errors import CheckpointError, read_error
from funnel_tf.checkpoints.registry import WITH_NUM_LABELS, build_model
from funnel_tf.registry import resolve_class_name
from funnel_tf.config import ConfigError, FunnelConfig

NET_CONFIG_NAME = "net_config.json"
_NOT_MODEL = re.compile(r"(^|/)(adam_m|adam_v|global_step)$|AdamWeightDecayOptimizer|^generator/")
_SUMMARY = "model/sequnece_summary/summary"  # sic: the original's scope name
_TASK_LOGIT = re.compile(r"^model/([^/]+)/logit/kernel$")
_RACE_LOGITS = "model/race/logits"
# Head scopes of the original; a model class without that head skips them.
_HEAD_SCOPES = ("model/lm_proj/", "model/lm_loss/", "model/binary_proj/", "model/binary_loss/",
                "model/sequnece_summary/", _RACE_LOGITS + "/")


def _same(x):
    return x


def _negate_weight(w):
    """binary_loss/weight [D] (1 = original) -> dense_prediction kernel [D, 1] (1 = replaced)."""
    return -np.asarray(w).reshape(-1, 1)


def _negate_bias(b):
    return -np.asarray(b).reshape(-1)


_INVERSE = {_negate_weight: lambda k: -np.asarray(k)[:, 0], _negate_bias: lambda b: -np.asarray(b)}


# ---------------------------------------------------------------------------------------------- files
def is_original_dir(path: str) -> bool:
    if os.path.isdir(path):
        return os.path.exists(os.path.join(path, NET_CONFIG_NAME)) or bool(glob.glob(os.path.join(path, "*.index")))
    return os.path.exists(path + ".index") or (path.endswith(".index") and os.path.exists(path))


def _step(prefix: str) -> int:
    m = re.search(r"-(\d+)$", prefix)
    return int(m.group(1)) if m else -1


def _tensorflow(source: str):
    """TensorFlow, which reads the release's TF1 checkpoints (on any Keras backend: the arrays are
    numpy); a CheckpointError saying to install it when it is missing."""
    from funnel_tf.checkpoints.files import tensorflow

    return tensorflow("reading the original TF1 release's checkpoint", source=source)


def find_checkpoint(path: str) -> Tuple[str, str]:
    """(checkpoint prefix, net_config.json path) for a directory or a checkpoint prefix / .index file."""
    if os.path.isdir(path):
        prefix = _tensorflow(path).train.latest_checkpoint(path)
        if prefix is None or not os.path.exists(prefix + ".index"):  # no/odd `checkpoint` state file
            prefixes = [p[: -len(".index")] for p in glob.glob(os.path.join(path, "*.index"))]
            if not prefixes:
                raise CheckpointError("no TF checkpoint (model.ckpt-*.index) in the directory", source=path)
            prefix = max(prefixes, key=lambda p: (_step(p), p))
        return prefix, os.path.join(path, NET_CONFIG_NAME)
    prefix = path[: -len(".index")] if path.endswith(".index") else path
    if not os.path.exists(prefix + ".index"):
        raise CheckpointError("not a TF checkpoint: no .index file", source=path)
    return prefix, os.path.join(os.path.dirname(prefix), NET_CONFIG_NAME)


def read_original_config(net_config_path: str, truncate_seq: bool = True) -> FunnelConfig:
    if not os.path.exists(net_config_path):
        raise CheckpointError(f"no {NET_CONFIG_NAME} next to the checkpoint (pass net_config=PATH)",
                              source=net_config_path)
    import json

    try:
        with open(net_config_path, encoding="utf-8") as f:
            return FunnelConfig.from_original_dict(json.load(f), truncate_seq=truncate_seq)
    except (json.JSONDecodeError, ConfigError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"cannot read the original net_config: {e}", source=net_config_path) from e


class CheckpointArrays(collections.abc.Mapping):
    """Model variables of a TF checkpoint as a read-on-access mapping (optimizer slots never read)."""

    def __init__(self, prefix: str):
        tf = _tensorflow(prefix)
        try:
            self._reader = tf.train.load_checkpoint(prefix)
        except Exception as e:  # tf raises NotFoundError / DataLossError / OpError
            raise read_error(prefix, e, "TF checkpoint") from e
        self._prefix = prefix
        names = self._reader.get_variable_to_shape_map()
        self.skipped = sorted(n for n in names if _NOT_MODEL.search(n))
        self._names = sorted(n for n in names if not _NOT_MODEL.search(n))
        self._name_set = frozenset(self._names)

    def __contains__(self, name):  # without reading the tensor (Mapping's default would)
        return name in self._name_set

    def __getitem__(self, name):
        if name not in self._name_set:
            raise KeyError(name)
        try:
            return self._reader.get_tensor(name)
        except Exception as e:  # IndexError "Read less bytes than requested", DataLossError, ...
            raise read_error(self._prefix, e, "TF checkpoint") from e

    def __iter__(self):
        return iter(self._names)

    def __len__(self):
        return len(self._names)


# ---------------------------------------------------------------------------------------------- mapping
def _dense(name, layer, is_head=False) -> List[Target]:
    out = [Target(f"{name}/kernel", layer.kernel, _same, is_head)]
    if layer.bias is not None:
        out.append(Target(f"{name}/bias", layer.bias, _same, is_head))
    return out


def _norm(name, layer, is_head=False) -> List[Target]:
    return [Target(f"{name}/gamma", layer.gamma, _same, is_head), Target(f"{name}/beta", layer.beta, _same, is_head)]


def _layer(prefix, layer) -> List[Target]:
    att, ffn = layer.attention, layer.ffn
    p = f"{prefix}/rel_attn"
    out = [Target(f"{p}/{n}", getattr(att, n), _same) for n in ("r_w_bias", "r_r_bias", "r_s_bias", "seg_embed")]
    out.append(Target(f"{p}/r/kernel", att.r_kernel, _same))
    out += _dense(f"{p}/q", att.q_head) + _dense(f"{p}/k", att.k_head) + _dense(f"{p}/v", att.v_head)
    out += _dense(f"{p}/o", att.post_proj) + _norm(f"{p}/layer_norm", att.layer_norm)
    out += _dense(f"{prefix}/ff/layer_1", ffn.linear_1) + _dense(f"{prefix}/ff/layer_2", ffn.linear_2)
    out += _norm(f"{prefix}/ff/layer_norm", ffn.layer_norm)
    return out


def backbone_targets(backbone) -> List[Target]:
    out = [Target("model/input/word_embedding/lookup_table", backbone.embeddings.word_embeddings, _same)]
    out += _norm("model/input/layer_norm", backbone.embeddings.layer_norm)
    if backbone.encoder.input_projection is not None:
        out += _dense("model/encoder/input_projection", backbone.encoder.input_projection)
    for k, layer in enumerate(backbone.encoder.layers_flat):
        out += _layer(f"model/encoder/layer_{k}", layer)
    if backbone.decoder is not None:
        offset = backbone.config.num_hidden_layers
        for j, layer in enumerate(backbone.decoder.layers_list):
            out += _layer(f"model/decoder/layer_{offset + j}", layer)
    return out


def original_targets(model, task_scope: Optional[str] = None) -> List[Target]:
    """Targets in the original's variable names for a backbone or head model.

    task_scope: the `model/<task>/logit` scope of a finetuned classification checkpoint.
    Heads the original never had (token classification, HF-style QA) get `funnel_tf:`-prefixed names,
    so they are reported missing unless allowed.
    """
    from funnel_tf.modeling import heads
    from funnel_tf.modeling.model import FunnelBaseModel

    if isinstance(model, FunnelBaseModel):
        return backbone_targets(model)
    out = backbone_targets(model.funnel)
    if isinstance(model, heads.FunnelForMaskedLM):
        if model.transform is None:
            raise CheckpointError("the original MLM head has lm_proj (dense + LayerNorm); build the model with "
                                  "config.mlm_transform=True")
        out += _dense("model/lm_proj/dense", model.transform, True) + _norm("model/lm_proj/layer_norm",
                                                                           model.transform_norm, True)
        out.append(Target("model/lm_loss/bias", model.lm_bias, _same, True))
    elif isinstance(model, heads.FunnelForPreTraining):
        out += _dense("model/binary_proj/dense", model.dense, True)
        out.append(Target("model/binary_loss/weight", model.dense_prediction.kernel, _negate_weight, True))
        out.append(Target("model/binary_loss/bias", model.dense_prediction.bias, _negate_bias, True))
    elif isinstance(model, (heads.FunnelForSequenceClassification, heads.FunnelForMultipleChoice)):
        out += _dense(_SUMMARY, model.classifier.linear_hidden, True)
        scope = _RACE_LOGITS if isinstance(model, heads.FunnelForMultipleChoice) \
            else f"model/{task_scope or '<task>'}/logit"
        out += _dense(scope, model.classifier.linear_out, True)
    else:
        out += [Target(f"funnel_tf:{v.path}", v, _same, True) for v in model.weights
                if not v.path.startswith(model.funnel.name + "/")]
    return out


def _task_scopes(names) -> List[str]:
    return sorted({m.group(1) for m in map(_TASK_LOGIT.match, names) if m})


def detect_original_class(names: Sequence[str]) -> str:
    names = list(names)
    if any(n.startswith("model/binary_loss/") for n in names):
        return "FunnelForPreTraining"
    if any(n.startswith("model/lm_loss/") for n in names):
        return "FunnelForMaskedLM"
    if any(n.startswith(_SUMMARY) for n in names):
        if any(n.startswith(_RACE_LOGITS + "/") for n in names):
            return "FunnelForMultipleChoice"
        if _task_scopes(names):
            return "FunnelForSequenceClassification"
    return "FunnelModel" if any(n.startswith("model/decoder/") for n in names) else "FunnelBaseModel"


def load_original_weights(model, arrays, source: str = "<arrays>", allow_missing: Sequence[str] = (),
                          task_scope: Optional[str] = None, skipped_upfront: Sequence[str] = ()) -> LoadReport:
    """Assign original-named arrays (a mapping) to `model`; other heads and an unused decoder are skipped."""
    scopes = _task_scopes(arrays)
    if task_scope is None and len(scopes) == 1:
        task_scope = scopes[0]
    targets = original_targets(model, task_scope)
    own = {t.name for t in targets}
    has_decoder = any(t.name.startswith("model/decoder/") for t in targets)

    def skippable(name):
        if name.startswith("model/decoder/") and not has_decoder:
            return True
        return (name.startswith(_HEAD_SCOPES) or bool(_TASK_LOGIT.match(name))
                or name.startswith(tuple(f"model/{s}/logit/" for s in scopes))) and name not in own

    inverse = {t.name: _INVERSE.get(t.to_keras, _same) for t in targets}
    report = assign_arrays(targets, arrays, source=source, fmt="original", model_class=type(model).__name__,
                           allow_missing=allow_missing, skippable=skippable, to_source=inverse)
    report.skipped = sorted(list(skipped_upfront) + report.skipped)
    return report


def load_original(path: str, model_class: Optional[str] = None, allow_missing: Sequence[str] = (),
                  net_config: Optional[str] = None, truncate_seq: bool = True, num_labels: Optional[int] = None,
                  task_scope: Optional[str] = None, return_report: bool = False, dtype=None,
                  **config_overrides):
    """Build and load a model from an original TF1 checkpoint (directory or prefix).

    model_class: registry alias or class name; default from the checkpoint's heads (ELECTRA
    discriminator -> FunnelForPreTraining, MLM -> FunnelForMaskedLM, else FunnelModel / FunnelBaseModel).
    truncate_seq: the original's runtime flag (default True, as in its scripts). dtype: the
    model's precision policy (default: the global one).
    """
    prefix, default_cfg = find_checkpoint(path)
    config = read_original_config(net_config or default_cfg, truncate_seq=truncate_seq)
    if config_overrides:
        config = config.replace(**config_overrides)
    arrays = CheckpointArrays(prefix)
    class_name = resolve_class_name(model_class) if model_class else detect_original_class(arrays)
    kwargs = {}
    if class_name in WITH_NUM_LABELS:
        scopes = _task_scopes(arrays)
        scope = task_scope or (scopes[0] if len(scopes) == 1 else None)
        if num_labels is None and scope and f"model/{scope}/logit/kernel" in arrays:
            num_labels = int(arrays[f"model/{scope}/logit/kernel"].shape[-1])
        kwargs["num_labels"] = int(num_labels or 2)
    model = build_model(class_name, config, dtype=dtype, **kwargs)
    report = load_original_weights(model, arrays, source=prefix, allow_missing=allow_missing,
                                   task_scope=task_scope, skipped_upfront=arrays.skipped)
    return (model, report) if return_report else model


def original_inputs(input_ids, seg_id, input_mask) -> Dict[str, np.ndarray]:
    """The original's input conventions (input_mask 1 = padding) -> our dict (attention_mask 1 = attend)."""
    return {"input_ids": np.asarray(input_ids, np.int32),
            "attention_mask": (1 - np.asarray(input_mask)).astype(np.int32),
            "token_type_ids": np.asarray(seg_id, np.int32)}
