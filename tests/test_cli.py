"""The ``ntknas`` command line: every command in-process (``cli.main``) and as a subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import cli
from search_spaces import get_space

from ._small import shrink_mlp

DEFAULT_OBJECTIVE = get_space("mlp").default_objective

ROOT = Path(__file__).resolve().parents[1]
# Small settings: a 2x2x3 input, batch 2, and a parameter cap so big MLPs are skipped unscored.
TINY = ["--batch", "2", "--input-size", "2", "--max-params", "20000", "--sampler", "random"]
MLP = json.dumps({"depth": 2, "width": 64, "activation": "tanh"})
SMALL_MLP = "import pytest\nfrom tests._small import shrink_mlp\nshrink_mlp(pytest.MonkeyPatch())\n"


def _run(*argv, cwd=None, small_mlp=False):
    """``python -m cli ARGV``; with ``small_mlp``, ``cli.main(ARGV)`` after cutting mlp's space
    down (tests/_small.py: the own path draws the space's largest network)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    entry = ["-m", "cli"]
    if small_mlp:
        entry = ["-c", f"{SMALL_MLP}import sys, cli\nsys.exit(cli.main(sys.argv[1:]))"]
    return subprocess.run(
        [sys.executable, *entry, *argv],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one_line_error(err: str):
    lines = [s for s in err.splitlines() if s.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "error:" in lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def study_db(tmp_path_factory):
    """A study of 3 trials made in-process: ``ntknas search`` ending with its leaderboard."""
    path = tmp_path_factory.mktemp("cli") / "s.db"
    url = f"sqlite:///{path}"
    with pytest.MonkeyPatch.context() as mp:
        shrink_mlp(mp)  # the resuming search below cuts it down alike
        code = cli.main(["search", "--space", "mlp", "--trials", "3", "--storage", url, *TINY])
    assert code == 0
    return url


@pytest.mark.xdist_group("cli_study")  # one worker makes study_db once
def test_search_in_process_prints_leaderboard_and_resumes(study_db, capsys, small_mlp):
    code = cli.main(["search", "--space", "mlp", "--trials", "2", "--storage", study_db, *TINY])
    out = capsys.readouterr().out
    assert code == 0
    assert f"study mlp-{DEFAULT_OBJECTIVE}: 5 complete" in out  # 3 earlier trials + 2 now
    assert "ntk_eig_min" in out and "rank_sum" in out  # the objective's proxies
    assert "budget: at most 20k params (user)" in out


@pytest.mark.xdist_group("cli_study")  # one worker makes study_db once
@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_leaderboard_in_process(study_db, capsys, fmt):
    code = cli.main(["leaderboard", "--storage", study_db, "--format", fmt, "--top", "2"])
    out = capsys.readouterr().out
    assert code == 0
    if fmt == "csv":
        df = pd.read_csv(__import__("io").StringIO(out))
        assert list(df["rank"]) == [1, 2][: len(df)] and "ntk_cond" in df.columns
        assert json.loads(df["config"][0])["width"] in (64, 128, 256, 512, 1024, 2048)
    elif fmt == "json":
        rows = json.loads(out)
        assert rows[0]["rank"] == 1 and isinstance(rows[0]["config"], dict)
    else:  # rank, the short description, params, the objective's rank sum and parts
        for name in ("network", "params", "rank_sum", "ntk_eig_min", "ntk_eff_rank", "flops"):
            assert name in out
        assert "ntk_cond" not in out and "budget: at most 20k params (user)" in out


def test_score_in_process_config_and_configs_file(tmp_path, capsys, small_mlp):
    configs = tmp_path / "c.jsonl"
    configs.write_text(MLP + "\n\n" + json.dumps({"depth": 1, "width": 64, "activation": "relu"}))
    out = tmp_path / "scores.csv"
    argv = ["score", "--space", "mlp", "--configs", str(configs), "--out", str(out)]
    assert cli.main([*argv, "--batch", "2", "--input-size", "2"]) == 0
    df = pd.read_csv(out)
    assert list(df.columns[:4]) == ["config", "description", "score", "ntk_cond"]
    assert [json.loads(c)["depth"] for c in df["config"]] == [2, 1]
    assert (df["ntk_cond"] > 0).all() and (df["error"].isna() | (df["error"] == "")).all()
    assert (df["bn"] == "train").all()  # one BatchNorm default for score and search
    # the space's default objective, a rank sum of three proxies over the two configs
    parts = ("ntk_eig_min", "ntk_eff_rank", "flops")
    expected = sum(df[p].rank() for p in parts)
    assert list(df["score"]) == list(expected) and set(df["score"]) <= set(range(3, 7))
    capsys.readouterr()
    argv = ["score", "--space", "mlp", "--config", MLP, "--batch", "2", "--input-size", "2"]
    assert cli.main([*argv, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["ntk_cond"] == pytest.approx(df["ntk_cond"][0], rel=1e-6)
    assert "score" not in rows[0]  # a rank needs others: one config has none
    assert cli.main(["score", "--space", "mlp", "--configs", str(configs), *argv[5:]]) == 0
    table = capsys.readouterr().out  # best score first
    best = df.sort_values("score", ascending=False)["description"].iloc[0]
    first = next(line for line in table.splitlines() if line.strip().startswith("1 "))
    assert best in first


def test_spaces_in_process(capsys):
    assert cli.main(["spaces"]) == 0
    out = capsys.readouterr().out
    for name in ("vit-small", "nb201", "mlp", "resnet"):
        assert name in out
    assert "15,625" in out  # NAS-Bench-201's size


def test_help_on_every_command(capsys):
    for name in [*cli._COMMANDS, None]:
        assert cli.main([name, "--help"] if name else ["--help"]) == 0
        assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, says",
    [
        (["search", "--space", "nope"], "unknown search space"),
        (["search", "--space", "mlp", "--sampler", "sa"], "invalid choice"),
        (["search", "--space", "mlp", "--objective", "acc:max"], "unknown proxy"),
        (
            ["search", "--space", "mlp", "--storage", "sqlite:////no/such/dir/a.db"],
            "does not exist",
        ),
        (["search", "--space", "mlp", "--storage", "mysql://u@nohost/db"], "cannot open storage"),
        (["search", "--space", "mlp", "--patch", "4", "--storage", "memory"], "patch_size"),
        (["score", "--space", "mlp", "--config", '{"depth": 2,'], "malformed JSON"),
        (["score", "--space", "mlp", "--config", "[1, 2]"], "JSON object"),
        (["score", "--space", "mlp", "--config", '{"depth": 2, "width": 3}'], "missing field"),
        (["score", "--space", "mlp", "--configs", "/no/such.jsonl"], "cannot read"),
        (["score", "--space", "mlp"], "one of the arguments"),
        (["leaderboard", "--storage", "sqlite:////tmp/ntknas-no-such.db"], "no such file"),
        (["leaderboard", "--storage", "memory"], "studies in this storage: none"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, says, capsys):
    assert cli.main(argv) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert says in line


def test_bad_configs_file_names_the_line(tmp_path, capsys):
    path = tmp_path / "c.jsonl"
    path.write_text(MLP + "\n\n" + '{"depth": 2,\n')
    assert cli.main(["score", "--space", "mlp", "--configs", str(path)]) == 2
    assert f"{path} line 3: malformed JSON" in _one_line_error(capsys.readouterr().err)
    path.write_text("\n  \n")
    assert cli.main(["compare", "--space", "mlp", "--configs", str(path)]) == 2
    assert f"{path} holds no config" in _one_line_error(capsys.readouterr().err)


def test_cli_uses_public_names_only():
    import ast

    tree = ast.parse(Path(cli.__file__).read_text())
    private = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ntknas"):
            parts = [*node.module.split("."), *(a.name for a in node.names)]
            private += [node.module for p in parts if p.startswith("_")]
    assert not private, private


@pytest.mark.xdist_group("cli_study")  # one worker makes study_db once
def test_bad_study_name_lists_the_studies(study_db, capsys):
    assert cli.main(["leaderboard", "--storage", study_db, "--study", "nope"]) == 2
    assert f"mlp-{DEFAULT_OBJECTIVE}" in _one_line_error(capsys.readouterr().err)


def test_bench_command_is_registered():
    assert "bench" in cli._COMMANDS
    from ntknas import bench

    assert callable(bench.main)


# --- as subprocesses: the real entry point, a default SQLite file in the cwd, determinism --------


def test_subprocess_search_leaderboard_spaces(tmp_path):
    # the search's own scoring is checked above: mlp cut down; the others run `python -m cli`
    search = ["search", "--space", "mlp", "--trials", "2", "--no-progress", *TINY]
    r = _run(*search, cwd=tmp_path, small_mlp=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ntknas.db").exists()  # the default storage, in the working directory
    assert f"mlp-{DEFAULT_OBJECTIVE}" in r.stdout
    r = _run("leaderboard", "--format", "csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("rank,trial,description,short,ntk_cond")
    r = _run("spaces")
    assert r.returncode == 0 and "vit-small" in r.stdout
    r = _run("score", "--space", "nope", "--config", "{}")
    assert r.returncode == 2 and "unknown search space" in _one_line_error(r.stderr)


def test_scores_are_deterministic_across_processes(small_mlp):
    argv = ["score", "--space", "mlp", "--config", MLP, "--format", "json", "--batch", "3"]
    argv += ["--input-size", "4", "--seed", "7", "--data", "digits"]
    a, b = _run(*argv, small_mlp=True), _run(*argv, small_mlp=True)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    ra, rb = json.loads(a.stdout)[0], json.loads(b.stdout)[0]
    for key in ("ntk_cond", "ntk_trace", "pntk_sum_cond", "pntk_logit_trace", "params", "flops"):
        assert ra[key] == pytest.approx(rb[key], rel=1e-6), key
    # and the library in this process (x64 enabled by conftest) agrees with the CLI
    import ntknas

    here = ntknas.score(
        "mlp", json.loads(MLP), batch=3, input_shape=(4, 4, 3), seed=7, data="digits"
    )
    assert here["ntk_cond"] == pytest.approx(ra["ntk_cond"], rel=1e-5)
    assert here["ntk_trace"] == pytest.approx(ra["ntk_trace"], rel=1e-5)
