"""Search spaces: one small Flax file per family, registered by name.

Importing this package registers every space; ``get_space(name)`` returns one and
``list_spaces()`` names them all.
"""

from . import mixer as mixer  # noqa: F401  (registers "mlp-mixer")
from . import mlp as mlp  # noqa: F401  (registers "mlp")
from . import nb201 as nb201  # noqa: F401  (registers "nb201")
from . import resnet as resnet  # noqa: F401  (registers "resnet")
from . import vit as vit  # noqa: F401  (registers "vit-tiny", "vit-small", "vit-base")
from ._base import SHORT_WIDTH as SHORT_WIDTH
from ._base import SearchSpace as SearchSpace
from ._base import SharedGraph as SharedGraph
from ._base import get_space as get_space
from ._base import list_spaces as list_spaces
from ._base import register as register
