"""SQuAD v1.1 / v2.0 JSON -> examples (question, context, answers with character offsets), with
malformed questions counted or refused by `skip_malformed` (text/squad.py makes the features)."""

from __future__ import annotations

import dataclasses
import json
from typing import List, Tuple

import tensorflow as tf  # tf.io.gfile: gs:// paths

from funnel_tf.text.errors import DataFormatError, MalformedCounter


@dataclasses.dataclass
class SquadExample:
    """One question: gold answers are (text, character start) pairs into `context`."""

    qas_id: str
    question: str
    context: str
    answers: List[Tuple[str, int]]
    is_impossible: bool = False
    title: str = ""

    @property
    def answer_span(self) -> Tuple[int, int]:
        """Character [start, end) of the first gold answer, or (-1, -1) when impossible."""
        if self.is_impossible or not self.answers:
            return -1, -1
        text, start = self.answers[0]
        return start, start + len(text)


@dataclasses.dataclass
class SquadData:
    """Parsed SQuAD file: examples in file order, version and how many records were skipped."""

    examples: List[SquadExample]
    version: str
    allow_impossible: bool     # v2.0 semantics: a question may have no answer
    num_skipped: int = 0
    source: str = ""

    def __len__(self) -> int:
        return len(self.examples)


def read_squad(path: str, *, skip_malformed: bool = False) -> SquadData:
    """Parses an official SQuAD v1.1/v2.0 JSON file (`{"data": [...], "version": ...}`).

    Raises `DataFormatError` naming the file and line (bad JSON) or example id (missing fields,
    an answerable question without answers, an answer without `answer_start`, or answer text not
    found at its offset); with `skip_malformed=True` those questions are skipped and counted.
    """
    counter = MalformedCounter(skip_malformed)
    with tf.io.gfile.GFile(path, "rb") as f:
        raw = f.read()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DataFormatError(f"not valid UTF-8: {e.reason}", path,
                              raw[:e.start].count(b"\n") + 1) from None
    except json.JSONDecodeError as e:
        raise DataFormatError(f"bad JSON: {e.msg} (column {e.colno})", path, e.lineno) from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DataFormatError('expected a JSON object with a "data" list', path, 1)
    version = str(data.get("version", ""))
    examples: List[SquadExample] = []
    saw_impossible_key = False
    for a_i, article in enumerate(data["data"]):
        title = article.get("title", "") if isinstance(article, dict) else ""
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            counter.report(DataFormatError(f'article {a_i} has no "paragraphs" list', path,
                                           example_id=f"article {a_i}"))
            continue
        for p_i, para in enumerate(paragraphs):
            where = f"article {a_i} paragraph {p_i}"
            if not (isinstance(para, dict) and isinstance(para.get("context"), str)
                    and isinstance(para.get("qas"), list)):
                counter.report(DataFormatError('paragraph needs a "context" string and a "qas" '
                                               'list', path, example_id=where))
                continue
            context = para["context"]
            for q_i, qa in enumerate(para["qas"]):
                saw_impossible_key |= isinstance(qa, dict) and "is_impossible" in qa
                try:
                    examples.append(_parse_question(qa, context, title, f"{where} question {q_i}"))
                except _BadQuestion as e:
                    counter.report(DataFormatError(e.message, path, example_id=e.qid))
    counter.log(str(path))
    allow_impossible = version.lstrip("v").startswith("2") or saw_impossible_key
    if not examples:
        raise DataFormatError("no questions found", path)
    return SquadData(examples, version, allow_impossible, counter.count, str(path))


class _BadQuestion(Exception):
    def __init__(self, message: str, qid: str):
        super().__init__(message)
        self.message, self.qid = message, qid


def _parse_question(qa, context: str, title: str, where: str) -> SquadExample:
    if not isinstance(qa, dict):
        raise _BadQuestion("question entry is not an object", where)
    qid = qa.get("id")
    if not isinstance(qid, str) or not qid:
        raise _BadQuestion('missing "id"', where)
    if not isinstance(qa.get("question"), str):
        raise _BadQuestion('missing "question" text', qid)
    impossible = qa.get("is_impossible", False)
    if not isinstance(impossible, bool):
        raise _BadQuestion(f"is_impossible must be true/false, got {impossible!r}", qid)
    answers = []
    raw_answers = qa.get("answers", [])
    if not isinstance(raw_answers, list):
        raise _BadQuestion('"answers" must be a list', qid)
    if not impossible:
        if not raw_answers:
            raise _BadQuestion("answerable question has no answers", qid)
        for ans in raw_answers:
            if not isinstance(ans, dict) or not isinstance(ans.get("text"), str):
                raise _BadQuestion(f"answer without text: {ans!r:.80}", qid)
            start = ans.get("answer_start")
            if start is None:
                raise _BadQuestion(f"answer {ans['text']!r:.60} has no answer_start", qid)
            if isinstance(start, bool) or not isinstance(start, int):
                raise _BadQuestion(f"answer_start {start!r} is not an integer", qid)
            text = ans["text"]
            if not text.strip():
                raise _BadQuestion("answer text is empty", qid)
            if start < 0 or context[start:start + len(text)] != text:
                found = context[max(start, 0):max(start, 0) + len(text)]
                raise _BadQuestion(f"answer text {text!r:.60} not at offset {start} (context "
                                   f"has {found!r:.60})", qid)
            answers.append((text, start))
    return SquadExample(qid, qa["question"], context, answers, impossible, title)
