"""The NTK engine: finite-width Neural Tangent Kernels of any JAX function.

Imports jax and numpy only.

Example:
  >>> from ntknas import ntk
  >>> kernel_fn = ntk.ntk_fn(f)              # method="auto"
  >>> K = kernel_fn(x1, x2, params)          # (N1, N2, O, O)
  >>> ntk.explain(f, x1, x2, params).method  # which method auto picked, and why
"""

from ._api import KernelFn as KernelFn
from ._api import as_matrix as as_matrix
from ._api import explain as explain
from ._api import ntk_fn as ntk_fn
from ._auto import Estimate as Estimate
from ._auto import Explanation as Explanation
from ._kernel import NtkMethod as NtkMethod
from ._param_blocks import path_keys as path_keys
from ._pseudo import PSEUDO_KINDS as PSEUDO_KINDS
from ._pseudo import pseudo_kernels as pseudo_kernels
from ._pseudo import pseudo_ntk_fn as pseudo_ntk_fn
from ._pseudo import single_logit_kernel as single_logit_kernel
from ._pseudo import sum_of_logits_kernel as sum_of_logits_kernel
from ._pseudo import trace_kernel as trace_kernel
from ._vector_products import ntk_vp_fn as ntk_vp_fn
