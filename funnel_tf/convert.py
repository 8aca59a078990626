"""Convert Funnel checkpoints between formats: HuggingFace, the original TF1 release and funnel_tf's own.

    python -m funnel_tf.convert SRC DST --to native          # hf or original -> funnel_tf
    python -m funnel_tf.convert SRC DST --to hf              # funnel_tf or original -> HF safetensors
    python -m funnel_tf.convert RUN DST --to native          # a pretraining run's newest checkpoint

The source format is detected (funnel_tf.json / a pretraining run: config.json + pretrain_args.json +
checkpoints/ckpt-N / net_config.json + model.ckpt-* / config.json + weights).
After writing, the output is reloaded and run next to the source model on a small batch (`--no_check`
skips this); the max abs difference is printed.
"""

import argparse
import functools
import fnmatch
import os
import sys
from typing import List, Optional

from funnel_tf.registry import MODEL_CLASSES
from funnel_tf.cli import ArgumentParser, main_with_user_errors
from funnel_tf.errors import UserError

# What a model folder holds (ours, HF's, the original release's, finetune.py's best/): only a folder
# made of these files is cleared by --overwrite.
MODEL_FOLDER_FILES = ("config.json", "funnel_tf.json", "*.weights.h5", "*.safetensors",
                      "*.safetensors.index.json", "pytorch_model*.bin", "tf_model.h5",
                      "task.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
                      "special_tokens_map.json", "generation_config.json", "net_config.json",
                      "model.ckpt*", "checkpoint", "README.md")


class ConvertError(UserError, ValueError):
    """A conversion that cannot be done as asked (destination, arguments)."""


def _looks_like_model_folder(entries: List[str], folder: str) -> bool:
    return all(not os.path.isdir(os.path.join(folder, e))
               and any(fnmatch.fnmatch(e, pat) for pat in MODEL_FOLDER_FILES) for e in entries)


def check_destination(src: str, dst: str, overwrite: bool) -> bool:
    """ConvertError unless `dst` is new, empty, or (with `overwrite`) a model folder that is not
    the source; returns True when dst must be cleared before writing. Nothing is changed here."""
    if os.path.exists(dst) and not os.path.isdir(dst):
        raise ConvertError(f"destination {dst} exists and is not a directory")
    if not os.path.isdir(dst) or not os.listdir(dst):
        return False
    entries = sorted(os.listdir(dst))
    if not overwrite:
        raise ConvertError(f"destination {dst} is not empty ({', '.join(entries[:4])}"
                           f"{', ...' if len(entries) > 4 else ''}); choose a new folder, or pass "
                           f"--overwrite to replace the model there")
    real_src, real_dst = os.path.realpath(src), os.path.realpath(dst)
    if real_src == real_dst or real_src.startswith(real_dst + os.sep):
        raise ConvertError(f"--overwrite would delete the source {src}: choose another destination")
    if not _looks_like_model_folder(entries, dst):
        others = [e for e in entries if os.path.isdir(os.path.join(dst, e))
                  or not any(fnmatch.fnmatch(e, pat) for pat in MODEL_FOLDER_FILES)]
        raise ConvertError(f"--overwrite: {dst} does not look like a model folder (it also holds "
                           f"{', '.join(others[:4])}); remove it yourself or choose another "
                           f"destination")
    return True


def _clear_folder(folder: str) -> None:
    for entry in os.listdir(folder):
        os.remove(os.path.join(folder, entry))


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(
        prog="python -m funnel_tf.convert", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m funnel_tf.convert hf_dir/ out/ --to native\n"
               "  python -m funnel_tf.convert original_release/ out/ --to hf --model_class base\n"
               "  python -m funnel_tf.convert hf_dir/ out/ --to native --model_class token_cls "
               "--num_labels 9 --allow_missing head\n")
    ap.add_argument("src", help="checkpoint directory (funnel_tf, HF), a pretraining run (pretrain.py's "
                                "model_dir: its newest checkpoint, or model_dir/checkpoints/ckpt-N) or an "
                                "original TF1 directory / ckpt prefix")
    ap.add_argument("dst", help="output directory (created; must be new or empty unless --overwrite)")
    ap.add_argument("--to", required=True, choices=("native", "hf"), help="output format")
    ap.add_argument("--from", dest="src_format", default="auto", choices=("auto", "native", "hf", "original", "training"),
                    help="source format (default: detect)")
    ap.add_argument("--model_class", default=None,
                    help=f"model to build: {', '.join(sorted(MODEL_CLASSES.aliases()))} or a class name "
                         f"({', '.join(MODEL_CLASSES.names())}); default: what the checkpoint holds")
    ap.add_argument("--num_labels", type=int, default=None, help="labels of a seq_cls / token_cls head")
    ap.add_argument("--allow_missing", action="append", default=[], metavar="PATTERN",
                    help="tensor-name pattern (fnmatch, checkpoint naming) allowed to be absent, or 'head' "
                         "for every head tensor; those keep their initial values (repeatable)")
    ap.add_argument("--net_config", default=None, help="original release: net_config.json if not next to the ckpt")
    ap.add_argument("--no_truncate_seq", action="store_true",
                    help="original release: build with truncate_seq=False (the original's runtime flag)")
    ap.add_argument("--allow_mask_pooling_change", action="store_true",
                    help="--to hf from an original checkpoint: accept HF's key-mask pooling ('min': a pooled "
                         "slot is dropped if any member is padding; the original keeps it if any member is "
                         "real). Outputs then differ for padded inputs whose pooling pairs straddle the padding")
    ap.add_argument("--no_check", action="store_true", help="skip the reload-and-compare check")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace the model in an existing destination: its files are removed first "
                         "(only when it holds nothing but model files: config, weights, task.json, "
                         "vocab.txt, tokenizer files), so no old file is left beside the new weights")
    return ap


