"""The trained net where it is served: ``graph`` is the serving graph of an export (image bytes
in, top-k classes out); ``export`` writes it as a new version that TF Serving loads as it is.
"""
