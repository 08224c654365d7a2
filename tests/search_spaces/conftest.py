import pytest

from ntknas.ntk.structured import _structure


@pytest.fixture
def dense_calls(monkeypatch):
    """Counts the structured interpreter's dense fallbacks (a primitive without a fitting rule)."""
    calls = []
    real = _structure.dense

    def counting(eqn, *args):
        calls.append(eqn.name)
        return real(eqn, *args)

    monkeypatch.setattr(_structure, "dense", counting)
    return calls
