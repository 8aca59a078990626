"""Reading a plain-text corpus: documents, decoding policies, missing inputs."""

import pytest

from funnel_tf.text.corpus import ReadStats, expand_inputs, iter_documents


def test_doc_modes(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("one\ntwo\n\n\nthree\n \nfour\n", encoding="utf-8")
    assert list(iter_documents([str(f)], "blank_line")) == [["one", "two"], ["three"], ["four"]]
    assert list(iter_documents([str(f)], "file")) == [["one", "two", "three", "four"]]


def test_undecodable_lines_error_skip_or_fallback(tmp_path):
    f = tmp_path / "bad.txt"
    f.write_bytes(b"good line\ncaf\xe9 latin-1 line\nanother good line\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: line is not valid UTF-8"):
        list(iter_documents([str(f)]))
    stats = ReadStats()
    docs = list(iter_documents([str(f)], stats=stats, skip_undecodable_lines=True))
    assert docs == [["good line", "another good line"]] and stats.skipped_undecodable_lines == 1
    stats = ReadStats()
    docs = list(iter_documents([str(f)], stats=stats, fallback_encoding="latin-1"))
    assert docs[0][1] == "café latin-1 line" and stats.fallback_decoded_lines == 1
    with pytest.raises(FileNotFoundError, match="matched no files"):
        expand_inputs([str(tmp_path / "nope*.txt")])
