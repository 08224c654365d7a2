"""Architecture configs as JSON: one from a string, or a JSONL file of them (one per line).

Errors are one-line ``ValueError`` messages that say where: the file and line, or the label given.

Example:
  >>> from ntknas.configs import parse_config, read_jsonl
  >>> parse_config('{"depth": 2, "width": 64}', "--config")
  {'depth': 2, 'width': 64}
"""

from __future__ import annotations

import json


def parse_config(text: str, where: str) -> dict:
    """One config: a JSON object.

    Args:
      text: the JSON text.
      where: what to call it in an error (``"--config"``, ``"configs.jsonl line 3"``).

    Raises:
      ValueError: malformed JSON, or JSON that is not an object.
    """
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: malformed JSON: {e.msg} (column {e.colno})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{where}: a config is a JSON object, got {type(config).__name__}")
    return config


def read_jsonl(path: str) -> list[dict]:
    """The configs of a JSONL file, one JSON object per line (blank lines skipped).

    Raises:
      ValueError: the file cannot be read or holds no config, or a line is not a JSON object.
    """
    try:
        with open(path) as fh:
            lines = [(f"{path} line {i}", s) for i, s in enumerate(fh, 1) if s.strip()]
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    if not lines:
        raise ValueError(f"{path} holds no config")
    return [parse_config(text, where) for where, text in lines]
