"""The proxy registry: one record per proxy, its directions, and what the kernel reads give."""

import dataclasses

import pytest

from ntknas import proxies


def test_every_proxy_has_one_valid_record():
    assert set(proxies.REGISTRY) == {*proxies.PROXIES, *proxies.REFERENCE_PROXIES}
    assert not set(proxies.PROXIES) & set(proxies.REFERENCE_PROXIES)
    for name, p in proxies.REGISTRY.items():
        assert p.name == name and p.description
        assert p.direction in ("minimize", "maximize")
        assert p.sign == (1 if p.direction == "maximize" else -1)
    assert set(proxies.REFERENCE_PROXIES) == {"naswot", "synflow"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        proxies.PROXIES["ntk_cond"].direction = "maximize"


def test_search_and_report_directions():
    reg = proxies.REGISTRY
    assert reg["ntk_cond"].direction == "minimize" and reg["ntk_cond"].report_sign == -1
    assert reg["ntk_trace"].direction == "maximize" and reg["ntk_trace"].report_sign == 1
    # a search minimizes size and cost; reports read them as bigger = better
    for name in ("params", "flops"):
        assert reg[name].sign == -1 and reg[name].report_sign == 1
    assert reg["naswot"].sign == reg["synflow"].sign == 1
    others = [p for n, p in reg.items() if n not in ("params", "flops")]
    assert all(p.report_sign == p.sign for p in others)


def test_bad_records_name_the_field():
    with pytest.raises(ValueError, match="direction"):
        proxies.Proxy(name="x", direction="up", family="ntk", description="d")
    with pytest.raises(ValueError, match="report_direction"):
        proxies.Proxy(
            name="x", direction="minimize", family="ntk", description="d", report_direction="up"
        )
    with pytest.raises(ValueError, match="family"):
        proxies.Proxy(name="x", direction="minimize", family="magic", description="d")


def test_column_order_is_registration_order():
    # stored leaderboards and score tables list the proxies in this order
    assert list(proxies.PROXIES)[:2] == ["ntk_cond", "ntk_trace"]
    assert list(proxies.PROXIES)[-5:] == [
        "params",
        "flops",
        "ntk_corr_cond",
        "ntk_eff_rank",
        "ntk_top_share",
    ]
