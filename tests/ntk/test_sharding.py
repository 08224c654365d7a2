"""Kernel rows sharded over several devices give the same kernel as one device.

Runs in a subprocess: the host-platform device count is fixed when JAX starts.
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from ntknas import ntk
    from tests.ntk import zoo

    assert len(jax.local_devices()) == 4, jax.local_devices()
    c = zoo.relu_fcn(np.float64, n1=8, n2=3)
    for method in ("jacobian_contraction", "ntk_vector_products", "structured_derivatives", "auto"):
        one = ntk.ntk_fn(c.f, method=method)(c.x1, c.x2, c.params)
        many = ntk.ntk_fn(c.f, method=method, shard=True)(c.x1, c.x2, c.params)
        assert len(many.sharding.device_set) == 4, many.sharding
        err = np.abs(np.asarray(many) - np.asarray(one)).max() / np.abs(np.asarray(one)).max()
        assert err < 1e-12, (method, err)
        same = ntk.ntk_fn(c.f, method=method, shard=True)(c.x1, None, c.params)
        want = ntk.ntk_fn(c.f, method=method)(c.x1, None, c.params)
        assert np.abs(np.asarray(same) - np.asarray(want)).max() < 1e-12 * np.abs(want).max()
    print("ok")
    """
)


def test_four_devices_give_the_one_device_kernel():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env["JAX_PLATFORMS"] = "cpu"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, cwd=root, capture_output=True, text=True
    )
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]
