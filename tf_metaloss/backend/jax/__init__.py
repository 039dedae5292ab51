"""The JAX backend: differentiation, replica arithmetic and the training loop."""
