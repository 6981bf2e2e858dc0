"""The answer checks of the translation stages: what makes a translated field unusable.

Every field sent comes back as a non-empty string; when strict (`answer_checks:
strict`), protected spans (code, URLs, placeholders) and numbers are kept and the
text is in the target language (an offline identifier, lingua).
"""

import functools
import re
from collections import Counter

from okapi_pipeline.languages import OKAPI_GROUPS
from okapi_pipeline.llm.requests import JsonRequest


def strict_checks(llm_settings: dict) -> bool:
    return llm_settings["answer_checks"] == "strict"


def non_empty_answers(request: JsonRequest, answer: dict) -> str | None:
    """Every field that was sent comes back as a non-empty string."""
    for key in request.keys:
        value = answer[key]
        if not isinstance(value, str):
            return f"'{key}' is not a string"
        if not value.strip():
            return f"'{key}' is empty"
    return None


# Spans a translation must keep verbatim: fenced code, inline code, URLs, e-mail
# addresses and placeholders ({name}, {{name}}, <noinput>).
PROTECTED = re.compile(
    r"```.*?```|`[^`\n]+`|https?://[^\s<>\"'`)\]]*[^\s<>\"'`)\].,;:!?]|[\w.+-]+@[\w-]+\.[\w.]*\w"
    r"|\{\{?[A-Za-z_][\w.]*\}\}?|<[a-z_]+>",
    re.S,
)
DIGITS = re.compile(r"\d+")
# Below this many letters (outside protected spans) a text is too short to judge its language.
MIN_LETTERS_FOR_LANGUAGE = 20


def protected_spans(text: str) -> list[str]:
    return PROTECTED.findall(text)


def numbers(text: str) -> Counter:
    """Digit runs as numbers, so 1,000 and 1.000 agree and any script's digits count."""
    return Counter(int(run) for run in DIGITS.findall(PROTECTED.sub(" ", text)))


def prose(text: str) -> str:
    """The text with protected spans and digits removed: what the language is judged on."""
    return DIGITS.sub(" ", PROTECTED.sub(" ", text))


def letters(text: str) -> int:
    return sum(ch.isalpha() for ch in text)


@functools.lru_cache(maxsize=None)
def language_detector():
    """An offline identifier over English and the Okapi languages lingua knows.

    Low-accuracy (trigram) mode: loads in about a second instead of a dozen, and is
    reliable on sentences; shorter texts are not judged.
    """
    from lingua import LanguageDetectorBuilder  # lazy: lingua's models load only for strict checks

    languages = [
        lang
        for code in ["en", *(c for group in OKAPI_GROUPS.values() for c in group)]
        if (lang := lingua_language(code)) is not None
    ]
    return (
        LanguageDetectorBuilder.from_languages(*languages)
        .with_minimum_relative_distance(0.1)
        .with_low_accuracy_mode()
        .build()
    )


def lingua_language(code: str):
    """The lingua Language of an ISO 639-1 code, or None where lingua has no model."""
    from lingua import IsoCode639_1, Language  # lazy, as above

    iso = getattr(IsoCode639_1, code.upper(), None)
    return Language.from_iso_code_639_1(iso) if iso is not None else None


def detected_language(text: str) -> str | None:
    """ISO 639-1 code of the text's language, None when too short or unsure."""
    text = prose(text)
    if letters(text) < MIN_LETTERS_FOR_LANGUAGE:
        return None
    found = language_detector().detect_language_of(text)
    return found.iso_code_639_1.name.lower() if found is not None else None


def translation_problem(source: str, translated: str, language: str) -> str | None:
    """Why a translated field is unusable, else None: a protected span or a number was
    changed or dropped, the text was left in English, or it is in another language."""
    for span in protected_spans(source):
        if span not in translated:
            kind = (
                "code block"
                if span.startswith("```")
                else "code"
                if span.startswith("`")
                else "URL"
                if span.startswith("http")
                else "placeholder"
                if span[0] in "{<"
                else "e-mail address"
            )
            return f"{kind} not kept"
    missing = numbers(source) - numbers(translated)
    if missing:
        return f"number {next(iter(missing))} not kept"
    if translated.strip() == source.strip() and letters(prose(source)) >= MIN_LETTERS_FOR_LANGUAGE:
        return "left untranslated"
    if lingua_language(language) is not None:
        found = detected_language(translated)
        if found is not None and found != language:
            return f"wrong language ({found})"
    return None


def translation_check(language: str, strict: bool = True):
    """The check of a translation answer: every field non-empty and, when strict,
    protected spans, numbers and the language in order."""

    def check(request: JsonRequest, answer: dict) -> str | None:
        reason = non_empty_answers(request, answer)
        if reason or not strict:
            return reason
        for key in request.keys:
            problem = translation_problem(request.user[key], answer[key], language)
            if problem:
                return f"'{key}': {problem}"
        return None

    return check
