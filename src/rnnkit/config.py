"""Typed configs: every section rejects unknown keys, so a typo is an error instead of a silent default."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict

from rnnkit.errors import short_repr, short_text
from rnnkit.fileio import atomic_write_text


class StrictModel(BaseModel):
    """Base for config sections: unknown keys and wrongly typed values are rejected, also on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def config_yaml(config: BaseModel) -> str:
    """The resolved config (every default filled in) as YAML text, in the order of its fields."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def save_config_yaml(config: BaseModel, path: str | Path) -> Path:
    """Write :func:`config_yaml` to ``path``, atomically (a run folder's ``config.yaml``)."""
    return atomic_write_text(path, config_yaml(config))


# -- resolving a config: recipe defaults <- YAML file <- dotted overrides ----------------------------------


#: limits on YAML read from a config file, a run's config.yaml or a ``--set`` value (docs/reliability.md)
MAX_YAML_BYTES = 1 << 20  # a config is a few KiB
MAX_YAML_DEPTH = 100  # nested mappings/lists
MAX_YAML_NODES = 100_000  # values after expanding aliases (a "billion laughs" expands to 10**9)


class _YamlRefused(Exception):
    """A YAML document over one of the limits; ``line`` is 1-based or None."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class LimitedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses nesting deeper than :data:`MAX_YAML_DEPTH`, aliases that refer to
    themselves, and documents that expand (aliases followed) to more than :data:`MAX_YAML_NODES` values."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark
                raise _YamlRefused(f"nested deeper than {MAX_YAML_DEPTH} levels", mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_data(self):
        node = self.get_single_node()
        if node is None:
            return None
        _check_expanded_size(node)
        return self.construct_document(node)


def _check_expanded_size(root: yaml.Node) -> None:
    """Count the values of ``root`` with every alias expanded (each shared node counted once per use, memoised,
    so a bomb is measured without being expanded); refuse cycles and more than :data:`MAX_YAML_NODES`."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise _YamlRefused("an alias refers to the value that contains it", node.start_mark.line + 1)
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > MAX_YAML_NODES:
                raise _YamlRefused(
                    f"more than {MAX_YAML_NODES:,} values once aliases are expanded", node.start_mark.line + 1
                )
        open_nodes.discard(key)
        sizes[key] = total
        return total

    size(root)


def _load_limited(text: str) -> object:
    """``yaml.safe_load`` under the limits; raises :class:`_YamlRefused`, or ``yaml.YAMLError``/``ValueError``
    for text that is not valid YAML (``ValueError``: a value such as the date 2001-02-30)."""
    if len(text) > MAX_YAML_BYTES:
        raise _YamlRefused(f"longer than {MAX_YAML_BYTES:,} characters")
    return yaml.load(text, Loader=LimitedLoader)  # noqa: S506 - a SafeLoader subclass


def safe_load_yaml(text: str, where: str) -> object:
    """``yaml.safe_load`` with limits (size, depth, alias expansion); any problem is one :class:`RnnkitError`
    line naming ``where`` (a file, or ``--set KEY``) and the line."""
    from .errors import RnnkitError

    try:
        return _load_limited(text)
    except _YamlRefused as e:
        raise RnnkitError(f"refused YAML: {e}", where=f"{where}:{e.line}" if e.line else where) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RnnkitError(
            f"invalid YAML: {short_text(problem)}", where=f"{where}:{mark.line + 1}" if mark is not None else where
        ) from None
    except (ValueError, OverflowError) as e:
        raise RnnkitError(f"invalid YAML value: {short_text(str(e))}", where=where) from None


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping with :func:`safe_load_yaml`; a missing file, a syntax error or a document over the
    limits is one line naming the file (and line)."""
    from .errors import RnnkitError

    path = Path(path)
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise RnnkitError(f"config file larger than {MAX_YAML_BYTES:,} bytes", where=str(path))
        if not path.is_file():
            raise RnnkitError("not a regular file", where=str(path))
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RnnkitError("no such config file", where=str(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise RnnkitError(f"cannot read config file: {short_text(str(e))}", where=str(path)) from None
    data = safe_load_yaml(text, str(path))
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
    """``["train.lr=3e-3", "model.cell=gru"]`` -> nested dict; values are parsed as YAML scalars/lists (with the
    limits of :func:`safe_load_yaml`; text that is not valid YAML stays a string)."""
    from .errors import RnnkitError

    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise RnnkitError(f"--set expects KEY.PATH=VALUE (e.g. train.lr=3e-3), got {short_repr(item)}")
        try:
            value = _load_limited(raw) if raw.strip() else ""
        except _YamlRefused as e:  # over a limit: refused, not read as a string
            raise RnnkitError(f"refused YAML: {e}", where=f"--set {short_text(key)}") from None
        except (yaml.YAMLError, ValueError, OverflowError):
            value = raw
        try:
            set_dotted(out, key, value)
        except ValueError as e:
            raise RnnkitError(f"--set {short_repr(item)}: {e}") from None
    return out


def set_dotted(tree: dict, key: str, value: object) -> None:
    """``tree["a"]["b"] = value`` for ``key = "a.b"``, making the inner mappings; ValueError when a part on the way
    already holds a value that is not a mapping."""
    node = tree
    *head, last = key.split(".")
    for part in head:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"{short_repr(part)} was already given a value")
    node[last] = value


def format_validation_error(error, source: str = "config") -> str:
    """A pydantic ValidationError as one line: ``source: train.lr: Input should be greater than 0 (got -1)``.

    Keys and values from the user are cut to about 80 characters, and at most 5 problems are listed."""
    parts = []
    errors = error.errors()
    for err in errors[:5]:
        loc = ".".join(short_text(str(p)) for p in err["loc"] if not str(p).startswith("function-after"))
        msg = short_text(err["msg"], 200)
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif "input" in err and not isinstance(err["input"], dict):
            msg += f" (got {short_repr(err['input'])})"
        parts.append(f"{loc}: {msg}" if loc else msg)
    if len(errors) > 5:
        parts.append(f"and {len(errors) - 5} more")
    return f"{source}: " + "; ".join(parts)


def validate(config_class: type[BaseModel], data: dict, source: str = "config"):
    """Build ``config_class`` from ``data``; any problem becomes a one-line :class:`RnnkitError`."""
    from pydantic import ValidationError

    from .errors import RnnkitError

    try:
        return config_class(**data)
    except ValidationError as e:
        raise RnnkitError(format_validation_error(e, source)) from None
