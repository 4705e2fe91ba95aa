"""The trained net where it is served: ``graph`` is the serving graph of an export (image bytes
in, top-k classes out); ``export`` writes it as a new version that TF Serving loads as it is,
with, as ``formats`` writes them (ONNX's graph by ``onnx_graph``), the same net as ONNX, LiteRT
and OpenVINO models of uint8 crops, which ``runtimes`` runs; ``client`` is what a client of
those does to an image first.
"""
