"""Scoring one architecture: build, initialize, draw a batch, take the full O×O NTK, read proxies.

Example:
  >>> import ntknas
  >>> s = ntknas.score("nb201", config, batch=8, seed=0)
  >>> s["ntk_cond"], s.method, s.as_dict()
"""

from ._api import SHARED_GRAPH_MIN as SHARED_GRAPH_MIN
from ._api import score as score
from ._api import score_many as score_many
from ._cache import CacheStats as CacheStats
from ._cache import cache_stats as cache_stats
from ._cache import enable_compile_cache as enable_compile_cache
from ._options import BN_MODES as BN_MODES
from ._options import DEFAULT_BATCH as DEFAULT_BATCH
from ._options import DEFAULT_BN as DEFAULT_BN
from ._options import MATRIX_FREE_ABOVE as MATRIX_FREE_ABOVE
from ._options import ScoreOptions as ScoreOptions
from ._options import apply_overrides as apply_overrides
from ._options import canonical_json as canonical_json
from ._options import options_dict as options_dict
from ._record import PATHS as PATHS
from ._record import Score as Score
from ._scorer import SHARED_FLOPS_MAX as SHARED_FLOPS_MAX
from ._scorer import Scorer as Scorer
from ._scorer import own_variables as own_variables
