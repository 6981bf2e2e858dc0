"""The versioned prompt files and the requests the translation stages build from them."""

from pathlib import Path

from okapi_pipeline.llm.requests import JsonRequest


def load_prompt(prompt_file, **values) -> str:
    """A versioned prompt file with its placeholders filled ({{ }} is a literal brace)."""
    return Path(prompt_file).read_text(encoding="utf-8").format(**values).strip()


def field_request(system: str, fields: dict[str, str], languages: tuple[str, str] | None = None) -> JsonRequest:
    """Only the non-empty fields are sent: an empty string stays empty without asking.

    `languages` (source, target) is what the `mt` backend translates between.
    """
    sent = {key: value for key, value in fields.items() if value}
    return JsonRequest(system=system, user=sent, keys=tuple(sent), languages=languages)
