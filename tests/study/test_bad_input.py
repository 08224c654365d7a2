"""Bad input, tabulated: every kind gives one line naming the problem and exit code 2 on the
command line (``ValueError`` in Python), and leaves the study and its storage untouched.

The cases fail before any candidate is scored, so the table runs in seconds.
"""

import hashlib
import math

import pytest

import cli
import ntknas
from search_spaces import list_spaces
from tests.search._toys import Tiny

# The cases read two module-scoped studies: one xdist worker runs them all, so each is made once.
pytestmark = pytest.mark.xdist_group("bad_input")

MLP = ["--space", "mlp", "--batch", "2", "--input-size", "2", "--max-params", "20000"]
QUIET = ["--sampler", "random", "--no-progress", "--trials", "1"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A folder with a journal study ``base`` (one mlp trial, made by the CLI) and a JSONL file
    of bad lines."""
    folder = tmp_path_factory.mktemp("bad-input")
    url = f"journal:{folder / 'studies.log'}"
    assert cli.main(["search", *MLP, *QUIET, "--storage", url, "--study", "base"]) == 0
    (folder / "empty.jsonl").write_text("\n\n")
    (folder / "bad.jsonl").write_text('{"depth": 1}\n{"depth": \n')
    (folder / "list.jsonl").write_text("[1, 2]\n")
    return folder, url


def _state(folder):
    """Every file of the folder and its contents' hash."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


S = ["search", *MLP, *QUIET, "--storage", "{url}", "--study", "base"]  # a valid search of base
CLI_CASES = {
    "unknown space": (["search", "--space", "nope", *QUIET], "unknown search space 'nope'"),
    "unknown proxy": ([*S, "--objective", "bogus"], "unknown proxy 'bogus'"),
    "unknown direction": ([*S, "--objective", "ntk_cond:up"], "unknown direction 'up'"),
    "rank sum mixed with others": ([*S, "--objective", "rank(ntk_cond),params"], "rank sum"),
    "a proxy twice": ([*S, "--objective", "ntk_cond,ntk_cond"], "names a proxy twice"),
    "unknown sampler": ([*S, "--sampler", "foo"], "invalid choice: 'foo'"),
    "unknown NTK method": ([*S, "--method", "nope"], "unknown NTK method 'nope'"),
    "unknown data": ([*S, "--data", "imagenet"], "invalid choice: 'imagenet'"),
    "trials not an int": ([*S, "--trials", "many"], "invalid int value: 'many'"),
    "negative trials": ([*S, "--trials", "-1"], "n_trials must be a non-negative int"),
    "zero batch": ([*S, "--batch", "0"], "batch must be a positive int"),
    "negative seed": ([*S, "--seed", "-1"], "seed must be a non-negative int"),
    "zero input size": ([*S, "--input-size", "0"], "input_shape must be (H, W, C)"),
    "zero classes": ([*S, "--classes", "0"], "num_classes must be a positive int"),
    "zero jobs": ([*S, "--jobs", "0"], "jobs must be a positive int"),
    "zero heartbeat": ([*S, "--heartbeat", "0"], "heartbeat must be a positive int"),
    "grace not past the heartbeat": ([*S, "--heartbeat", "5", "--grace", "5"], "grace (5 s)"),
    "zero max params": ([*S, "--max-params", "0"], "max_params must be a positive int"),
    "negative min params": ([*S, "--min-params", "-5"], "min_params must be a positive int"),
    "min params not a count": ([*S, "--min-params", "lots"], "'lots' is not a parameter count"),
    "max params a fraction": ([*S, "--max-params", "2.5"], "'2.5' is not a parameter count"),
    "min params above max params": (
        [*S, "--min-params", "30k"],
        "min_params 30,000 (user) > max_params 20,000 (user)",
    ),
    "budget no network meets": (
        [*S, "--min-params", "1G", "--max-params", "none"],
        "no mlp network has at least 1G params (user): at 2x2x3 input and 10 logits",
    ),
    "study with another budget": ([*S, "--max-params", "30000"], "was run with a budget of"),
    "jobs on SQLite": (
        [*S[:-4], "--jobs", "2", "--storage", "sqlite:///{folder}/x.db"],
        "not for parallel writers",
    ),
    "storage not a URL": ([*S[:-4], "--storage", "studies.db"], "is not a URL"),
    "storage folder missing": (
        [*S[:-4], "--storage", "sqlite:////no/such/dir/x.db"],
        "directory /no/such/dir does not exist",
    ),
    "storage unreachable": (
        [*S[:-4], "--storage", "postgresql://nobody@127.0.0.1:1/none"],
        "cannot open storage 'postgresql://nobody@127.0.0.1:1/none'",
    ),
    "storage malformed": (
        [*S[:-4], "--storage", "postgresql://nobody@127.0.0.1:port/none"],
        "cannot open storage",
    ),
    "storage not a journal": ([*S[:-4], "--storage", "{folder}/bad.jsonl"], "is not a URL"),
    "study with other options": ([*S, "--batch", "3"], "scores would not be comparable"),
    "study with another objective": (
        [*S, "--objective", "ntk_cond"],
        "was run with objective 'rank(",
    ),
    "study with another space": (
        ["search", "--space", "nb201", *QUIET, "--storage", "{url}", "--study", "base"],
        "was run with space 'mlp'",
    ),
    "leaderboard of a missing file": (
        ["leaderboard", "--storage", "journal:{folder}/none.log"],
        "no such file",
    ),
    "leaderboard of a missing study": (
        ["leaderboard", "--storage", "{url}", "--study", "nope"],
        "no study 'nope'",
    ),
    "malformed JSON config": (["score", *MLP[:2], "--config", "{not json"], "malformed JSON"),
    "config not an object": (["score", *MLP[:2], "--config", "[1]"], "a config is a JSON object"),
    "missing JSONL file": (
        ["score", *MLP[:2], "--configs", "{folder}/none.jsonl"],
        "cannot read",
    ),
    "empty JSONL file": (["score", *MLP[:2], "--configs", "{folder}/empty.jsonl"], "no config"),
    "malformed JSONL line": (
        ["score", *MLP[:2], "--configs", "{folder}/bad.jsonl"],
        "bad.jsonl line 2: malformed JSON",
    ),
    "JSONL line not an object": (
        ["score", *MLP[:2], "--configs", "{folder}/list.jsonl"],
        "a config is a JSON object",
    ),
    "no command": ([], "usage"),
    "unknown command": (["serach"], "invalid choice: 'serach'"),
    **{
        f"config outside {space}": (
            ["score", "--space", space, "--config", '{"bogus": 1}'],
            "config 1: ",
        )
        for space in list_spaces()
    },
}


@pytest.mark.parametrize("argv, expected", CLI_CASES.values(), ids=CLI_CASES.keys())
def test_cli_bad_input_is_one_line_exit_2_and_touches_nothing(argv, expected, base, capsys):
    folder, url = base
    before = _state(folder)
    argv = [a.replace("{url}", url).replace("{folder}", str(folder)) for a in argv]
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    lines = [s for s in err.splitlines() if s.strip()]
    if argv:
        assert len(lines) == 1 and expected in lines[0], err
        assert lines[0].startswith("ntknas") and "Traceback" not in err
    else:  # no command: the help, on stdout
        assert expected in out
    assert _state(folder) == before


PY_CASES = {
    "unknown space": (dict(space="nope"), "unknown search space"),
    "unknown proxy": (dict(objective="bogus:min"), "unknown proxy"),
    "unknown sampler": (dict(sampler="foo"), "sampler"),
    "negative trials": (dict(n_trials=-1), "n_trials"),
    "trials a bool": (dict(n_trials=True), "n_trials"),
    "trials a float": (dict(n_trials=1.5), "n_trials"),
    "zero jobs": (dict(jobs=0), "jobs"),
    "negative retries": (dict(retries=-1), "retries"),
    "non-finite reconnect": (dict(reconnect=math.inf), "reconnect"),
    "NaN reconnect": (dict(reconnect=math.nan), "reconnect"),
    "non-finite batch": (dict(batch=math.inf), "batch"),
    "NaN max params": (dict(max_params=math.nan), "max_params"),
    "negative min params": (dict(min_params=-1), "min_params must be a positive int"),
    "min params a string": (dict(min_params="5M"), "min_params must be a positive int"),
    "min params above max params": (dict(min_params=9, max_params=3), "min_params 9 "),
    "zero heartbeat": (dict(heartbeat=0), "heartbeat"),
    "storage not a URL": (dict(storage="studies.db"), "not a URL"),
    "storage with a password, unreachable": (
        dict(storage="postgresql://me:s3cr3t@127.0.0.1:1/none"),
        r"postgresql://me:\*\*\*@127.0.0.1:1/none",
    ),
    "study with other options": (dict(batch=3), "scores would not be comparable"),
    "study with another objective": (dict(objective="ntk_cond"), "was run with objective"),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A folder with a journal study ``base`` of one Tiny trial."""
    folder = tmp_path_factory.mktemp("bad-python-input")
    url = f"journal:{folder / 'studies.log'}"
    ntknas.search(Tiny(), 1, storage=url, study_name="base", sampler="random", batch=2)
    return folder, url


@pytest.mark.parametrize("kwargs, match", PY_CASES.values(), ids=PY_CASES.keys())
def test_python_bad_input_is_a_value_error_and_touches_nothing(kwargs, match, tiny):
    folder, url = tiny
    before = _state(folder)
    call = {**dict(space=Tiny(), n_trials=1, storage=url, study_name="base", batch=2), **kwargs}
    with pytest.raises(ValueError, match=match) as e:
        ntknas.search(**call)
    assert "\n" not in str(e.value) and "s3cr3t" not in str(e.value)
    assert _state(folder) == before
