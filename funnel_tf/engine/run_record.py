"""What a run folder is: the settings that define a run, kept in `<model_dir>/run.json`, so that
a resume continues the same run or refuses in one line.

Shared by pretraining and finetuning. A record has two parts: `defining` (task or objective, model
config, vocab, sequence length, batch, seed, the optimizer schedule, precision...: changing any of
them mid-run trains something else on the old weights) and `changeable` (train length, cadences,
paths, engine knobs: a resume may change them, and the log says so). Nested dicts (the model
config) are compared field by field.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Callable, Dict, List, Optional, Tuple

import tensorflow as tf

from funnel_tf import storage
from funnel_tf.errors import UserError

RECORD_FILE = "run.json"
FORMAT = 1


class RunMismatchError(UserError, ValueError):
    """A model_dir that holds another run than the one asked for; the message lists what differs."""


def vocab_fingerprint(path: str) -> str:
    """sha256 of the vocab file's bytes (the same vocab under another path matches)."""
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()[:16]


def make_record(kind: str, defining: Dict[str, object],
                changeable: Dict[str, object]) -> dict:
    """A JSON-able record; values go through JSON so a read-back record compares equal."""
    return json.loads(json.dumps({"format": FORMAT, "kind": kind, "defining": defining,
                                  "changeable": changeable}, default=str))


def read_record(model_dir: str) -> Optional[dict]:
    """The record in `model_dir`, or None when there is none."""
    path = os.path.join(model_dir, RECORD_FILE)
    if not tf.io.gfile.exists(path):
        return None
    try:
        with tf.io.gfile.GFile(path) as f:
            record = json.load(f)
        if not isinstance(record.get("defining"), dict):
            raise ValueError("no 'defining' settings")
    except (ValueError, AttributeError, tf.errors.OpError) as e:
        raise RunMismatchError(f"{path} is unreadable ({str(e).splitlines()[0][:200]}); use a new "
                               f"--model_dir") from None
    return record


def saved_record(model_dir: str, legacy_file: str,
                 from_legacy: Callable[[dict], dict]) -> Tuple[Optional[dict], str]:
    """(record, file it came from) of the run in `model_dir`: run.json, or for a folder written
    before run.json existed, `from_legacy(<legacy_file's JSON>)`; (None, "") when neither is there
    or the legacy file cannot be read as one."""
    record = read_record(model_dir)
    if record is not None:
        return record, RECORD_FILE
    path = os.path.join(model_dir, legacy_file)
    if not tf.io.gfile.exists(path):
        return None, ""
    try:
        with tf.io.gfile.GFile(path) as f:
            return from_legacy(json.load(f)), legacy_file
    except (ValueError, KeyError, TypeError, AttributeError, tf.errors.OpError):
        return None, ""


def write_record(model_dir: str, record: dict) -> None:
    """Write `record` as `<model_dir>/run.json` (a temp file renamed into place)."""
    storage.atomic_write_text(os.path.join(model_dir, RECORD_FILE),
                              json.dumps(record, indent=1, sort_keys=True) + "\n")


def _flat(d: Dict[str, object], prefix: str = "") -> Dict[str, object]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _show(v) -> str:
    return json.dumps(v) if not isinstance(v, str) else v


def differences(saved: Dict[str, object], now: Dict[str, object]) -> List[str]:
    """'name old -> new' for every setting both hold with another value (a setting only one of
    them holds, e.g. one added since the run started, is not compared)."""
    old, new = _flat(saved), _flat(now)
    return [f"{k} {_show(old[k])} -> {_show(new[k])}"
            for k in sorted(set(old) & set(new)) if old[k] != new[k]]


def check_resume(model_dir: str, record: dict, saved: Optional[dict],
                 source: str = RECORD_FILE) -> List[str]:
    """Compare the run asked for (`record`) with the one `model_dir` holds (`saved`, read from
    `source`). Different defining settings: RunMismatchError, one line listing them all.
    Otherwise returns one log line per changed changeable setting ('resuming with changed
    train_steps 100 -> 200')."""
    if saved is None:
        return []
    diffs = []
    if saved.get("kind", record["kind"]) != record["kind"]:
        diffs.append(f"kind {saved['kind']} -> {record['kind']}")
    diffs += differences(saved.get("defining", {}), record["defining"])
    if diffs:
        raise RunMismatchError(
            f"--model_dir {model_dir} holds a {saved.get('kind', record['kind'])} run with other "
            f"settings ({source}): {'; '.join(diffs)}; resume with the same settings or use a new "
            f"--model_dir")
    return [f"resuming with changed {d}"
            for d in differences(saved.get("changeable", {}), record.get("changeable", {}))]


__all__ = ["RECORD_FILE", "RunMismatchError", "vocab_fingerprint", "make_record", "read_record",
           "write_record", "differences", "check_resume"]
