"""Training-free proxies: condition number, trace and spectra of full and pseudo NTKs.

Example:
  >>> from ntknas import proxies
  >>> proxies.kernel_proxies(K, n_params)["ntk_cond"]   # K: (N, N, O, O)
  >>> proxies.spectrum(ntk.as_matrix(K)).cond
  >>> proxies.PROXIES["ntk_cond"].direction             # "minimize"
"""

from ._kernel import kernel_proxies as kernel_proxies
from ._matrix_free import KernelOperator as KernelOperator
from ._matrix_free import MatrixFreeSpectrum as MatrixFreeSpectrum
from ._matrix_free import kernel_operator as kernel_operator
from ._matrix_free import matrix_free_spectrum as matrix_free_spectrum
from ._matrix_free import operator_proxies as operator_proxies
from ._rank import Term as Term
from ._rank import parse_terms as parse_terms
from ._rank import rank_sum as rank_sum
from ._rank import rank_sum_of as rank_sum_of
from ._registry import BLOCK_PROXIES as BLOCK_PROXIES
from ._registry import OBJECTIVE_PROXIES as OBJECTIVE_PROXIES
from ._registry import PROXIES as PROXIES
from ._registry import REFERENCE_PROXIES as REFERENCE_PROXIES
from ._registry import REGISTRY as REGISTRY
from ._registry import VIT_PROXIES as VIT_PROXIES
from ._registry import Proxy as Proxy
from ._registry import needs_blocks as needs_blocks
from ._spectrum import NonFiniteKernelError as NonFiniteKernelError
from ._spectrum import Spectrum as Spectrum
from ._spectrum import spectrum as spectrum
from .normalized import normalized_proxies as normalized_proxies
