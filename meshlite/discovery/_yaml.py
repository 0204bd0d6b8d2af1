"""YAML as config files need it: YAML 1.2 booleans (only true/false).

PyYAML implements YAML 1.1, where ``on``, ``off``, ``yes`` and ``no`` are booleans,
so the ``on:`` option of Retry and Hedge would become the key ``True``. This
loader reads them as strings (the schema still reads ``enabled: on`` as true).
PyYAML is imported on first use.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .._errors import ConfigError

__all__ = ["YAMLError", "load_json_or_yaml", "load_yaml"]

_loader: Any = None


class YAMLError(ValueError):
    """The text is not valid YAML (the message says where)."""


def _make_loader() -> Any:
    import yaml

    # libyaml's parser when PyYAML was built with it: several times faster, which
    # is most of a hot reload's time.
    base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc]
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver("tag:yaml.org,2002:bool",
                                 re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                 list("tTfF"))
    return Loader


def load_yaml(text: str) -> Any:
    """Parse ``text`` (safe: plain data only).

    Raises:
        YAMLError: it does not parse.
    """
    global _loader
    import yaml

    if _loader is None:
        _loader = _make_loader()
    try:
        return yaml.load(text, Loader=_loader)
    except yaml.YAMLError as error:
        raise YAMLError(str(error)) from None


def load_json_or_yaml(path: str, text: str, policy: str) -> Any:
    """Parse ``text`` as JSON when ``path`` ends in ``.json``, else as YAML.

    Raises:
        ConfigError: the text does not parse (naming ``path``; ``policy`` is the
            error's ``.policy``).
    """
    if path.endswith(".json"):
        try:
            return json.loads(text)
        except ValueError as error:
            raise ConfigError(f"{path}: not valid JSON: {error}", policy=policy) from None
    try:
        return load_yaml(text)
    except YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}", policy=policy) from None
