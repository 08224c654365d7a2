import os

import jax

# Tests never write to the user's compilation cache; the cache's own tests set a temporary one.
os.environ.setdefault("NTKNAS_COMPILE_CACHE", "0")

# Float64 references need x64; float32 tests create float32 arrays explicitly.
jax.config.update("jax_enable_x64", True)
