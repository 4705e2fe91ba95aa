"""§3.1 training on TensorFlow, one job per module (BUILD.md, "Layout", maps them); ``loop.train``
runs a run."""
