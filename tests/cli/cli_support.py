"""Plain helpers the CLI tests share (fixtures are in conftest.py)."""

from pathlib import Path

import yaml

PASSWORD = "pw-cli-tests-123"


def write_yaml(folder: Path, name: str, data: dict) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
