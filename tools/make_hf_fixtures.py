"""Generate HuggingFace (PyTorch) reference fixtures for funnel-tf parity tests.

Builds tiny random-init HF Funnel models (bodies and heads), perturbs every bias / LayerNorm /
relative-attention parameter so mis-mapped tensors show up, runs them in eval mode and writes, per case:
config.json + model.safetensors (HF save_pretrained), inputs.npz, outputs.npz, meta.json; plus index.json.
The parity tests read these files without torch. Needs torch + transformers (only this script does).

    python tools/make_hf_fixtures.py --out tests/fixtures/hf [--only CASE ...] [--tf_h5_python PYTHON]

Deterministic: fixed seeds, one torch thread; re-running with the same torch/transformers versions
reproduces every file byte-for-byte (compare with `git status` after regenerating).
"""

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys

import numpy as np

# Tiny body shared by most cases (HF's own test tester uses vocab 99, d_model 32, n_head 4, d_head 8, d_inner 37).
BASE_CFG = dict(vocab_size=99, block_sizes=[1, 1, 2], num_decoder_layers=1, d_model=32, n_head=4, d_head=8,
                d_inner=37, hidden_act="gelu_new")
NOISE_STD = 0.1  # added to every bias, LayerNorm param, r_* bias, r_kernel and seg_embed after HF's default init

# Each case: name, HF class, config overrides, batch, seq_len, description. Defaults are HF's own
# (relative_shift, mean, separate_cls/truncate_seq/pool_q_only all True).
MODEL_CASES = [
    ("model_default_L8", "FunnelModel", dict(block_sizes=[1, 1, 1]), 4, 8,
     "FunnelModel, all HF defaults, 3 blocks [1,1,1], 1 decoder layer, even length; also has pytorch_model.bin "
     "(and tf_model.h5 when made) holding the same weights"),
    ("base_default_L7", "FunnelBaseModel", {}, 4, 7,
     "FunnelBaseModel, all HF defaults, 3 blocks [1,1,2], odd length (7 -> 4 -> 2)"),
    ("model_factorized_L11", "FunnelModel",
     dict(attention_type="factorized", vocab_size=128), 4, 11,
     "FunnelModel, factorized attention, 3 blocks [1,1,2], odd length"),
    ("base_factorized_max_L16", "FunnelBaseModel",
     dict(attention_type="factorized", pooling_type="max", block_sizes=[1, 1, 1], vocab_size=150), 4, 16,
     "FunnelBaseModel, factorized attention + max pooling, even length 16"),
    ("model_max_L7", "FunnelModel", dict(pooling_type="max", block_sizes=[1, 1, 1]), 4, 7,
     "FunnelModel, max pooling, odd length"),
    ("model_no_separate_cls_L8", "FunnelModel",
     dict(separate_cls=False, block_sizes=[1, 1, 1], vocab_size=120), 4, 8,
     "FunnelModel, separate_cls=False (no cls_mask; plain pair pooling; truncate_seq has no effect)"),
    ("base_factorized_no_separate_cls_L11", "FunnelBaseModel",
     dict(attention_type="factorized", separate_cls=False, block_sizes=[1, 1, 1]), 3, 11,
     "FunnelBaseModel, factorized + separate_cls=False, odd length"),
    ("model_no_truncate_L11", "FunnelModel", dict(truncate_seq=False, block_sizes=[1, 1, 1]), 4, 11,
     "FunnelModel, truncate_seq=False (last token kept when pooling; upsample without zero tail)"),
    ("model_no_pool_q_only_L8", "FunnelModel",
     dict(pool_q_only=False, block_sizes=[1, 1, 1], vocab_size=200), 3, 8,
     "FunnelModel, pool_q_only=False (keys/values and mask pooled before the pooling layer)"),
    ("base_factorized_no_pool_q_only_no_truncate_L7", "FunnelBaseModel",
     dict(attention_type="factorized", pool_q_only=False, truncate_seq=False, block_sizes=[1, 1, 1]), 4, 7,
     "FunnelBaseModel, factorized + pool_q_only=False + truncate_seq=False"),
    ("model_repeats_L16", "FunnelModel",
     dict(block_sizes=[1, 2, 1], block_repeats=[1, 2, 2], d_inner=48), 4, 16,
     "FunnelModel, block_sizes [1,2,1] block_repeats [1,2,2] (shared-weight repeats; order l0,l0,l1,l1)"),
    ("base_repeats_first_block_L9", "FunnelBaseModel",
     dict(block_sizes=[1, 1, 1], block_repeats=[2, 1, 3]), 3, 9,
     "FunnelBaseModel, block_repeats [2,1,3] incl. block 0 (safe without decoder: HF's decoder bug needs a decoder)"),
    ("model_2blocks_L7", "FunnelModel", dict(block_sizes=[1, 2], num_decoder_layers=2), 4, 7,
     "FunnelModel with 2 blocks (upsample stride 2), odd length"),
    ("model_2blocks_factorized_no_truncate_L16", "FunnelModel",
     dict(block_sizes=[1, 1], attention_type="factorized", truncate_seq=False), 3, 16,
     "FunnelModel with 2 blocks, factorized, truncate_seq=False"),
    ("base_nh2_L8", "FunnelBaseModel", dict(n_head=2, d_head=8, block_sizes=[1, 1, 1]), 4, 8,
     "FunnelBaseModel with n_head*d_head = 16 != d_model = 32 (HF allows it; post_proj is [32,16])"),
]

