"""Keras models that meta-learn their loss."""
