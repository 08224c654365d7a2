"""Proxies read in a direction and rank sums: one syntax for the search and the reports."""

import numpy as np
import pytest

from ntknas import proxies
from ntknas.compare._report import COMBINATIONS, combination_terms, sign


def test_rank_sum_is_te_nas_aggregation():
    cond = np.array([10.0, 1.0, 5.0])  # lower is better: ranks 1, 3, 2
    regions = np.array([3.0, 1.0, 2.0])  # higher is better: ranks 3, 1, 2
    got = proxies.rank_sum({"cond": cond, "regions": regions}, {"cond": -1, "regions": 1})
    np.testing.assert_array_equal(got, [4.0, 4.0, 4.0])
    got = proxies.rank_sum({"cond": cond, "x": np.array([1.0, np.nan, 2.0])}, {"cond": -1, "x": 1})
    np.testing.assert_array_equal(got, [2.0, np.nan, 4.0])
    terms, rank = proxies.parse_terms("rank(ntk_cond+ntk_trace:min)")
    assert rank and [str(t) for t in terms] == ["ntk_cond:min", "ntk_trace:min"]
    got = proxies.rank_sum_of({"ntk_cond": cond, "ntk_trace": regions, "other": cond}, terms)
    np.testing.assert_array_equal(got, [2.0, 6.0, 4.0])


def test_parse_terms_directions_default_from_the_registry():
    terms, rank = proxies.parse_terms("ntk_cond,params")
    assert not rank and [t.direction for t in terms] == ["minimize", "minimize"]
    terms, _ = proxies.parse_terms("ntk_cond,params:max")
    assert [t.sign for t in terms] == [-1, 1]
    # a report reads params as bigger = better; naswot is only in the full registry
    terms, rank = proxies.parse_terms(
        "rank(ntk_cond+params+naswot)", registry=proxies.REGISTRY, report=True
    )
    assert rank and [t.sign for t in terms] == [-1, 1, 1]


@pytest.mark.parametrize(
    "spec, match",
    [
        ("magic", "unknown proxy 'magic'"),
        ("naswot", "unknown proxy 'naswot'"),  # the search's scorer does not compute it
        ("ntk_cond:up", "unknown direction 'up'"),
        ("ntk_cond,ntk_cond:max", "names a proxy twice"),
        ("ntk_cond,rank(ntk_trace)", "a rank sum is a whole objective"),
        ([], "names no proxy"),
    ],
)
def test_bad_specs_are_value_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        proxies.parse_terms(spec)


def test_report_combinations_parse_with_the_objective_syntax():
    for name in COMBINATIONS:
        terms = combination_terms(name)
        assert len(terms) >= 2 and sign(name) == 1
        assert all(t.sign == proxies.REGISTRY[t.proxy].report_sign for t in terms)
    assert [str(t) for t in combination_terms("rank(ntk_cond+params)")] == [
        "ntk_cond:min",
        "params:max",
    ]
    assert sign("ntk_cond") == -1 and sign("params") == sign("flops") == sign("naswot") == 1
