"""`ntknas compare` end to end: ground truth in tmp_path, summary, CSVs and non-empty plots."""

import json

import numpy as np
import pandas as pd
import pytest

from cli import main
from ntknas.proxies import naswot, normalized_proxies
from search_spaces import mlp, nb201


def _run_compare(tmp_path, space, rows, key, extra=()):
    truth = tmp_path / "truth.csv"
    pd.DataFrame(rows).to_csv(truth, index=False)
    out = tmp_path / "out"
    argv = ["compare", "--space", space, "--ground-truth", str(truth), "--metric", "acc"]
    argv += ["--key", key, "--out", str(out), "--bootstrap", "50", "--naswot-batch", "4"]
    assert main([*argv, *extra]) == 0
    return out


def _check_outputs(out, n):
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == n and (scores["error"].fillna("") == "").all()
    corr = pd.read_csv(out / "correlations.csv")
    assert {"ntk_cond", "pntk_sum_cond", "params", "synflow"} <= set(corr["proxy"])
    for name in ("scatter_acc.png", "correlations_acc.png"):
        data = (out / name).read_bytes()
        assert len(data) > 1000 and data[:4] == b"\x89PNG"
    text = (out / "summary.md").read_text()
    assert "Spearman" in text and "lower condition number" in text
    return scores, corr


def test_compare_mlp_end_to_end(tmp_path, capsys, monkeypatch):
    # the space shrunk to 2 layers of 4-16 units (its code is the real one): the own path draws
    # the space's largest network to select each config's initial values
    monkeypatch.setattr(mlp, "WIDTHS", (4, 8, 16))
    monkeypatch.setattr(mlp, "MAX_DEPTH", 2)
    rows = [
        {"config": json.dumps({"depth": d, "width": w, "activation": "relu"}), "acc": d + w / 16}
        for d in (1, 2)
        for w in (4, 8, 16)
    ]
    out = _run_compare(tmp_path, "mlp", rows, "config", ["--input-size", "4", "--batch", "3"])
    scores, corr = _check_outputs(out, 6)
    params = corr[corr["proxy"] == "params"].iloc[0]
    expected = pd.Series(scores["params"]).corr(
        pd.Series(rows_acc := [r["acc"] for r in rows]), method="spearman"
    )
    assert params["spearman"] == pytest.approx(expected) and len(rows_acc) == 6
    assert scores["naswot"].isna().all()  # the MLP does not expose ReLU codes
    assert "## vs `acc`" in capsys.readouterr().out


def test_compare_nb201_end_to_end(tmp_path, monkeypatch):
    # five cells: each compiles on its own (the shared graph is for dozens, tests/compare/
    # test_shared_graph.py checks it gives the same scores); the network shrunk to one cell a
    # stage of 4-16 channels (its code and every op are the real ones), as compiling dominates
    monkeypatch.setattr(nb201, "STAGE_CHANNELS", (4, 8, 16))
    monkeypatch.setattr(nb201, "CELLS_PER_STAGE", 1)
    cells = ["230410", "334204", "222222", "013241", "111111"]
    rows = [{"op_indices": c, "acc": float(i)} for i, c in enumerate(cells)]
    extra = ["--input-size", "8", "--batch", "2", "--classes", "3"]
    extra += ["--method", "jacobian_contraction", "--bn", "train"]
    out = _run_compare(tmp_path, "nb201", rows, "op_indices=cell", extra)
    scores, _ = _check_outputs(out, 5)
    assert np.isfinite(scores["naswot"][:4]).all()


def test_compare_bad_input_is_one_line(tmp_path, capsys):
    truth = tmp_path / "t.csv"
    truth.write_text("op_indices,acc\n99,1.0\n")
    argv = ["compare", "--space", "nb201", "--ground-truth", str(truth), "--key", "op_indices=cell"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 2" in err and "cell=" in err
    assert main([*argv[:-2], "--key", "nope"]) == 2
    assert "'nope' is not a column" in capsys.readouterr().err


def test_naswot_score_and_normalized_proxies_against_numpy():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 2, size=(5, 40)).astype(float)
    k = codes @ codes.T + (1 - codes) @ (1 - codes).T
    assert naswot.naswot_score(k) == pytest.approx(np.log(abs(np.linalg.det(k))), rel=1e-10)
    assert naswot.naswot_score(np.ones((3, 3))) == -np.inf
    jac = rng.standard_normal((3, 2, 30))
    kern = np.einsum("aip,bjp->abij", jac, jac)
    m = jac.reshape(6, 30) @ jac.reshape(6, 30).T
    d = 1 / np.sqrt(np.diag(m))
    e = np.linalg.eigvalsh(m * d[:, None] * d[None, :])
    lam = np.linalg.eigvalsh(m)
    p = lam / lam.sum()
    got = normalized_proxies(kern)
    assert got["ntk_corr_cond"] == pytest.approx(e[-1] / e[0], rel=1e-8)
    assert got["ntk_eff_rank"] == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-8)
    assert got["ntk_top_share"] == pytest.approx(lam[-1] / lam.sum(), rel=1e-10)
