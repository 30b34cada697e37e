"""The README's example runs as written, and its two set-up commands are the ones CI uses."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_python_examples_run(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "README has no python example"
    for block in blocks:
        result = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr


def test_exactly_two_setup_commands_and_ci_runs_the_test_one():
    section = README.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)
    assert len(commands) == 2
    install_run, install_test = commands
    assert "bench.mnist" in install_run
    ci = (ROOT / ".ci" / "run").read_text()
    assert install_test.split("&& ", 1)[1] in ci, "CI must run the README's test command"


@pytest.mark.parametrize("path", ["pyproject.toml", "xpnet", "kernels", "tests", "bench", ".ci/run"])
def test_repository_layout(path):
    assert (ROOT / path).exists()
