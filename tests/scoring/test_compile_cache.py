"""The persistent compilation cache: a second process loads the kernel the first compiled; a bad
cache directory is one warning and scoring goes on; the off switch. Each case is a fresh process
(the cache is set up once per process), with its own temporary cache directory."""

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Every script first cuts mlp's space down (tests/_small.py): the own path draws its largest
# network.
_SMALL_MLP = (
    "import pytest\nfrom tests._small import shrink_mlp\nshrink_mlp(pytest.MonkeyPatch())\n"
)
_SCRIPT = """
import json
from ntknas import scoring
options = scoring.ScoreOptions(batch=2, input_shape=(4, 4, 1), num_classes=2)
s = scoring.score("mlp", {"depth": 1, "width": 64, "activation": "relu"}, **vars(options))
stats = scoring.cache_stats()
print(json.dumps({"cond": s["ntk_cond"], "compile": s.compile_seconds, "hits": stats.hits,
                  "writes": stats.writes, "directory": stats.directory}))
"""
# The cache keeps only compilations longer than MIN_COMPILE_SECONDS, so which ones a process
# writes depends on the machine's load; the first case keeps every compilation instead, so that
# what the second process finds (and writes) does not depend on timing.
_EVERY_COMPILATION = (
    "import jax\nfrom ntknas import scoring\nscoring.enable_compile_cache()\n"
    "jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)\n"
) + _SCRIPT


def _run(cache: str, script: str = _SCRIPT) -> tuple[dict, str]:
    env = {**os.environ, "NTKNAS_COMPILE_CACHE": cache, "JAX_PLATFORMS": "cpu"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, "-c", _SMALL_MLP + script],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def test_a_second_process_scores_its_first_candidate_from_the_cache(tmp_path):
    cache = tmp_path / "jax"
    first, _ = _run(str(cache), _EVERY_COMPILATION)
    assert first["directory"] == str(cache)
    assert first["hits"] == 0 and first["writes"] >= 1
    assert any(cache.iterdir())
    second, _ = _run(str(cache), _EVERY_COMPILATION)
    assert second["hits"] >= 1  # the kernel (and what else the first wrote) was loaded
    assert second["writes"] < first["writes"]
    assert second["cond"] == first["cond"]
    # corrupt entries: JAX warns and compiles again; the scores do not change
    for entry in cache.iterdir():
        if entry.is_file() and not entry.name.startswith("."):
            entry.write_bytes(b"not an executable")
    third, _ = _run(str(cache), _EVERY_COMPILATION)
    assert third["cond"] == first["cond"] and third["hits"] == 0


def test_an_unusable_cache_directory_is_one_warning_and_scoring_goes_on(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    got, stderr = _run(str(blocker / "jax"))
    assert got["directory"] is None and got["cond"] > 0
    lines = [line for line in stderr.splitlines() if "compilation cache off" in line]
    assert len(lines) == 1 and "a-file" in lines[0]


def test_the_off_switch(tmp_path):
    script = (
        "import json, jax\nfrom ntknas import scoring\n"
        "print(json.dumps({'directory': scoring.enable_compile_cache(), "
        "'jax': jax.config.jax_compilation_cache_dir}))"
    )
    got, _ = _run("0", script)
    assert got == {"directory": None, "jax": None}


def test_the_cli_flag_turns_it_off(tmp_path):
    script = (
        "import json, cli\nfrom ntknas import scoring\n"
        "rc = cli.main(['score', '--space', 'mlp', '--batch', '2', '--input-size', '4', "
        '\'--config\', \'{"depth": 1, "width": 64, "activation": "relu"}\', '
        f"'--out', {str(tmp_path / 'scores.csv')!r}, '--no-compile-cache'])\n"
        "print(json.dumps({'rc': rc, 'directory': scoring.cache_stats().directory}))"
    )
    got, _ = _run(str(tmp_path / "jax"), script)
    assert got == {"rc": 0, "directory": None}
    assert not (tmp_path / "jax").exists()
    assert "path" in (tmp_path / "scores.csv").read_text().splitlines()[0].split(",")
