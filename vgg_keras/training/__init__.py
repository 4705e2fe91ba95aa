"""§3.1 training on TensorFlow, one job per module:

- ``run_config``: the run's settings, their defaults (the paper's) and validation;
- ``distribution``: the ``tf.distribute`` strategy, the chief, per-worker folders;
- ``schedules``: the learning-rate schedules (÷10 on plateau, steps, cosine, warm-up);
- ``model``: the net of a run, its initialisation and its optimizer;
- ``steps``: the distributed training and validation steps, weight decay;
- ``outputs``: what a run writes as it goes (CSV log, TensorBoard, the curve, Keras files);
- ``loop``: ``train``, the resumable loop that ties them together.
"""
