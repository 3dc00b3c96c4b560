"""The one exception type for bad user input (files, fields, flags).

The CLI turns it into a one-line reason and exit status 2; library callers can catch it.
"""

import json
from pathlib import Path


class UserInputError(ValueError):
    """Bad input from a user: the message names the file, field or flag at fault."""


def load_json(path, *, what: str):
    """Parses a JSON file the user pointed at; a missing or broken file is a UserInputError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: not found (expected {what})")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserInputError(f"{path}: unreadable {what} ({e})") from e


def load_json_dataclass(cls, path, *, what: str):
    """A dataclass from the JSON file's keys it names (others ignored; missing required ones are an error)."""
    raw = load_json(path, what=what)
    try:
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})
    except TypeError as e:
        raise UserInputError(f"{path}: unusable {what} ({e})") from e
