"""Text edits that leave everything they do not touch byte for byte as it was.

The fixer never regenerates source from an AST (that would drop comments and formatting):
it computes small replacements at AST-given offsets and splices them in. Each line of the
result remembers which line of the original input it came from, so a fix can report the
line a reader of the input would look at.
"""

from __future__ import annotations

import io
from bisect import bisect_right
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace ``text[start:end]`` with ``new`` (an insertion when ``start == end``)."""

    start: int
    end: int
    new: str


class EditConflict(Exception):
    """Two edits of one pass overlap; the pass is skipped rather than guessed at."""


def split_lines(text: str) -> list[str]:
    """Lines with their breaks, split as the tokenizer splits them."""
    return io.StringIO(text, newline="").readlines()


def _line_starts(text: str, lines: list[str]) -> list[int]:
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    return starts


def apply_edits(
    text: str, lines: list[str], origins: list[int | None], edits: list[Edit]
) -> tuple[str, list[int | None]]:
    """Apply non-overlapping edits; return the new text and each new line's origin.

    ``lines`` is ``text`` split into lines (keeping line breaks) and ``origins[i]`` the input
    line that line ``i + 1`` came from (``None`` for lines the fixer wrote). A line of the
    result takes the origin of the old line its first character came from.
    """
    ordered = sorted(edits, key=lambda e: (e.start, e.end))
    pieces: list[str] = []
    # (new_start, old_start or None): where each piece of the new text came from.
    segments: list[tuple[int, int | None]] = []
    pos = new_len = 0
    for edit in ordered:
        if edit.start < pos:
            raise EditConflict(f"edits overlap at offset {edit.start}")
        for chunk, old in ((text[pos : edit.start], pos), (edit.new, None)):
            if chunk:
                segments.append((new_len, old))
                pieces.append(chunk)
                new_len += len(chunk)
        pos = edit.end
    if pos < len(text):
        segments.append((new_len, pos))
        pieces.append(text[pos:])
    new_text = "".join(pieces)

    old_starts = _line_starts(text, lines)
    new_origins: list[int | None] = []
    new_offset = 0
    seg_starts = [s for s, _ in segments]
    for new_line in split_lines(new_text):
        i = bisect_right(seg_starts, new_offset) - 1
        seg_new, seg_old = segments[i] if i >= 0 else (0, None)
        if seg_old is None:
            new_origins.append(None)
        else:
            old_line = bisect_right(old_starts, seg_old + new_offset - seg_new) - 1
            new_origins.append(origins[old_line] if old_line < len(origins) else None)
        new_offset += len(new_line)
    return new_text, new_origins
