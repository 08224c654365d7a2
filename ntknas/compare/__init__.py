"""Compare training-free proxies: how well each ranks architectures, what each costs.

Example:
  >>> from ntknas import compare
  >>> df = compare.score_all(space, configs, ScoreOptions(batch=4))
  >>> compare.correlations(df, truth, proxies)      # Spearman/Kendall with bootstrap CIs
"""

from ._run import run as run
from ._scores import REFERENCE_PROXIES as REFERENCE_PROXIES
from ._scores import SECONDS_COLUMNS as SECONDS_COLUMNS
from ._scores import ProxyScorer as ProxyScorer
from ._scores import score_all as score_all
