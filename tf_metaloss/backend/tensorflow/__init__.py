"""The TensorFlow backend: tapes, `tf.function`, `tf.distribute`."""
