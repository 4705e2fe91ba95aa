"""A function of one batch run on every local replica at once (``vgg-evaluate``'s protocols,
``vgg-explain``'s maps): the batches of a worker spread over its devices, R at a time."""

import numpy as np
import tensorflow as tf


class ReplicaRunner:
    """Runs a function of one batch on every local replica at once: batches R at a time, each
    on its own device. A replica with no batch left gets one input of the first batch, whose
    result is dropped: an empty batch is what some kernels refuse (oneDNN's convolutions:
    "input depth must be evenly divisible by filter depth")."""

    def __init__(self, strategy):
        self.strategy = strategy
        try:
            self.devices = list(strategy.extended.worker_devices)
        except RuntimeError:  # the default strategy: one device, the current one
            self.devices = None
        self._steps = {}

    def run(self, key, function, batches):
        """``function`` on each of ``batches`` (NumPy arrays), its results (an array, or a
        tuple of them) as NumPy arrays in the same order; ``key`` names the function for its
        compiled step."""
        if self.devices is None:
            if key not in self._steps:
                self._steps[key] = tf.function(function, reduce_retracing=True,
                                               autograph=False)
            return [tf.nest.map_structure(np.asarray, self._steps[key](tf.constant(batch)))
                    for batch in batches]
        if key not in self._steps:
            self._steps[key] = tf.function(
                lambda values: self.strategy.run(function, args=(values,)),
                reduce_retracing=True, autograph=False)
        step, replicas, results = self._steps[key], len(self.devices), []
        for start in range(0, len(batches), replicas):
            group = batches[start:start + replicas]
            padded = group + [group[0][:1]] * (replicas - len(group))
            output = step(self._distribute(padded))
            leaves = [self.strategy.experimental_local_results(leaf)
                      for leaf in tf.nest.flatten(output)]
            results += [tf.nest.pack_sequence_as(output, [np.asarray(leaf[index])
                                                          for leaf in leaves])
                        for index in range(len(group))]
        return results

    def _distribute(self, batches):
        def value(context):
            index = context.replica_id_in_sync_group % len(self.devices)
            with tf.device(self.devices[index]):
                return tf.identity(tf.constant(batches[index]))

        return self.strategy.experimental_distribute_values_from_function(value)
