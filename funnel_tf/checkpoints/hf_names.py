"""The HuggingFace (PyTorch state_dict) name map of our models: one entry per HF tensor, with the
transform between HF's layout and ours. Shared by the importer and the exporter so the two can
never disagree.

Layouts: PyTorch Linear weight is [out, in]; our Dense kernels are [in, out]; attention kernels keep
heads split: q/k/v [d_model, n_head, d_head], post_proj [n_head, d_head, d_model].
"""

from dataclasses import dataclass
from typing import Callable, Dict, List

import numpy as np


@dataclass
class TensorMapping:
    hf_name: str
    variable: object  # keras.Variable
    to_keras: Callable[[np.ndarray], np.ndarray]
    to_hf: Callable[[np.ndarray], np.ndarray]


def _same(x):
    return x


def _transpose(x):
    return np.ascontiguousarray(np.transpose(x))


def _heads_in(n, h):
    """[N*H, D] Linear weight <-> [D, N, H] einsum kernel."""
    return (lambda w: np.ascontiguousarray(w.T.reshape(w.shape[1], n, h)),
            lambda k: np.ascontiguousarray(k.reshape(k.shape[0], n * h).T))


def _heads_out(n, h):
    """[D, N*H] Linear weight <-> [N, H, D] einsum kernel."""
    return (lambda w: np.ascontiguousarray(w.T.reshape(n, h, w.shape[0])),
            lambda k: np.ascontiguousarray(k.reshape(n * h, k.shape[-1]).T))


def _bias_heads(n, h):
    return (lambda b: b.reshape(n, h), lambda b: b.reshape(n * h))


def _dense(prefix, layer) -> List[TensorMapping]:
    out = [TensorMapping(f"{prefix}.weight", layer.kernel, _transpose, _transpose)]
    if layer.bias is not None:
        out.append(TensorMapping(f"{prefix}.bias", layer.bias, _same, _same))
    return out


def _norm(prefix, layer) -> List[TensorMapping]:
    return [TensorMapping(f"{prefix}.weight", layer.gamma, _same, _same),
            TensorMapping(f"{prefix}.bias", layer.beta, _same, _same)]


def _funnel_layer(prefix, layer, config) -> List[TensorMapping]:
    n, h = config.n_head, config.d_head
    att = layer.attention
    out = [TensorMapping(f"{prefix}.attention.{name}", getattr(att, name), _same, _same)
           for name in ("r_w_bias", "r_r_bias", "r_kernel", "r_s_bias", "seg_embed")]
    to_k, to_h = _heads_in(n, h)
    for name in ("q_head", "k_head", "v_head"):
        dense = getattr(att, name)
        out.append(TensorMapping(f"{prefix}.attention.{name}.weight", dense.kernel, to_k, to_h))
        if dense.bias is not None:
            bk, bh = _bias_heads(n, h)
            out.append(TensorMapping(f"{prefix}.attention.{name}.bias", dense.bias, bk, bh))
    ok, oh = _heads_out(n, h)
    out.append(TensorMapping(f"{prefix}.attention.post_proj.weight", att.post_proj.kernel, ok, oh))
    out.append(TensorMapping(f"{prefix}.attention.post_proj.bias", att.post_proj.bias, _same, _same))
    out += _norm(f"{prefix}.attention.layer_norm", att.layer_norm)
    out += _dense(f"{prefix}.ffn.linear_1", layer.ffn.linear_1)
    out += _dense(f"{prefix}.ffn.linear_2", layer.ffn.linear_2)
    out += _norm(f"{prefix}.ffn.layer_norm", layer.ffn.layer_norm)
    return out


def backbone_mappings(backbone, prefix: str = "") -> List[TensorMapping]:
    """FunnelModel / FunnelBaseModel tensors; `prefix` is "funnel." inside HF head models."""
    cfg = backbone.config
    if backbone.encoder.input_projection is not None:
        raise ValueError("HF checkpoints have no input projection (d_embed != d_model); "
                         "such models only come from the original release")
    out = [TensorMapping(f"{prefix}embeddings.word_embeddings.weight", backbone.embeddings.word_embeddings,
                         _same, _same)]
    out += _norm(f"{prefix}embeddings.layer_norm", backbone.embeddings.layer_norm)
    for b, block in enumerate(backbone.encoder.blocks):
        for i, layer in enumerate(block):
            out += _funnel_layer(f"{prefix}encoder.blocks.{b}.{i}", layer, cfg)
    if backbone.decoder is not None:
        for j, layer in enumerate(backbone.decoder.layers_list):
            out += _funnel_layer(f"{prefix}decoder.layers.{j}", layer, cfg)
    return out


def head_mappings(model) -> List[TensorMapping]:
    """Tensors of one of our head models (funnel_tf.modeling.heads), HF names with `funnel.` prefix."""
    from funnel_tf.modeling import heads

    out = backbone_mappings(model.funnel, prefix="funnel.")
    if isinstance(model, heads.FunnelForMaskedLM):
        if model.transform is not None:
            raise ValueError("HF's FunnelForMaskedLM has no lm_proj transform (original-release head)")
        out.append(TensorMapping("lm_head.bias", model.lm_bias, _same, _same))
    elif isinstance(model, heads.FunnelForPreTraining):
        out += _dense("discriminator_predictions.dense", model.dense)
        out += _dense("discriminator_predictions.dense_prediction", model.dense_prediction)
    elif isinstance(model, (heads.FunnelForSequenceClassification, heads.FunnelForMultipleChoice)):
        out += _dense("classifier.linear_hidden", model.classifier.linear_hidden)
        out += _dense("classifier.linear_out", model.classifier.linear_out)
    elif isinstance(model, heads.FunnelForTokenClassification):
        out += _dense("classifier", model.classifier)
    elif isinstance(model, heads.FunnelForQuestionAnswering):
        out += _dense("qa_outputs", model.qa_outputs)
    else:
        raise TypeError(f"no HF name map for {type(model).__name__}")
    return out


def model_mappings(model) -> List[TensorMapping]:
    """Name map of a backbone or a head model."""
    from funnel_tf.modeling.model import FunnelBaseModel

    if isinstance(model, FunnelBaseModel):
        return backbone_mappings(model)
    return head_mappings(model)


def as_dict(mappings: List[TensorMapping]) -> Dict[str, TensorMapping]:
    return {m.hf_name: m for m in mappings}
