"""Structure rules, one small module per family of primitives; see :mod:`._registry`."""

from . import elementwise as elementwise
from . import linalg as linalg
from . import shape as shape
from ._registry import RULES as RULES
from ._registry import VIEW_PRIMITIVES as VIEW_PRIMITIVES
from ._registry import register as register
