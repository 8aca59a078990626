"""Turn `finetune.py --do_predict` outputs into the zip the GLUE server (gluebenchmark.com) takes.

    funnel-glue-submission --predictions_root=runs --output=glue_submission.zip
    python -m funnel_tf.glue_submission --predictions_root=runs --output=glue_submission.zip

Each GLUE run with --do_predict writes its test-set file(s) under `<model_dir>/predictions/`
(CoLA.tsv, SST-2.tsv, MRPC.tsv, STS-B.tsv, QQP.tsv, MNLI-m.tsv + MNLI-mm.tsv, QNLI.tsv, RTE.tsv,
WNLI.tsv; AX.tsv from `--task=ax` with the MNLI model). This finds the 11 files anywhere under
--predictions_root, checks each (header `index\\tprediction`, every index 0..N-1 once, N the test
set's size, predictions in the label strings the server expects) and writes them at the root of
the zip. Anything missing or wrong is one line naming the file and how to make it; nothing is
written then.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import zipfile
from typing import Dict, List, Optional

from funnel_tf.cli import ArgumentParser, main_with_user_errors
from funnel_tf.errors import UserError
from funnel_tf.metrics.glue import label_names

# File -> (finetune --task, test split file in the GLUE data, rows in the official test set,
#          label strings the server accepts (metrics.glue's, as finetune writes them); None: a
#          score in [0, 5]).
FILES = {name: (task, test_file, rows, label_names(key)) for name, task, key, test_file, rows in (
    ("CoLA.tsv", "cola", "cola", "CoLA/test.tsv", 1063),
    ("SST-2.tsv", "sst-2", "sst-2", "SST-2/test.tsv", 1821),
    ("MRPC.tsv", "mrpc", "mrpc", "MRPC/test.tsv", 1725),
    ("STS-B.tsv", "sts-b", "sts-b", "STS-B/test.tsv", 1379),
    ("QQP.tsv", "qqp", "qqp", "QQP/test.tsv", 390965),
    ("MNLI-m.tsv", "mnli", "mnli-m", "MNLI/test_matched.tsv", 9796),
    ("MNLI-mm.tsv", "mnli", "mnli-mm", "MNLI/test_mismatched.tsv", 9847),
    ("QNLI.tsv", "qnli", "qnli", "QNLI/test.tsv", 5463),
    ("RTE.tsv", "rte", "rte", "RTE/test.tsv", 3000),
    ("WNLI.tsv", "wnli", "wnli", "WNLI/test.tsv", 146),
    ("AX.tsv", "ax", "ax", "diagnostic/diagnostic.tsv", 1104))}
HEADER = "index\tprediction"


class SubmissionError(UserError, ValueError):
    """The predictions cannot make a valid GLUE submission (missing, duplicated or wrong file)."""


AX_HOW = ("AX.tsv is predicted by the MNLI model on the diagnostic set: finetune.py --task=ax "
          "--init_checkpoint=<the MNLI run's model_dir> --data_dir=<GLUE root> "
          "--model_dir=<new folder> --do_predict")


def how_to_make(missing: List[str]) -> str:
    """How to write the `missing` files with finetune.py."""
    runs = [f"{name} (--task={FILES[name][0]})" for name in missing if name != "AX.tsv"]
    parts = []
    if runs:
        parts.append(f"{', '.join(runs)}: finetune.py --task=<task> --data_dir=<GLUE root> "
                     f"--do_train --do_predict writes them under <model_dir>/predictions/")
    if "AX.tsv" in missing:
        parts.append(AX_HOW)
    return "; ".join(parts)


def _open(path: str, mode: str = "r"):
    if "://" in path:
        import tensorflow as tf

        return tf.io.gfile.GFile(path, mode)
    return open(path, mode, encoding=None if "b" in mode else "utf-8", newline=None)


def _walk(root: str):
    if "://" in root:
        import tensorflow as tf

        for folder, _, files in tf.io.gfile.walk(root):
            yield folder, files
    else:
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            yield folder, files


def find_files(root: str) -> Dict[str, str]:
    """{submission file name: path} for the files found under `root`; a name found twice is an
    error (which run's predictions to send is the user's choice)."""
    if "://" not in root and not os.path.isdir(root):
        raise SubmissionError(f"--predictions_root {root} is not a folder")
    found: Dict[str, List[str]] = {}
    for folder, files in _walk(root):
        for name in files:
            if name in FILES:  # exact names only: dev_CoLA.tsv (--predict_splits=dev) is not one
                found.setdefault(name, []).append(os.path.join(folder, name))
    for name, paths in sorted(found.items()):
        if len(paths) > 1:
            raise SubmissionError(f"{name} found {len(paths)} times under {root} ({', '.join(paths)}); "
                                  f"point --predictions_root at a folder holding one of each, or "
                                  f"give the one to use with --file={name}=PATH")
    return {name: paths[0] for name, paths in found.items()}


def _test_rows(glue_dir: Optional[str], name: str) -> Optional[int]:
    """Rows of the test file in the user's GLUE data (header excluded), when it is there."""
    if not glue_dir:
        return None
    rel = FILES[name][1]
    for candidate in (os.path.join(glue_dir, rel),
                      os.path.join(glue_dir, "AX", os.path.basename(rel))):
        if os.path.isfile(candidate):
            with open(candidate, "rb") as f:
                return max(sum(1 for line in f if line.strip()) - 1, 0)
    return None


