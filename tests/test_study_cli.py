"""launch/study.py's short flags (--quick, --models, --seeds, --steps, --out) parse into the
same settings as the --config flags they stand for."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Loads launch/study.py in a fresh interpreter (its absl flags would clash with other CLIs'
# in the test process), parses argv as its main would and prints the resulting settings.
_PARSE = """
import importlib.util, json, sys
from absl import flags
path, sys.argv = sys.argv[1], ["study.py", *sys.argv[2:]]
spec = importlib.util.spec_from_file_location("launch_study", path)
cli = importlib.util.module_from_spec(spec)
try:
    spec.loader.exec_module(cli)
    flags.FLAGS(cli._ARGV)
except (Exception, SystemExit) as error:
    print(json.dumps({"error": str(error)}))
else:
    s = cli._CONFIG.value
    print(json.dumps({"name": s.name, "models": s.models, "seeds": str(s.seeds),
                      "steps": s.steps, "out": s.out}))
"""


def _settings(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _PARSE, os.path.join(ROOT, "launch", "study.py"), *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "stderr": done.stderr}


def test_short_flags_set_the_study_settings(tmp_path):
    quick = _settings("--models=vgs,w2v2_vgs", "--seeds", "0,1", "--quick", "--steps=9")
    assert quick["name"] == "quick"
    assert quick["models"] == "vgs,w2v2_vgs"
    assert quick["seeds"] == "0,1"
    assert quick["steps"] == 9
    assert _settings("--out=/tmp/elsewhere")["out"] == "/tmp/elsewhere"
    flagfile = tmp_path / "study.flags"
    flagfile.write_text("--models=vgs\n--steps=5\n")
    from_file = _settings(f"--flagfile={flagfile}")
    assert (from_file["models"], from_file["steps"]) == ("vgs", 5)
    assert _settings()["name"] == "demo"


def test_quick_with_another_config_is_refused():
    refused = _settings("--quick", "--config=configs/study.py:demo")
    assert refused["error"] == "2"  # the exit status of a usage mistake (fastvgs_jax.cli)
    assert refused["stderr"].strip().splitlines()[-1].startswith("error: --quick is")
    assert "give one" in refused["stderr"]
