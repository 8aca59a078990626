"""Why the pretrained funnel finetunes as it does at bench scale: two probes of the paper table's
pretrained checkpoints (bench/paper_table.py's --work_dir), written to a JSON beside its results.

1. CLS of the backbone's last block on 64 SST-2 dev sentences (what the classification head
   reads), for each model pretrained and freshly initialised: mean pairwise cosine and the
   across-example spread (std over examples / |mean|, averaged over features). A CLS that is the
   same vector for every sentence gives the head nothing to start from.
2. The funnel's MLM with its compressed blocks cut off: the decoder gets zeros instead of the
   last block's output (it still gets the first block's output, its residual input), on one
   batch of the run's own masked records. A small change in loss means the MLM was carried by the
   first block and the decoder, and the pooled blocks learnt little.

    python bench/paper_table_probe.py --work_dir=/tmp/paper_table [--out bench/results/x.json]
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

SHARED = os.environ.get("FUNNEL_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))


def _config(work_dir: str, name: str):
    from funnel_tf.config import FunnelConfig

    return FunnelConfig.from_json_file(os.path.join(work_dir, "configs", f"{name}.json")).replace(
        hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)


def _sst2_features(tokenizer, glue_dir: str, n: int, seq_len: int):
    """The first n SST-2 dev sentences as [n, seq_len] model inputs (CLS type id 2)."""
    import numpy as np

    with open(os.path.join(glue_dir, "SST-2", "dev.tsv"), encoding="utf-8") as f:
        texts = [line.split("\t")[0] for line in f.read().splitlines()[1:n + 1]]
    n = len(texts)
    ids = np.zeros([n, seq_len], np.int32)
    mask, types = np.zeros_like(ids), np.zeros_like(ids)
    for i, tokens in enumerate(tokenizer.tokenize(texts).to_list()):
        row = [tokenizer.cls_id] + [int(t) for t in tokens][: seq_len - 2] + [tokenizer.sep_id]
        ids[i, : len(row)], mask[i, : len(row)], types[i, 0] = row, 1, 2
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def cls_probe(work_dir: str, name: str, features, pretrained: bool) -> dict:
    import keras
    import numpy as np

    from funnel_tf.tasks import get_task
    from funnel_tf.finetuning.initialization import initialize_model

    keras.utils.set_random_seed(0)
    task = get_task("sst-2")
    model = task.build_model(_config(work_dir, name))
    if pretrained:
        initialize_model(model, task, os.path.join(work_dir, "pretrain", name))
    hidden = np.asarray(model.funnel(features, training=False)["last_hidden_state"])
    cls = hidden[:, 0]  # [n, d_model]
    unit = cls / np.linalg.norm(cls, axis=1, keepdims=True)
    cos = unit @ unit.T
    return {"model": name, "init": "pretrained" if pretrained else "random",
            "last_block_length": int(hidden.shape[1]),
            "mean_pairwise_cosine": float(cos[np.triu_indices(len(cls), 1)].mean()),
            "spread": float(cls.std(0).mean() / (np.abs(cls.mean(0)).mean() + 1e-9))}


def bypass_probe(work_dir: str, vocab: str) -> dict:
    """The pretrained funnel's masked-LM loss and accuracy with and without its pooled blocks."""
    import tensorflow as tf

    from funnel_tf.modeling.model import standardize_inputs
    from funnel_tf.text import masking
    from funnel_tf.text.pretraining_reader import make_pretraining_dataset
    from funnel_tf.text.wordpiece import WordpieceTokenizer
    from funnel_tf.tasks.pretraining import pretraining_task
    from funnel_tf.engine import checkpointing
    from funnel_tf.engine.checkpointing import resolve_checkpoint

    config = _config(work_dir, "funnel")
    objective = pretraining_task("mlm", config)
    objective.build()
    model = objective.model
    prefix = resolve_checkpoint(os.path.join(work_dir, "pretrain", "funnel"))
    tf.train.Checkpoint(weights={"model": checkpointing.model_weights(model)}).read(
        prefix).expect_partial().assert_existing_objects_matched()
    files = sorted(glob.glob(os.path.join(work_dir, "pretrain", "funnel", "data", "seq*", "*.tfrecord")))
    seq_len = int(os.path.basename(os.path.dirname(files[0]))[3:])
    tokenizer = WordpieceTokenizer(vocab)
    masker = masking.MlmMasker.from_tokenizer(tokenizer, seq_len, strategy="word_span")
    batch = next(iter(make_pretraining_dataset(files, seq_len, 64, masker=masker, seed=1)))
    ids, mask, types = standardize_inputs(batch)
    body = model.funnel
    enc = body.encoder(body.embeddings(ids), mask, types)
    out = {"checkpoint": prefix, "examples": 64}
    for name, deep in (("full", enc["last_hidden_state"]),
                       ("pooled_blocks_zeroed", tf.zeros_like(enc["last_hidden_state"]))):
        h = body.decoder(deep, enc["first_block_output"], mask, types)["last_hidden_state"]
        h = tf.gather(h, batch["masked_positions"], batch_dims=1)  # [B, P, D]
        logits = tf.einsum("bpd,vd->bpv", h, body.embeddings.word_embeddings) + model.lm_bias
        weights = tf.cast(batch["masked_weights"], tf.float32)
        loss = tf.keras.losses.sparse_categorical_crossentropy(batch["masked_ids"], logits,
                                                               from_logits=True)
        hit = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=batch["masked_ids"].dtype),
                               batch["masked_ids"]), tf.float32)
        out[name] = {"mlm_loss": float(tf.reduce_sum(loss * weights) / tf.reduce_sum(weights)),
                     "mlm_accuracy": float(tf.reduce_sum(hit * weights) / tf.reduce_sum(weights))}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work_dir", required=True, help="bench/paper_table.py's --work_dir")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    p.add_argument("--out", default=os.path.join(HERE, "results", f"paper_table_probe_{date}.json"))
    p.add_argument("--vocab", default=os.path.join(SHARED, "vocab", "bert-base-uncased-vocab.txt"))
    p.add_argument("--glue_dir", default=os.path.join(SHARED, "glue"))
    args = p.parse_args(argv)
    from funnel_tf.text.wordpiece import WordpieceTokenizer

    tokenizer = WordpieceTokenizer(args.vocab)
    features = _sst2_features(tokenizer, args.glue_dir, 64, 64)
    result = {"cls": [cls_probe(args.work_dir, name, features, pretrained)
                      for name in ("funnel", "baseline") for pretrained in (True, False)],
              "funnel_mlm_without_pooled_blocks": bypass_probe(args.work_dir, args.vocab)}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
