"""Convert Funnel checkpoints between formats: HuggingFace, the original TF1 release and funnel_tf's own.

    python -m funnel_tf.convert SRC DST --to native          # hf or original -> funnel_tf
    python -m funnel_tf.convert SRC DST --to hf              # funnel_tf or original -> HF safetensors

The source format is detected (funnel_tf.json / net_config.json + model.ckpt-* / config.json + weights).
After writing, the output is reloaded and run next to the source model on a small batch (`--no_check`
skips this); the max abs difference is printed.
"""

import argparse
import sys
from typing import List, Optional

from funnel_tf.checkpoints.registry import ALIASES, CLASS_NAMES


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m funnel_tf.convert", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m funnel_tf.convert hf_dir/ out/ --to native\n"
               "  python -m funnel_tf.convert original_release/ out/ --to hf --model_class base\n"
               "  python -m funnel_tf.convert hf_dir/ out/ --to native --model_class token_cls "
               "--num_labels 9 --allow_missing head\n")
    ap.add_argument("src", help="checkpoint directory (funnel_tf, HF) or original TF1 directory / ckpt prefix")
    ap.add_argument("dst", help="output directory (created)")
    ap.add_argument("--to", required=True, choices=("native", "hf"), help="output format")
    ap.add_argument("--from", dest="src_format", default="auto", choices=("auto", "native", "hf", "original"),
                    help="source format (default: detect)")
    ap.add_argument("--model_class", default=None,
                    help=f"model to build: {', '.join(sorted(ALIASES))} or a class name "
                         f"({', '.join(CLASS_NAMES)}); default: what the checkpoint holds")
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


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from funnel_tf.checkpoints import CheckpointError, detect_format, load_model
    from funnel_tf.checkpoints.hf import export_hf
    from funnel_tf.checkpoints.native import save_pretrained

    try:
        fmt = detect_format(args.src) if args.src_format == "auto" else args.src_format
        kwargs = {"num_labels": args.num_labels}
        if fmt == "original":
            kwargs.update(net_config=args.net_config, truncate_seq=not args.no_truncate_seq)
        elif args.net_config or args.no_truncate_seq:
            raise CheckpointError("--net_config / --no_truncate_seq only apply to original TF1 checkpoints",
                                  source=args.src)
        model, report = load_model(args.src, model_class=args.model_class, allow_missing=args.allow_missing,
                                   format=fmt, return_report=True, **kwargs)
        print(report.summary())
        if report.skipped:
            print(f"  skipped (not part of {report.model_class}): {len(report.skipped)} tensors, e.g. "
                  + ", ".join(report.skipped[:5]))
        if report.missing_allowed:
            print("  left at initialisation (--allow_missing): " + ", ".join(report.missing_allowed))
        if args.to == "native":
            written = save_pretrained(model, args.dst)
        else:
            written = export_hf(model, args.dst, allow_mask_pooling_change=args.allow_mask_pooling_change)
        print(f"wrote {args.to}: " + ", ".join(sorted(written.values())))
        if not args.no_check:
            diff = _check(model, args.dst)
            note = ""
            if args.to == "hf" and model.config.mask_pooling != "min":
                note = " (padded rows may differ: HF's mask pooling, as accepted by --allow_mask_pooling_change)"
            print(f"check: reloaded {args.dst}, max abs output difference {diff:.3g}{note}")
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # unknown --model_class and similar argument errors
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def run():
    """Console-script entry point (`funnel-convert`)."""
    sys.exit(main())


if __name__ == "__main__":
    run()
