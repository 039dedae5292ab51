"""The meta step's building blocks (the TensorFlow-specific part of the library)."""