def check_file(name: str, path: str, expected_rows: int) -> str:
    """The file's text when it is a valid `name` for the server; SubmissionError otherwise."""
    labels = FILES[name][3]
    try:
        with _open(path) as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise SubmissionError(f"{path}: not valid UTF-8 ({e.reason})") from None
    lines = text.splitlines()
    if not lines or lines[0].strip() != HEADER:
        raise SubmissionError(f"{path}: the first line must be {HEADER!r}, found "
                              f"{(lines[0] if lines else '')[:60]!r}")
    seen = set()
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        if len(cells) != 2 or not cells[0].strip().isdigit():
            raise SubmissionError(f"{path} line {number}: expected '<index>\\t<prediction>', "
                                  f"found {line[:60]!r}")
        index, value = int(cells[0]), cells[1].strip()
        if index in seen:
            raise SubmissionError(f"{path} line {number}: index {index} appears twice")
        seen.add(index)
        if labels is None:
            try:
                score = float(value)
            except ValueError:
                score = float("nan")
            if not 0.0 <= score <= 5.0:
                raise SubmissionError(f"{path} line {number}: {name} takes a score in [0, 5], "
                                      f"found {value!r}")
        elif value not in labels:
            raise SubmissionError(f"{path} line {number}: {name} takes one of "
                                  f"{', '.join(labels)}, found {value!r}")
    if len(seen) != expected_rows or seen != set(range(expected_rows)):
        raise SubmissionError(
            f"{path}: {len(seen)} predictions, the {name[:-4]} test set has {expected_rows} "
            f"(indices 0..{expected_rows - 1}); was it predicted from the full test file "
            f"(no --max_eval_examples, not --predict_splits=dev)?")
    return "\n".join(lines) + "\n"


def build_submission(root: Optional[str], output: str, glue_dir: Optional[str] = None,
                     files: Optional[Dict[str, str]] = None, overwrite: bool = False) -> Dict[str, int]:
    """Check the 11 files (found under `root`, or given in `files`) and write the zip at `output`;
    returns {file name: rows}. Everything is checked before anything is written."""
    if not output.endswith(".zip"):
        raise SubmissionError(f"--output {output} must be a .zip file")
    if os.path.exists(output) and not overwrite:
        raise SubmissionError(f"--output {output} exists; pass --overwrite to replace it")
    paths = find_files(root) if root else {}
    paths.update(files or {})
    missing = [name for name in FILES if name not in paths]
    if missing:
        raise SubmissionError(f"missing {len(missing)} of {len(FILES)} files under {root}: "
                              f"{how_to_make(missing)}")
    texts, rows = {}, {}
    for name in FILES:
        expected = _test_rows(glue_dir, name) or FILES[name][2]
        texts[name] = check_file(name, paths[name], expected)
        rows[name] = expected
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name in FILES:
            z.writestr(name, texts[name])
    folder = os.path.dirname(os.path.abspath(output))
    os.makedirs(folder, exist_ok=True)
    tmp = output + ".tmp"
    with open(tmp, "wb") as f:
        f.write(buffer.getvalue())
    os.replace(tmp, output)
    return rows


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog="python -m funnel_tf.glue_submission",
                        description=__doc__.split("\n\n")[0],
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--predictions_root", default=None,
                    help="Folder searched (recursively) for the 11 files, e.g. the folder holding "
                         "every run's model_dir.")
    ap.add_argument("--output", default="glue_submission.zip", help="The zip to write.")
    ap.add_argument("--glue_data_dir", default=None,
                    help="GLUE root: row counts are checked against its test files when they are "
                         "there (default: the official test sets' sizes).")
    ap.add_argument("--file", action="append", default=[], metavar="NAME=PATH",
                    help="Use this file for NAME (e.g. RTE.tsv=runs/rte2/predictions/RTE.tsv); "
                         "repeatable; overrides what --predictions_root finds.")
    ap.add_argument("--overwrite", action="store_true", help="Replace an existing --output.")
    return ap


@main_with_user_errors("python -m funnel_tf.glue_submission")
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    files = {}
    for item in args.file:
        name, sep, path = item.partition("=")
        if not sep or name not in FILES:
            raise SubmissionError(f"--file {item}: expected NAME=PATH with NAME one of "
                                  f"{', '.join(FILES)}")
        files[name] = path
    if not args.predictions_root and len(files) < len(FILES):
        raise SubmissionError("give --predictions_root (or all 11 files with --file)")
    rows = build_submission(args.predictions_root, args.output, args.glue_data_dir, files,
                            args.overwrite)
    print(f"wrote {args.output}: {len(rows)} files, "
          + ", ".join(f"{name} {n}" for name, n in rows.items()))
    print("upload it at gluebenchmark.com (Submit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
