"""The one owner of "a model from anywhere": ``layout`` says what a model dir, a checkpoint and an
export look like on disk (names, discovery, metadata; no Keras, no TensorFlow); ``loading`` reads
any of them as a Keras model, published weights included, above the ``runtimes`` that run the
tensor formats; ``settings`` declares the settings that name a model, shared by the programs
that take one.
"""
