"""bert_char_tables, computed a block of code points at a time, equals BERT's rules applied to
each code point on its own (the straightforward statement below), on every BMP code point and on
astral blocks of each kind (ideographs, letters with case, marks, private use, unassigned)."""

import sys
import unicodedata

import numpy as np
import pytest

from funnel_tf.text import wordpiece as wp

SAMPLE = [*range(0x10000), *range(0x1D400, 0x1D800), *range(0x1E900, 0x1E960),
          *range(0x20000, 0x20200), *range(0x2F800, 0x2FA20), *range(0xE0000, 0xE0100),
          *range(0xF0000, 0xF0100), *range(0x30000, 0x30100), sys.maxunicode]


def _reference(cp: int, lower_case: bool):
    """(code, normalised string) of one code point, by BERT's rules one char at a time."""
    ch, category = chr(cp), unicodedata.category(chr(cp))
    if cp in (0, 0xFFFD):
        code = wp._DROP
    elif ch in "\t\n\r " or category == "Zs":
        code = wp._SPACE
    elif category.startswith("C"):
        code = wp._DROP
    elif ch.isspace():
        code = wp._SPACE
    elif any(lo <= cp <= hi for lo, hi in wp._CJK_RANGES):
        code = wp._CJK
    else:
        code = wp._NORMAL
    out = ch
    if code in (wp._NORMAL, wp._CJK):
        out = wp._normalize_char(ch, lower_case)
        if code == wp._NORMAL and lower_case:
            code |= wp._casing_flags(cp)
    return code, out


@pytest.mark.parametrize("lower_case", [True, False], ids=["uncased", "cased"])
def test_tables_match_the_rules_char_by_char(lower_case):
    starts, codes, mapping = wp.bert_char_tables(lower_case)
    assert starts[0] == 0 and np.all(np.diff(starts) > 0) and np.all(codes[1:] != codes[:-1])
    run = np.searchsorted(starts, SAMPLE, side="right") - 1
    for cp, code in zip(SAMPLE, codes[run]):
        want_code, want_out = _reference(cp, lower_case)
        assert (int(code), mapping.get(cp, chr(cp))) == (want_code, want_out), hex(cp)
    assert len(mapping) > (10_000 if lower_case else 500)  # accents, case, punctuation spacing
