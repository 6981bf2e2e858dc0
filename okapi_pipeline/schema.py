"""The config's JSON schema: reading it, filling its defaults, and its errors as one line.

The schema (schemas/config.schema.yaml) is the one place for defaults: okapi_pipeline.config
validates a config against it, fills them in, and adds the checks across keys.
"""

import copy
import functools
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"

# The `build.architecture`s that are encoder-decoder translation models (tiny/mt_models.py),
# each its own language-token family: NLLB (m2m_100 architecture, FLORES-200 language
# tokens), M2M100 (m2m_100, __xx__ tokens) and MADLAD-400 (T5, <2xx> tokens).
MT_ARCHITECTURES = ("nllb", "m2m100", "madlad")


class ConfigError(ValueError):
    """A config problem, in one line that names the key."""


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "(top level)"


def one_line(error: jsonschema.ValidationError) -> str:
    """A schema violation as one line that names the key."""
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        where = _key_path(error)
        keys = ", ".join(extra)
        prefix = "" if where == "(top level)" else where + "."
        return (
            f"config: unknown key '{prefix}{extra[0]}'"
            if len(extra) == 1
            else (f"config: unknown keys in '{where}': {keys}")
        )
    if error.validator == "unevaluatedProperties":
        return f"config: unknown key in '{_key_path(error)}': {error.message}"
    if error.validator == "required":
        missing = error.message.split("'")[1]
        where = _key_path(error)
        prefix = "" if where == "(top level)" else where + "."
        return f"config: missing key '{prefix}{missing}'"
    return f"config: '{_key_path(error)}': {error.message}"


def _set_defaults(instance, schema):
    """Fill in the `default` values of the schema's inline blocks (recursively), for
    named properties and for the entries of a mapping (`additionalProperties`).

    A `$ref` block gets none: the stages' `llm` blocks (and the translators) refer to
    `llm_settings` and hold only what overrides the top-level `llm` block, which
    `validate_config` fills from that definition itself.
    """
    if not isinstance(instance, dict):
        return
    properties = schema.get("properties", {})
    for key, sub in properties.items():
        if "default" in sub and key not in instance:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _set_defaults(instance[key], sub)
    entries = schema.get("additionalProperties")
    if isinstance(entries, dict) and "$ref" not in entries:
        for key in set(instance) - set(properties):
            _set_defaults(instance[key], entries)


@functools.cache
def _schema_file(path: str) -> dict:
    return yaml.safe_load(Path(path).read_text())


def load_schema(path=SCHEMA_PATH) -> dict:
    return copy.deepcopy(_schema_file(str(path)))


def llm_settings_schema() -> dict:
    """The schema of an LLM block (`$defs.llm_settings`), read once; not to be modified."""
    return _schema_file(str(SCHEMA_PATH))["$defs"]["llm_settings"]