HEAD_CFG = dict(block_sizes=[1, 1, 1])  # heads run at the default attention settings; fewer layers keep files small
HEAD_CASES = [
    ("head_masked_lm_L8", "FunnelForMaskedLM", {"vocab_size": 120, "_embedding_scale": 0.25}, 3, 8,
     "FunnelForMaskedLM (lm_head tied to word embeddings + own bias) on FunnelModel; word embeddings scaled "
     "by 0.25 after init so the tied logits stay ~1e1 (fp32 ulp-level noise well under 1e-5)"),
    ("head_pretraining_L11", "FunnelForPreTraining", {}, 3, 11,
     "FunnelForPreTraining: ELECTRA discriminator (dense + gelu_new + dense_prediction) on FunnelModel"),
    ("head_seq_cls_L8", "FunnelForSequenceClassification", {"num_labels": 3}, 4, 8,
     "FunnelForSequenceClassification num_labels=3 on FunnelBaseModel (CLS of last block)"),
    ("head_seq_regression_L7", "FunnelForSequenceClassification",
     {"num_labels": 1, "problem_type": "regression"}, 4, 7,
     "FunnelForSequenceClassification num_labels=1 (regression) on FunnelBaseModel"),
    ("head_multiple_choice_L8", "FunnelForMultipleChoice", {}, 3, 8,
     "FunnelForMultipleChoice: inputs [3, 4, 8], flattened to [12, 8] in the body; logits [3, 4]"),
    ("head_token_cls_L7", "FunnelForTokenClassification", {"num_labels": 5, "block_sizes": [1, 1]}, 3, 7,
     "FunnelForTokenClassification num_labels=5 on a 2-block FunnelModel"),
    ("head_qa_L11", "FunnelForQuestionAnswering", {"block_sizes": [1, 1]}, 3, 11,
     "FunnelForQuestionAnswering (qa_outputs Linear(D,2) -> start/end logits) on a 2-block FunnelModel"),
]

ANCHOR_TOKEN_TYPE_A = [0, 1, 2, 3, 4, 5, 6, 4, 1, 3, 5, 0, 1]  # from HF's test_inference_tiny_model
ANCHOR_MASK = [[1] * 7, [1] * 4 + [0] * 3] * 6 + [[0, 1, 1, 0, 0, 1, 1]]

BIN_CASE = "model_default_L8"  # also gets pytorch_model.bin (torch.save of the state_dict)
TF_H5_CASE = "model_default_L8"  # also gets tf_model.h5 when --tf_h5_python is given


