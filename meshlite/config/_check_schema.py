"""Run the schema over a document and turn pydantic's errors into path messages."""

from __future__ import annotations

import copy
import types
import typing
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from ._problems import Path, Problems
from ._schema import MeshConfig, ServiceSection

__all__ = ["record_validation_errors", "validate_document", "validate_part"]

M = TypeVar("M")


_DROPPED: Any = object()
_PRUNE_ROUNDS = 4


def _drop(data: Any, loc: Path) -> None:
    """Remove the value at ``loc`` (or, where ``loc`` goes through a scalar, the
    deepest key above it) from nested dicts and lists, in place."""
    node, parent, key = data, None, None
    for part in loc:
        if (isinstance(node, dict) and part in node) or (
                isinstance(node, list) and isinstance(part, int) and part < len(node)):
            parent, key, node = node, part, node[part]  # type: ignore[index]
        else:
            break
    if parent is not None:
        parent[key] = _DROPPED  # type: ignore[index]


def _sweep(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sweep(v) for k, v in value.items() if v is not _DROPPED}
    if isinstance(value, list):
        return [_sweep(v) for v in value if v is not _DROPPED]
    return value


def _lenient(model: type[BaseModel], data: Any, path: Path, problems: Problems,
             ) -> Any:
    """``data`` as ``model``; when it fails, record the errors and try again without
    the values in error (then without the whole sections in error), so the rest can
    still be built and checked and its problems reported too. None when even that
    fails."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        record_validation_errors(problems, path, error, model)
        if not isinstance(data, dict):
            return None
        locs = [tuple(item["loc"]) for item in error.errors() if item["loc"]]
    pruned: Any = copy.deepcopy(data)
    for _ in range(_PRUNE_ROUNDS):  # leaving a value out may make its section incomplete
        for loc in locs:
            _drop(pruned, loc)
        pruned = _sweep(pruned)
        try:
            return model.model_validate(pruned)
        except ValidationError as again:
            locs = [tuple(item["loc"]) for item in again.errors() if item["loc"]]
    top = {loc[0] for loc in locs}
    try:
        return model.model_validate({k: v for k, v in pruned.items() if k not in top})
    except ValidationError:
        return None


def validate_document(data: dict[str, Any], problems: Problems) -> MeshConfig | None:
    """``data`` as a :class:`MeshConfig`, each problem recorded. Each service is
    checked on its own and sections in error are left out, so the result (partial
    when there were problems) can still be built to find the other problems."""
    top = _lenient(MeshConfig, {k: v for k, v in data.items() if k != "services"}, (),
                   problems)
    services: dict[str, ServiceSection] = {}
    raw = data.get("services")
    if isinstance(raw, dict):
        for name, section in raw.items():
            if not isinstance(section, dict | type(None)):
                problems.add(("services", str(name)), "must be a mapping (backends, "
                             f"balancer, policies...), got {section!r}")
                continue
            built = _lenient(ServiceSection, section or {}, ("services", str(name)),
                             problems)
            if built is not None:
                services[str(name)] = built
    elif raw is not None:
        problems.add(("services",), "must be a mapping of service names to services")
    if top is None:
        return None
    config: MeshConfig = top.model_copy(update={"services": services})
    return config


def validate_part(adapter: TypeAdapter[M], data: Any, path: Path, problems: Problems,
                  root: Any = None) -> M | None:
    """Validate one part of the document (``data`` at ``path``) with ``adapter``."""
    try:
        return adapter.validate_python(data)
    except ValidationError as error:
        record_validation_errors(problems, path, error, root)
        return None


def record_validation_errors(problems: Problems, path: Path, error: ValidationError,
                             root: Any) -> None:
    """Record each of pydantic's errors under ``path`` + its location."""
    for item in error.errors(include_url=False):
        loc: Path = tuple(item["loc"])
        problems.add((*path, *loc), _message(item, root, loc))


def _message(item: Any, root: Any, loc: Path) -> str:
    kind = item["type"]
    if kind == "extra_forbidden":
        valid = _fields_at(root, loc[:-1])
        hint = f"; valid options: {', '.join(valid)}" if valid else ""
        return f"unknown option{hint}"
    if kind == "missing":
        return "required option is missing"
    message = str(item["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if message.startswith("Input should be "):
        message = "must be " + message[len("Input should be "):]
    value = item.get("input")
    if value is None or isinstance(value, str | int | float | bool):
        message += f", got {value!r}"
    elif isinstance(value, dict | list):
        message += f", got a {'mapping' if isinstance(value, dict) else 'list'}"
    return message


def _fields_at(root: Any, loc: Path) -> list[str]:
    """The option names of the model at ``loc`` under ``root`` (for "valid options")."""
    current: Any = root
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    model = _model(current)
    return list(model.model_fields) if model is not None else []


def _model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation) if _is_union(annotation) else ():
        found = _model(arg)
        if found is not None:
            return found
    return None


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _step(annotation: Any, part: str | int) -> Any:
    model = _model(annotation)
    if model is not None and isinstance(part, str):
        field = model.model_fields.get(part)
        return None if field is None else field.annotation
    candidates = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    for candidate in candidates:
        origin = typing.get_origin(candidate)
        args = typing.get_args(candidate)
        if origin is dict and args:
            return args[1]
        if origin is list and args and isinstance(part, int):
            return args[0]
    return None