def _check(src_model, dst_path: str, seq_len: int = 16) -> float:
    """Reload `dst_path` and return the max abs difference of all outputs against `src_model`."""
    import numpy as np

    from funnel_tf.checkpoints import load_model

    dst_model = load_model(dst_path)
    seq_len = max(seq_len, src_model.config.min_seq_len())
    rng = np.random.RandomState(0)
    inputs = {k: np.array(v) for k, v in src_model.dummy_inputs(batch_size=2, seq_len=seq_len).items()}
    inputs["input_ids"] = rng.randint(0, src_model.config.vocab_size, inputs["input_ids"].shape).astype(np.int32)
    inputs["attention_mask"][-1, ..., -5:] = 0  # one padded row: padding handling is part of the check
    a, b = src_model(inputs), dst_model(inputs)
    return max(float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))) for k in a
               if k in b and not isinstance(a[k], (tuple, list)))


@main_with_user_errors("python -m funnel_tf.convert")
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    clear = check_destination(args.src, args.dst, args.overwrite)
    from funnel_tf.checkpoints import CheckpointError, load_model, resolve
    from funnel_tf.checkpoints.hf import export_hf, hf_incompatibilities
    from funnel_tf.checkpoints.native import save_pretrained

    resolved = resolve(args.src) if args.src_format == "auto" else None  # what the source is, once
    fmt = resolved.format if resolved else args.src_format
    kwargs = {"num_labels": args.num_labels}
    if fmt == "original":
        kwargs.update(net_config=args.net_config, truncate_seq=not args.no_truncate_seq)
    elif args.net_config or args.no_truncate_seq:
        raise CheckpointError("--net_config / --no_truncate_seq only apply to original TF1 checkpoints",
                              source=args.src)
    try:
        load = resolved.load if resolved else functools.partial(load_model, args.src, format=fmt)
        model, report = load(model_class=args.model_class, allow_missing=args.allow_missing,
                             return_report=True, **kwargs)
    except UserError:
        raise
    except ValueError as e:  # unknown --model_class and similar argument errors
        raise ConvertError(str(e)) from None
    print(report.summary())
    if report.skipped:
        print(f"  skipped (not part of {report.model_class}): {len(report.skipped)} tensors, e.g. "
              + ", ".join(report.skipped[:5]))
    if report.missing_allowed:
        print("  left at initialisation (--allow_missing): " + ", ".join(report.missing_allowed))
    if args.to == "hf":  # what HF cannot express fails before the old model is touched
        why = hf_incompatibilities(model, args.allow_mask_pooling_change)
        if why:
            raise CheckpointError("cannot export to HuggingFace format: " + "; ".join(why),
                                  source=args.dst)
    if clear:  # the source loaded and can be written: only now replace the old model
        _clear_folder(args.dst)
    if args.to == "native":
        written = save_pretrained(model, args.dst)
    else:
        written = export_hf(model, args.dst,
                            allow_mask_pooling_change=args.allow_mask_pooling_change)
    print(f"wrote {args.to}: " + ", ".join(sorted(written.values())))
    if not args.no_check:
        diff = _check(model, args.dst)
        note = ""
        if args.to == "hf" and model.config.mask_pooling != "min":
            note = " (padded rows may differ: HF's mask pooling, as accepted by --allow_mask_pooling_change)"
        print(f"check: reloaded {args.dst}, max abs output difference {diff:.3g}{note}")
    return 0


def run():
    """Console-script entry point (`funnel-convert`)."""
    sys.exit(main())


if __name__ == "__main__":
    from funnel_tf.logs import quiet_tensorflow
    quiet_tensorflow()  # before TF loads; keeps a TF_CPP_MIN_LOG_LEVEL the user set
    run()
