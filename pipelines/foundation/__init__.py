"""The project's foundation, under both of its packages (``pipelines``' input side and
``vgg_keras``) and its programs: file operations on any filesystem TensorFlow reads
(``storage``), how failures read and exit (``errors``), settings declared once (``settings``),
progress lines (``progress``) and TensorFlow started quietly (``tf_runtime``). It imports nothing
else of ours.
"""
