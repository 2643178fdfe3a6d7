"""The interpreter the virtual environment is built from (``scripts/pick-python.sh``), and
the benchmark that compares interpreters on the service's own work (``bench.interpreter``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.interpreter import main

ROOT = Path(__file__).resolve().parents[2]
PICK = ROOT / "scripts" / "pick-python.sh"


def picked(path: str, distribution: str = "/usr/bin/python3") -> str:
    return subprocess.run(["/bin/bash", str(PICK)], capture_output=True, text=True, check=True,
                          env={**os.environ, "PATH": path,
                               "IVR_DIST_PYTHON": distribution}).stdout.strip()


def usable(python: str) -> bool:
    if not Path(python).exists():
        return False
    return subprocess.run(
        [python, "-c", "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"],
        capture_output=True).returncode == 0


def fake_python(directory: Path, version: str) -> Path:
    """A ``python3`` that runs this one but says it is ``version`` (3.10: too old)."""
    directory.mkdir()
    script = directory / "python3"
    script.write_text(f"#!/bin/sh\n[ \"$1\" = -c ] && exec {sys.executable} -c "
                      f"\"import sys; sys.exit(({version}) < (3, 11))\"\nexit 1\n")
    script.chmod(0o755)
    return script


def test_the_distributions_python_first_when_it_will_do() -> None:
    """Debian's own build (profile-guided and link-time optimised) before one from PATH."""
    expected = "/usr/bin/python3" if usable("/usr/bin/python3") else "python3"
    assert picked(os.environ["PATH"]) == expected


def test_python3_from_path_when_the_distributions_is_missing_or_too_old(tmp_path: Path
                                                                       ) -> None:
    on_path = fake_python(tmp_path / "path", "3, 12")
    too_old = fake_python(tmp_path / "dist", "3, 10")
    assert picked(str(on_path.parent), str(tmp_path / "none")) == "python3"
    assert picked(str(on_path.parent), str(too_old)) == "python3"
    assert picked(str(on_path.parent), str(on_path)) == str(on_path)


def test_python3_named_when_none_will_do(tmp_path: Path) -> None:
    """No usable Python at all: the name check-python.sh then explains."""
    too_old = fake_python(tmp_path / "dist", "3, 10")
    assert picked(str(tmp_path), str(too_old)) == "python3"


def test_the_benchmark_prints_microseconds_per_call(capsys: pytest.CaptureFixture[str]
                                                    ) -> None:
    assert main(["--calls", "20", "--repeat", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["us_per_call"] > 0
    assert result["python"].count(".") == 2 and result["interpreter"]


@pytest.mark.parametrize("argv", [["--calls", "0"], ["--repeat", "-1"], ["--calls", "x"]])
def test_the_benchmark_refuses_what_is_not_a_count(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
