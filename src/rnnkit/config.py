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
