"""Search spaces: one small Flax file per family, registered by name."""

from ._base import SearchSpace as SearchSpace
from ._base import get_space as get_space
from ._base import list_spaces as list_spaces
from ._base import register as register
