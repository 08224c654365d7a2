"""Optuna studies of architectures: the search that runs one, its storage, its leaderboard.

``ntknas.search`` and ``ntknas.leaderboard`` are this package's :func:`search` and
:func:`leaderboard`.

Example:
  >>> from ntknas.study import leaderboard, search
  >>> study = search("nb201", n_trials=20, storage="sqlite:///ntknas.db")
  >>> leaderboard(study, top=5)
"""

from ._budget import SPACE_DEFAULT as SPACE_DEFAULT
from ._budget import Budget as Budget
from ._budget import count_text as count_text
from ._budget import out_of_budget as out_of_budget
from ._budget import resolve_budget as resolve_budget
from ._leaderboard import leaderboard as leaderboard
from ._leaderboard import render as render
from ._objective import Target as Target
from ._objective import objective_str as objective_str
from ._objective import parse_objective as parse_objective
from ._runner import default_study_name as default_study_name
from ._runner import search as search
from ._samplers import grid_search_space as grid_search_space
from ._samplers import sampler_names as sampler_names
from ._spaces import space_summaries as space_summaries
from ._storage import DEFAULT_HEARTBEAT as DEFAULT_HEARTBEAT
from ._storage import DEFAULT_RETRIES as DEFAULT_RETRIES
from ._storage import DEFAULT_STORAGE as DEFAULT_STORAGE
from ._storage import RECONNECT_SECONDS as RECONNECT_SECONDS
from ._storage import load_study as load_study
from ._storage import mask_text as mask_text
from ._storage import mask_url as mask_url
from ._storage import open_storage as open_storage
from ._ui import Terminated as Terminated
