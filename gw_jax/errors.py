"""The one exception type for bad user input (files, fields, flags), and checks that raise it.

The CLI turns it into a one-line reason and exit status 2; library callers can catch it. Checks on output
folders and gs:// buckets live in ``gw_jax.storage``.

    raw = load_json(path, what="a T5 config")                # missing / broken file -> names the file
    check_types(Model.__init__, kwargs, where=str(path))     # "path: field 'num_heads' must be int, got 4.0"
"""

import json
import types
import typing
from collections.abc import Mapping, Sequence

from etils import epath


class UserInputError(ValueError):
    """Bad input from a user: the message names the file, field or flag at fault."""


def load_json(path, *, what: str):
    """Parses a JSON file the user pointed at (a local path or a gs:// URI); a missing or broken file is a
    UserInputError naming it."""
    path = epath.Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: not found (expected {what})")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserInputError(f"{path}: not readable as {what} ({e})") from e


def load_json_dataclass(cls, path, *, what: str):
    """A dataclass from the JSON file's keys it names (others ignored; missing required ones are an error;
    values of the wrong type are an error naming the field)."""
    raw = load_json(path, what=what)
    if not isinstance(raw, dict):
        raise UserInputError(f"{path}: not usable as {what} (a JSON object expected, got {type(raw).__name__})")
    kwargs = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
    check_types(cls, kwargs, where=str(path))
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise UserInputError(f"{path}: not usable as {what} ({e})") from e


def _matches(value, expected) -> bool:
    """Whether a JSON-ish value fits a type annotation (ints are floats; bools are not numbers)."""
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, option) for option in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is str:
        return isinstance(value, str)
    container = origin or expected
    if isinstance(container, type) and issubclass(container, Mapping):
        return isinstance(value, Mapping)
    if isinstance(container, type) and issubclass(container, Sequence):
        items = typing.get_args(expected)[:1]
        return isinstance(value, (list, tuple)) and all(_matches(v, items[0]) for v in value if items)
    return True  # Any, or a type this check does not know: leave it to the constructor


def _describe(expected) -> str:
    if typing.get_origin(expected) in (typing.Union, types.UnionType):
        return " or ".join(_describe(option) for option in typing.get_args(expected))
    if expected is type(None):
        return "null"
    return getattr(expected, "__name__", None) or str(expected).replace("typing.", "")


def check_types(fn, kwargs: Mapping, *, where: str) -> None:
    """Checks ``kwargs`` against ``fn``'s annotations (a function or a class's fields): one line naming the first
    field whose value has the wrong type. Fields without an annotation are not checked."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation this Python cannot evaluate: nothing to check against
        return
    for name, value in kwargs.items():
        if name in hints and not _matches(value, hints[name]):
            raise UserInputError(f"{where}: field {name!r} must be {_describe(hints[name])}, "
                                 f"got {value!r} ({type(value).__name__})")
