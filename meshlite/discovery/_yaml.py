"""YAML as config files need it: YAML 1.2 booleans (only true/false).

PyYAML implements YAML 1.1, where ``on``, ``off``, ``yes`` and ``no`` are booleans,
so the ``on:`` option of Retry and Hedge would become the key ``True``. This
loader reads them as strings (the schema still reads ``enabled: on`` as true).
PyYAML is imported on first use.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from .._errors import ConfigError

__all__ = ["YAMLError", "load_json_or_yaml", "load_yaml"]

_loader: list[Any] | None = None


class YAMLError(ValueError):
    """The text is not valid YAML (the message says where)."""


def _make_loader() -> list[Any]:
    import yaml

    # libyaml's parser when PyYAML was built with it: several times faster, which
    # is most of a hot reload's time.
    base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            # A key given twice in one mapping: PyYAML keeps the last, silently (a
            # service defined twice lost its first definition). Merged keys (<<) may
            # be overridden, as YAML says: only the mapping's own keys are compared.
            if isinstance(node, yaml.MappingNode):
                seen: dict[tuple[str, str], Any] = {}
                for key, _ in node.value:
                    if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE:
                        first = seen.setdefault((key.tag, key.value), key)
                        if first is not key:
                            raise yaml.constructor.ConstructorError(
                                "while constructing a mapping", node.start_mark,
                                f"found the key {key.value!r} twice (first at line "
                                f"{first.start_mark.line + 1})", key.start_mark)
            return super().construct_mapping(node, deep)

    loaders = [Loader]
    if base is not yaml.SafeLoader:
        class Threaded(yaml.composer.Composer, Loader):
            """libyaml's parser, event by event, under PyYAML's composer: libyaml
            composes a whole document in one call that holds the GIL (a 3,000-service
            config: 0.1-0.5 s in which no other thread runs, an event loop's
            included); one event at a time lets the others in between."""

            def __init__(self, stream: str) -> None:
                base.__init__(self, stream)
                yaml.composer.Composer.__init__(self)

        loaders.append(Threaded)
        if not _caps_nesting(base):
            # libyaml's composer recurses in C, with no limit before PyYAML 6.0.4: a
            # deeply nested file ("[[[[..." 50,000 deep) crashed the process (SIGSEGV).
            # PyYAML's composer raises RecursionError instead, which callers report.
            loaders[0] = Threaded
    for loader in loaders:
        loader.yaml_implicit_resolvers = {
            first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }
        loader.add_implicit_resolver("tag:yaml.org,2002:bool",
                                     re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                     list("tTfF"))
    return loaders


_MERGE = "tag:yaml.org,2002:merge"


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's members, refusing a name given twice (``json`` keeps the last)."""
    found: dict[str, Any] = {}
    for name, value in pairs:
        if name in found:
            raise ValueError(f"the member {name!r} is given twice in one object")
        found[name] = value
    return found


def _caps_nesting(base: Any) -> bool:
    """Whether libyaml refuses nesting deeper than it can compose (PyYAML 6.0.4 on):
    probed at a depth far above its limit and far below a crash."""
    import yaml

    try:
        yaml.load("[" * 2000 + "]" * 2000, Loader=base)
    except yaml.YAMLError:
        return True
    return False


def load_yaml(text: str) -> Any:
    """Parse ``text`` (safe: plain data only). Off the main thread (a reload in a
    worker thread) the document is composed one parser event at a time, so the
    GIL is not held for the whole parse (other threads keep running).

    Raises:
        YAMLError: it does not parse.
    """
    global _loader
    import yaml

    if _loader is None:
        _loader = _make_loader()
    loader = _loader[-1] if threading.current_thread() is not threading.main_thread() \
        else _loader[0]
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as error:
        # PyYAML names a str stream "<unicode string>"; the caller names the file.
        raise YAMLError(str(error).replace('in "<unicode string>", ', "at ")) from None


def load_json_or_yaml(path: str, text: str, policy: str) -> Any:
    """Parse ``text`` as JSON when ``path`` ends in ``.json``, else as YAML.

    Raises:
        ConfigError: the text does not parse (naming ``path``; ``policy`` is the
            error's ``.policy``).
    """
    if path.endswith(".json"):
        try:
            return json.loads(text, object_pairs_hook=_unique)
        except ValueError as error:
            raise ConfigError(f"{path}: not valid JSON: {error}", policy=policy) from None
    try:
        return load_yaml(text)
    except YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}", policy=policy) from None
