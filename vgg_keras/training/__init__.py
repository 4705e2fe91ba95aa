"""§3.1 training on TensorFlow, one job per module:

- ``run_config``: the run's settings, their defaults (the paper's) and validation;
- ``distribution``: the ``tf.distribute`` strategy, the chief, per-worker folders;
- ``schedules``: the learning-rate schedules (÷10 on plateau, steps, cosine, warm-up);
- ``model``: the net of a run, its initialisation and its optimizer;
- ``state``: the run's state and its checkpoints (backup, latest, best), and where it resumed;
- ``steps``: the distributed training and validation steps, weight decay;
- ``outputs``: what a run writes as it goes (CSV log, TensorBoard, the curve, Keras files);
- ``run_identity``: ``run.json``, the settings that define a run; a changed command is refused;
- ``preemption``: SIGTERM and Ctrl-C stop a run after its step, with a backup of it;
- ``loop``: ``train``, the resumable loop that ties them together.
"""
