"""The nets: the configurations of Table 1, their layers and builders (a backbone, a classifier on
it, and ``build_vgg`` the two in one call), initialisers, weight loaders, feature taps and losses.

Keras only, any backend: nothing under ``vgg_keras/nets/`` imports TensorFlow or ``pipelines``
(``tests/test_structure.py`` holds it to that). The modules are imported on first use, so that
``vgg_keras.nets.configs``, pure Python, can be read without importing Keras.
"""
