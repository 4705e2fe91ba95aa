"""``vgg-evaluate``: the paper's test protocols (§3.2, §4) over a validation split, on every replica
of every worker; top-1/top-5 errors in the shape of Tables 3–7.

``config.EvalConfig`` says what an evaluation is; ``evaluator.evaluate`` runs it; ``batches``
streams the images through the protocols of ``vgg_keras.protocols`` on the replicas; ``results``
counts, prints and writes what they found. The names below are loaded on first use.
"""

import importlib

_EXPORTS = {"EvalConfig": "config", "evaluate": "evaluator", "Evaluation": "evaluator",
            "format_table": "results", "write_results": "results"}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vgg_keras.evaluation' has no attribute {name!r}")
    return getattr(importlib.import_module(f"vgg_keras.evaluation.{_EXPORTS[name]}"), name)
