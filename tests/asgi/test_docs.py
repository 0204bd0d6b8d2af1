"""docs/inbound.md: each python block runs as written, each yaml block passes
``meshlite check``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "inbound.md"
TEXT = DOC.read_text()
PYTHON = re.findall(r"(?<!-->\n)```python\n(.*?)```", TEXT, flags=re.DOTALL)
YAML = re.findall(r"```yaml\n(.*?)```", TEXT, flags=re.DOTALL)


@pytest.mark.parametrize("index", range(len(PYTHON)))
def test_python_block_runs(index: int) -> None:
    done = subprocess.run([sys.executable, "-c", PYTHON[index]], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


@pytest.mark.parametrize("index", range(len(YAML)))
def test_yaml_block_is_a_valid_config(index: int, tmp_path: Path) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text(YAML[index])
    command = "import sys; from meshlite.cli import main; sys.exit(main())"
    done = subprocess.run([sys.executable, "-c", command, "check", str(config)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_doc_has_blocks() -> None:
    assert len(PYTHON) >= 3
    assert YAML
