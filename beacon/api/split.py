"""Long texts split into parts a channel accepts: at a paragraph, else a sentence, else a word
boundary, and never inside a character cluster (a surrogate pair, an emoji sequence, a letter and
its combining marks) where a boundary can be found.

Lengths are counted in UTF-16 code units, which is at least the number of characters: a part that
fits by that count fits however the channel counts.
"""

from __future__ import annotations

import re
import unicodedata

#: Longest text message per channel (UTF-16 code units); others get DEFAULT_TEXT_LIMIT.
TEXT_LIMITS = {"whatsapp": 4096, "telegram": 4096}
DEFAULT_TEXT_LIMIT = 4096

_PARAGRAPH = re.compile(r"\n\s*\n")
# Latin sentence ends need a space after them ("3.14" is no boundary); CJK ones stand alone.
_SENTENCE = re.compile("(?<=[.!?\u2026])[\"')\\]]*\\s+|(?<=[\u3002\uff01\uff1f])")
_SPACE = re.compile(r"\s+")
_ZWJ = "\u200d"


def text_limit(channel: str) -> int:
    return TEXT_LIMITS.get(channel, DEFAULT_TEXT_LIMIT)


def units(text: str) -> int:
    """Length in UTF-16 code units (a character outside the BMP counts 2)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def split_text(text: str, limit: int) -> list[str]:
    """``text`` in order as parts of at most ``limit`` UTF-16 units each; one part when it fits."""
    if limit < 2:
        raise ValueError(f"a text limit of {limit} cannot hold a character")
    parts: list[str] = []
    rest = text
    while units(rest) > limit:
        fit = _fitting_prefix(rest, limit)
        cut = _boundary(rest, fit)
        head, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
        if head:
            parts.append(head)
    if rest or not parts:
        parts.append(rest)
    return parts


def _fitting_prefix(text: str, limit: int) -> int:
    """The most characters from the start whose UTF-16 length is within ``limit``."""
    used = 0
    for index, ch in enumerate(text):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > limit:
            return index
    return len(text)


def _boundary(text: str, fit: int) -> int:
    """Where to cut within ``text[:fit]``: the last paragraph, sentence or word boundary in its second
    half (so parts stay long), else the last cluster boundary."""
    window = text[:fit]
    half = fit // 2
    for pattern in (_PARAGRAPH, _SENTENCE, _SPACE):
        ends = [m.end() for m in pattern.finditer(window) if m.end() > half and m.end() <= fit]
        if ends:
            return ends[-1]
    cut = fit
    while cut > 1 and not _cluster_boundary(text, cut):
        cut -= 1
    return cut if cut > 1 else fit


def _cluster_boundary(text: str, index: int) -> bool:
    """Whether cutting before ``text[index]`` leaves every character cluster whole (an approximation
    of Unicode grapheme clusters: combining marks, joiners, variation selectors, skin tones, flags)."""
    if index <= 0 or index >= len(text):
        return True
    before, after = text[index - 1], text[index]
    if before == _ZWJ or after == _ZWJ:
        return False
    if unicodedata.combining(after) or unicodedata.category(after) in {"Mn", "Me", "Mc"}:
        return False
    if "\ufe00" <= after <= "\ufe0f" or "\U0001f3fb" <= after <= "\U0001f3ff" or "\U000e0020" <= after <= "\U000e007f":
        return False
    if _regional(before) and _regional(after):
        # Flags are pairs of regional indicators: cut only after an even run of them.
        run = 0
        while index - 1 - run >= 0 and _regional(text[index - 1 - run]):
            run += 1
        return run % 2 == 0
    return True


def _regional(ch: str) -> bool:
    return "\U0001f1e6" <= ch <= "\U0001f1ff"