def standard_inputs(rng, batch, seq_len, vocab_size):
    """Rows cycle through 4 styles: full; trailing pad + all-zero types; a 0 in the middle; long trailing pad.

    Positions 0..3 are always kept, so no row becomes fully masked after pooling (even without separate_cls).
    """
    ids = rng.randint(0, vocab_size, size=(batch, seq_len)).astype(np.int32)
    mask = np.ones((batch, seq_len), np.int32)
    types = np.zeros((batch, seq_len), np.int32)
    for r in range(batch):
        style = r % 4
        if style == 0:  # [2, 0..., 1...], no padding
            a = (seq_len - 1) // 2 + r // 4
            types[r] = [2] + [0] * a + [1] * (seq_len - 1 - a)
        elif style == 1:  # all-zero token types, 2 trailing pads
            mask[r, seq_len - 2:] = 0
        elif style == 2:  # a single masked position in the middle, [2, 0, 1...]
            mask[r, max(4, seq_len // 2 + 1)] = 0
            types[r] = [2, 0] + [1] * (seq_len - 2)
        else:  # long trailing padding; pads have type 0 like the tokenizer's
            keep = max(4, (seq_len + 1) // 2)
            a = (keep - 1) // 2
            types[r] = [2] + [0] * a + [1] * (keep - 1 - a) + [0] * (seq_len - keep)
            mask[r, keep:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def anchor_inputs(vocab_size, masked):
    ids = (np.arange(91).reshape(13, 7) % vocab_size).astype(np.int32)
    types = np.array([[2] + [0] * a + [1] * (6 - a) for a in ANCHOR_TOKEN_TYPE_A], np.int32)
    mask = np.array(ANCHOR_MASK if masked else [[1] * 7] * 13, np.int32)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def perturb(model, torch, gen):
    """Add N(0, NOISE_STD) to biases, LayerNorm params, r_w/r_r/r_s biases, r_kernel and seg_embed."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.split(".")[-1]
            is_ln = ".layer_norm." in name
            if leaf.endswith("bias") or is_ln or leaf in ("r_kernel", "seg_embed"):
                p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * NOISE_STD)


def run(model, torch, inputs, head_class):
    """Return {name: np.ndarray} of hidden states, last_hidden_state and head logits."""
    t = {k: torch.as_tensor(v.astype(np.int64)) for k, v in inputs.items()}
    out = {}
    with torch.no_grad():
        if head_class is None:
            res = model(**t, output_hidden_states=True, return_dict=True)
            body_res = res
        else:
            res = model(**t, output_hidden_states=True, return_dict=True)
            body_in = t
            if head_class == "FunnelForMultipleChoice":
                body_in = {k: v.reshape(-1, v.shape[-1]) for k, v in t.items()}
            body_res = model.funnel(**body_in, output_hidden_states=True, return_dict=True)
            for a, b in zip(res.hidden_states, body_res.hidden_states):
                assert torch.equal(a, b), "head hidden states differ from body hidden states"
            if head_class == "FunnelForQuestionAnswering":
                out["start_logits"] = res.start_logits
                out["end_logits"] = res.end_logits
            else:
                out["logits"] = res.logits
        for i, h in enumerate(body_res.hidden_states):
            out[f"hidden_states_{i}"] = h
        out["last_hidden_state"] = body_res.last_hidden_state
    return {k: v.detach().cpu().numpy() for k, v in out.items()}


def flags_of(cfg):
    keys = ("attention_type", "pooling_type", "separate_cls", "truncate_seq", "pool_q_only", "block_sizes",
            "block_repeats", "num_decoder_layers", "vocab_size", "d_model", "n_head", "d_head", "d_inner")
    return {k: getattr(cfg, k) for k in keys}


def make_case(out_dir, name, cls_name, overrides, batch, seq_len, desc, seed, torch, transformers, anchor=False):
    case_dir = os.path.join(out_dir, name)
    if os.path.isdir(case_dir):
        shutil.rmtree(case_dir)
    os.makedirs(case_dir)
    torch.manual_seed(seed)
    cfg_kwargs = dict(BASE_CFG)
    cfg_kwargs.update(overrides)
    embedding_scale = cfg_kwargs.pop("_embedding_scale", None)
    config = transformers.FunnelConfig(**cfg_kwargs)
    model = getattr(transformers, cls_name)(config)
    model.eval()  # no dropout
    gen = torch.Generator().manual_seed(seed + 1)
    perturb(model, torch, gen)
    if embedding_scale is not None:
        with torch.no_grad():
            model.get_input_embeddings().weight.mul_(embedding_scale)

    rng = np.random.RandomState(seed)
    extra_sets = {}  # name -> inputs; written as inputs_<name>.npz / outputs_<name>.npz next to the main pair
    if anchor:
        inputs = anchor_inputs(config.vocab_size, masked=False)
        extra_sets["masked"] = anchor_inputs(config.vocab_size, masked=True)
    elif cls_name == "FunnelForMultipleChoice":
        flat = standard_inputs(rng, batch * 4, seq_len, config.vocab_size)
        inputs = {k: v.reshape(batch, 4, seq_len) for k, v in flat.items()}
    else:
        inputs = standard_inputs(rng, batch, seq_len, config.vocab_size)

    head_class = None if cls_name in ("FunnelModel", "FunnelBaseModel") else cls_name
    # Conditioning check: the same weights in float64. A parity tolerance of 1e-5 is only meaningful if HF's own
    # fp32 result is much closer than that to the fp64 one. (HF casts scores to fp32 before masking/softmax even
    # for fp64 weights, so this does not see the -1e6 mask quantisation of fully masked rows.)
    model64 = copy.deepcopy(model).double()
    model.save_pretrained(case_dir)  # config.json + model.safetensors
    fp64_diff = {}
    for set_name, set_inputs in [("", inputs)] + sorted(extra_sets.items()):
        outputs = run(model, torch, set_inputs, head_class)
        outputs64 = run(model64, torch, set_inputs, head_class)
        fp64_diff[set_name or "main"] = max(float(np.max(np.abs(outputs[k].astype(np.float64) - outputs64[k])))
                                            for k in outputs)
        suffix = f"_{set_name}" if set_name else ""
        np.savez(os.path.join(case_dir, f"inputs{suffix}.npz"), **set_inputs)
        np.savez(os.path.join(case_dir, f"outputs{suffix}.npz"),
                 **{k: v.astype(np.float32) for k, v in outputs.items()})
        if not set_name:
            main_outputs = outputs
    outputs = main_outputs
    if name == BIN_CASE:
        torch.save(model.state_dict(), os.path.join(case_dir, "pytorch_model.bin"))

    n_hidden = sum(1 for k in outputs if k.startswith("hidden_states_"))
    body = "FunnelBaseModel" if cls_name in ("FunnelBaseModel", "FunnelForSequenceClassification",
                                              "FunnelForMultipleChoice") else "FunnelModel"
    meta = {
        "case": name,
        "description": desc,
        "model_class": body,
        "head_class": head_class,
        "hf_class": cls_name,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "seed": seed,
        "init": f"HF default _init_weights, then + N(0, {NOISE_STD}) on every bias, LayerNorm weight/bias, "
                "r_w_bias, r_r_bias, r_s_bias, r_kernel, seg_embed",
        "eval_mode": True,
        "word_embedding_scale_after_init": embedding_scale,
        "input_shape": list(inputs["input_ids"].shape),
        "num_hidden_states": n_hidden,
        "output_shapes": {k: list(v.shape) for k, v in outputs.items()},
        "max_abs_output": max(float(np.max(np.abs(v))) for v in outputs.values()),
        "hf_fp32_vs_fp64_max_abs_diff": fp64_diff["main"],
        "extra_input_sets": sorted(extra_sets),
        "flags": flags_of(config),
        "files": sorted(os.listdir(case_dir)) + ["meta.json"],
    }
    if cls_name == "FunnelForMultipleChoice":
        meta["note"] = "hidden states and last_hidden_state are the body's, on inputs flattened to [B*4, L]"
    if anchor:
        meta["hf_fp32_vs_fp64_max_abs_diff_masked"] = fp64_diff["masked"]
        meta["note"] = ("inputs.npz/outputs.npz: no padding (HF test_inference_tiny_model, first check). "
                        "inputs_masked.npz/outputs_masked.npz: same ids/types with HF's test mask "
                        "[[1]*7, [1]*4+[0]*3]*6 + [[0,1,1,0,0,1,1]]. Row 12 has a masked CLS and is fully masked "
                        "from the 2nd layer of block 2 on (pooled mask [0,0]): HF then softmaxes fp32 scores that "
                        "were shifted by -1e6 (score - 1e6*(1-mask)), i.e. rounded to multiples of 1/16 -- an "
                        "implementation using where(mask, score, -inf/-1e6) gives different values for that row.")
    with open(os.path.join(case_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
    return meta


def all_cases():
    cases = []
    for i, (name, cls_name, ov, batch, seq_len, desc) in enumerate(MODEL_CASES + HEAD_CASES):
        if cls_name.startswith("FunnelFor"):
            ov = {**HEAD_CFG, **ov}
        cases.append(dict(name=name, cls_name=cls_name, overrides=ov, batch=batch, seq_len=seq_len, desc=desc,
                          seed=1000 + 17 * i, anchor=False))
    anchor_cfg = dict(block_sizes=[1, 1, 2], num_decoder_layers=1)
    cases.append(dict(name="anchor_sgugger_style", cls_name="FunnelModel", overrides=anchor_cfg, batch=13,
                      seq_len=7, seed=4242, anchor=True,
                      desc="HF integration-test style inputs: ids arange(91).reshape(13,7) % vocab, token types "
                           "[2]+[0]*a+[1]*(6-a), no padding; block_sizes [1,1,2], batch 13. Extra input set "
                           "'masked' (inputs_masked.npz/outputs_masked.npz) uses HF's test mask"))
    return cases


def make_tf_h5(out_dir, python):
    """Write tf_model.h5 for TF_H5_CASE with transformers 4.x TFFunnelModel, run in a separate interpreter."""
    case_dir = os.path.abspath(os.path.join(out_dir, TF_H5_CASE))
    code = (
        "import os, sys, json, tempfile, shutil\n"
        "os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')\n"
        "import numpy as np, transformers, tensorflow as tf\n"
        "from transformers import TFFunnelModel\n"
        "d = sys.argv[1]\n"
        "tmp = tempfile.mkdtemp()\n"
        "m = TFFunnelModel.from_pretrained(d, from_pt=True)\n"
        "m.save_pretrained(tmp)\n"
        "shutil.copy(os.path.join(tmp, 'tf_model.h5'), os.path.join(d, 'tf_model.h5'))\n"
        "inp = dict(np.load(os.path.join(d, 'inputs.npz')))\n"
        "ref = np.load(os.path.join(d, 'outputs.npz'))\n"
        "m2 = TFFunnelModel.from_pretrained(tmp)\n"
        "out = m2({k: tf.constant(v) for k, v in inp.items()}, output_hidden_states=True, training=False)\n"
        "diff = float(np.max(np.abs(out.last_hidden_state.numpy() - ref['last_hidden_state'])))\n"
        "hs = max(float(np.max(np.abs(h.numpy() - ref['hidden_states_%d' % i]))) "
        "for i, h in enumerate(out.hidden_states))\n"
        "print(json.dumps({'transformers_version': transformers.__version__, 'tensorflow_version': tf.__version__,"
        " 'tf_vs_pt_last_hidden_max_abs_diff': diff, 'tf_vs_pt_hidden_states_max_abs_diff': hs}))\n"
    )
    res = subprocess.run([python, "-c", code, case_dir], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"tf_model.h5 generation failed:\n{res.stderr[-4000:]}")
    info = json.loads(res.stdout.strip().splitlines()[-1])
    meta_path = os.path.join(case_dir, "meta.json")
    with open(meta_path) as f:
        meta = json.load(f)
    meta["tf_model_h5"] = dict(info, made_by="TFFunnelModel.from_pretrained(case_dir, from_pt=True).save_pretrained")
    meta["files"] = sorted(set(meta["files"]) | {"tf_model.h5"})
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
    return info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/fixtures/hf", help="output directory")
    ap.add_argument("--only", nargs="*", help="regenerate only these cases (index.json is still rewritten)")
    ap.add_argument("--tf_h5_python", default=None,
                    help="python of a venv with transformers 4.x + tf-keras + torch; writes tf_model.h5 "
                         f"for {TF_H5_CASE}")
    args = ap.parse_args(argv)

    import torch
    import transformers
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out, exist_ok=True)

    index_path = os.path.join(args.out, "index.json")
    index = {}
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = {c["name"]: c for c in json.load(f)["cases"]}
    for case in all_cases():
        if args.only and case["name"] not in args.only:
            continue
        meta = make_case(args.out, case["name"], case["cls_name"], case["overrides"], case["batch"],
                         case["seq_len"], case["desc"], case["seed"], torch, transformers, anchor=case["anchor"])
        index[case["name"]] = {"name": case["name"], "description": case["desc"], "hf_class": case["cls_name"],
                               "model_class": meta["model_class"], "head_class": meta["head_class"],
                               "input_shape": meta["input_shape"], "flags": meta["flags"],
                               "extra_input_sets": meta["extra_input_sets"], "files": meta["files"]}
        print(f"{case['name']:48s} max|out|={meta['max_abs_output']:8.3f}  "
              f"fp32-vs-fp64={meta['hf_fp32_vs_fp64_max_abs_diff']:.2e}")
    if args.tf_h5_python and (not args.only or TF_H5_CASE in args.only):
        info = make_tf_h5(args.out, args.tf_h5_python)
        index[TF_H5_CASE]["files"] = sorted(set(index[TF_H5_CASE]["files"]) | {"tf_model.h5"})
        print("tf_model.h5:", info)
    order = [c["name"] for c in all_cases()]
    with open(index_path, "w") as f:
        json.dump({"transformers_version": transformers.__version__, "torch_version": torch.__version__,
                   "generator": "tools/make_hf_fixtures.py",
                   "cases": [index[n] for n in order if n in index]}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
