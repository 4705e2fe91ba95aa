"""``vgg-evaluate``: the paper's test protocols (§3.2, §4) over a validation split, on every replica
of every worker; top-1/top-5 errors in the shape of Tables 3–7.

``config.EvalConfig`` says what an evaluation is; ``evaluator.evaluate`` runs it; ``batches``
streams the images through the protocols of ``vgg_keras.protocols`` on the replicas; ``results``
counts, prints and writes what they found.
"""
