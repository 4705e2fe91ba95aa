"""Where a program computes, below training and evaluation, which both compute there: the
settings that say it (``settings``: strategy, TPU, GPUs, CPU replicas), the ``tf.distribute``
strategy they make (``distribution``), and the cluster of a multi-worker run (``cluster``: TF_CONFIG
read and checked, peers waited for, a peer gone told apart from a bug).
"""
