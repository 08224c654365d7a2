import jax

# Float64 references need x64; float32 tests create float32 arrays explicitly.
jax.config.update("jax_enable_x64", True)
