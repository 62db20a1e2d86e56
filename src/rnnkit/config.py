"""Typed configs: every section rejects unknown keys, so a typo is an error instead of a silent default."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict

from rnnkit.fileio import atomic_write_text


class StrictModel(BaseModel):
    """Base for config sections: unknown keys and wrongly typed values are rejected, also on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def save_config_yaml(config: BaseModel, path: str | Path) -> Path:
    """Write the resolved config (every default filled in) as YAML, atomically."""
    return atomic_write_text(path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


# -- resolving a config: recipe defaults <- YAML file <- dotted overrides ----------------------------------


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; a missing file or a syntax error is one line naming the file (and line)."""
    from .errors import RnnkitError

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RnnkitError("no such config file", where=str(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise RnnkitError(f"cannot read config file: {e}", where=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RnnkitError(f"invalid YAML: {problem}", where=where) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RnnkitError(f"expected a mapping of config sections, got {type(data).__name__}", where=str(path))
    return data


def deep_merge(base: dict, update: dict) -> dict:
    """``update`` on top of ``base``, recursing into nested mappings (neither input is modified)."""
    out = dict(base)
    for k, v in update.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict:
    """``["train.lr=3e-3", "model.cell=gru"]`` -> nested dict; values are parsed as YAML scalars/lists."""
    from .errors import RnnkitError

    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise RnnkitError(f"--set expects KEY.PATH=VALUE (e.g. train.lr=3e-3), got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RnnkitError(f"--set {item!r}: {part!r} was already given a value")
        node[parts[-1]] = value
    return out


def format_validation_error(error, source: str = "config") -> str:
    """A pydantic ValidationError as one line: ``source: train.lr: Input should be greater than 0 (got -1)``."""
    parts = []
    for err in error.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif "input" in err and not isinstance(err["input"], dict):
            msg += f" (got {err['input']!r})"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return f"{source}: " + "; ".join(parts)


def validate(config_class: type[BaseModel], data: dict, source: str = "config"):
    """Build ``config_class`` from ``data``; any problem becomes a one-line :class:`RnnkitError`."""
    from pydantic import ValidationError

    from .errors import RnnkitError

    try:
        return config_class(**data)
    except ValidationError as e:
        raise RnnkitError(format_validation_error(e, source)) from None
