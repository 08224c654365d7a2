"""Training-free proxies: condition number, trace and spectra of full and pseudo NTKs.

Example:
  >>> from ntknas import proxies
  >>> proxies.kernel_proxies(K, n_params)["ntk_cond"]   # K: (N, N, O, O)
  >>> proxies.spectrum(ntk.as_matrix(K)).cond
"""

from ._kernel import PROXIES as PROXIES
from ._kernel import Proxy as Proxy
from ._kernel import kernel_proxies as kernel_proxies
from ._spectrum import NonFiniteKernelError as NonFiniteKernelError
from ._spectrum import Spectrum as Spectrum
from ._spectrum import spectrum as spectrum
from .normalized import normalized_proxies as normalized_proxies
