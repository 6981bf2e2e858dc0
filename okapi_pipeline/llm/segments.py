"""A field cut into what a machine-translation model translates and what it must not see.

MT models translate sentences. A field becomes a list of pieces: sentences to
translate, and verbatim pieces that never reach the model (fenced code blocks, inline
code, URLs, e-mail addresses, placeholders, lines without letters such as numbers-only
lines, list markers, and the whitespace and newlines between all of these). Joining
the pieces with every sentence replaced by its translation rebuilds the field, so
whatever was kept comes back byte-identical.

Sentences are found by sentencex (Wikimedia's segmenter), which knows each language's
sentence stops and abbreviations, so "Dr. Smith" or "e.g. this" stays one sentence.
"""

import re
from dataclasses import dataclass

import sentencex

from okapi_pipeline.llm.checks import PROTECTED

FENCE = re.compile(r"```.*?```", re.S)
# Leading indentation and a list marker (-, *, •, >, 1., 2), a.) stay as they are.
LINE_HEAD = re.compile(r"^[ \t]*(?:(?:[-*•>]|\d+[.)]|[a-zA-Z][.)])[ \t]+)?")


@dataclass(frozen=True)
class Piece:
    text: str
    translate: bool


def has_letters(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


def pieces(text: str, language: str = "en") -> list[Piece]:
    """The field as pieces; "".join(p.text for p in pieces(text)) == text. `language`
    (ISO 639-1) is the text's own: it picks sentencex's stops and abbreviations."""
    out: list[Piece] = []
    position = 0
    for fence in FENCE.finditer(text):
        _lines(text[position : fence.start()], language, out)
        out.append(Piece(fence.group(), False))
        position = fence.end()
    _lines(text[position:], language, out)
    return _merged(out)


def _lines(chunk: str, language: str, out: list[Piece]) -> None:
    for line in chunk.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        ending = line[len(body) :]
        head = LINE_HEAD.match(body).group()
        if head:
            out.append(Piece(head, False))
        rest = body[len(head) :]
        if not has_letters(rest):
            out.append(Piece(rest, False))  # blank, numbers-only or punctuation-only
        else:
            position = 0
            for span in PROTECTED.finditer(rest):
                _sentences(rest[position : span.start()], language, out)
                out.append(Piece(span.group(), False))
                position = span.end()
            _sentences(rest[position:], language, out)
        out.append(Piece(ending, False))


def _sentences(text: str, language: str, out: list[Piece]) -> None:
    core = text.strip()
    if not core:
        out.append(Piece(text, False))
        return
    start = text.index(core)
    out.append(Piece(text[:start], False))
    sentences = list(sentencex.segment(language, core))
    if "".join(sentences) != core:
        sentences = [core]  # sentencex is lossless; should it ever not be, the bytes win over the split
    for sentence in sentences:
        # Each sentence carries the whitespace after it, which stays verbatim.
        body = sentence.rstrip()
        out.append(Piece(body, has_letters(body)))
        out.append(Piece(sentence[len(body) :], False))
    out.append(Piece(text[start + len(core) :], False))


def _merged(items: list[Piece]) -> list[Piece]:
    """Empty pieces dropped and neighbouring verbatim pieces joined."""
    out: list[Piece] = []
    for piece in items:
        if not piece.text:
            continue
        if out and not piece.translate and not out[-1].translate:
            out[-1] = Piece(out[-1].text + piece.text, False)
        else:
            out.append(piece)
    return out


def segments(text: str, language: str = "en") -> list[str]:
    """Only the sentences the model translates."""
    return [piece.text for piece in pieces(text, language) if piece.translate]


def join(parts: list[Piece], translations: list[str]) -> str:
    """The field again, with each translated piece replaced in order."""
    replacements = iter(translations)
    return "".join(next(replacements) if piece.translate else piece.text for piece in parts)


def cut(piece: Piece, token_offsets: list[tuple[int, int]], max_tokens: int) -> list[Piece]:
    """A sentence longer than `max_tokens` cut into parts the model can take, at the last
    whitespace before each limit (or at the token boundary where there is none, as in
    Chinese); the whitespace between parts is kept verbatim. `token_offsets` are the
    character spans of the sentence's tokens."""
    text = piece.text
    if len(token_offsets) <= max_tokens:
        return [piece]
    out: list[Piece] = []
    start, token = 0, 0
    while token < len(token_offsets):
        last = min(token + max_tokens, len(token_offsets)) - 1
        end = token_offsets[last][1]
        if last + 1 < len(token_offsets):
            space = max(text.rfind(" ", start + 1, end + 1), text.rfind("\n", start + 1, end + 1))
            if space > start:
                end = space
        part = text[start:end]
        if part.strip():
            core = part.rstrip()
            out.append(Piece(core, True))
            if part[len(core) :]:
                out.append(Piece(part[len(core) :], False))
        rest_start = end
        while rest_start < len(text) and text[rest_start].isspace():
            rest_start += 1
        if text[end:rest_start]:
            out.append(Piece(text[end:rest_start], False))
        start = rest_start
        token = next((i for i, (s, e) in enumerate(token_offsets) if e > start), len(token_offsets))
    return _merged(out)
