"""Where a program computes: the ``tf.distribute`` strategy of ``--distribution_strategy`` (one
device, several GPUs with ``MirroredStrategy``, several machines with
``MultiWorkerMirroredStrategy``, a TPU), and which worker is the chief: what training and
evaluation share.
"""

import tensorflow as tf

from pipelines.foundation import errors
from vgg_keras.compute import cluster


def make_strategy(name, num_gpus=None, cpu_replicas=None, tpu=None, report=print):
    """Returns the ``tf.distribute`` strategy for ``--distribution_strategy``.

    ``cpu_replicas`` splits the CPU into that many logical devices first, so that
    ``MirroredStrategy`` (or each worker of ``multi_worker``) runs that many replicas without
    GPUs (TensorFlow must not have started yet). ``tpu``: the Cloud TPU (its name or
    ``grpc://`` address, or ``local`` on a TPU VM) of ``name="tpu"``; default: the one the
    environment names (``TPU_NAME``). ``multi_worker`` reads ``TF_CONFIG`` and waits for the
    cluster's other tasks first (``cluster``), saying so with ``report``.

    Raises:
        UserError: if ``num_gpus`` asks for more GPUs than are visible, or ``TF_CONFIG`` is
            missing or wrong.
        TemporaryError: if this task's port is taken.
    """
    if cpu_replicas:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
    # These two must exist before TensorFlow's runtime starts (listing devices starts it).
    if name == "multi_worker":
        return _multi_worker(cpu_replicas, report)
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    gpus = tf.config.list_logical_devices("GPU")
    if num_gpus is not None:
        if num_gpus > len(gpus):
            raise errors.UserError(f"--num_gpus={num_gpus} but only {len(gpus)} GPUs are visible")
        gpus = gpus[:num_gpus]
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(devices[0])
    return tf.distribute.get_strategy()


def _multi_worker(cpu_replicas, report):
    """``MultiWorkerMirroredStrategy`` once every task of the cluster has started, on
    ``cpu_replicas`` logical CPU devices of each worker where given."""
    from tensorflow.python.distribute import collective_all_reduce_strategy as collective

    found = cluster.read_cluster()
    task = found.name(found.tasks[found.index])
    cluster.rendezvous(found, report, announce=f"{task}: one of {len(found.tasks)} tasks; "
                                               "waiting for the others to start")
    port = found.address.rsplit(":", 1)[1]
    report(f"{task}: every task has started; TensorFlow's gRPC server listens on every "
           f"interface at port {port}, without authentication (keep the cluster inside a "
           "private network)", flush=True)
    if not cpu_replicas:
        return tf.distribute.MultiWorkerMirroredStrategy()
    # Without GPUs TensorFlow gives each worker one CPU device (its
    # CollectiveAllReduceExtended._initialize_local_devices); a split CPU's devices are given
    # instead, as its own _from_local_devices does for one machine.
    extended = collective.CollectiveAllReduceExtended
    original = extended._initialize_local_devices

    def split_cpu(self, resolver, worker_device):
        return tuple(f"{worker_device}/device:CPU:{i}" for i in range(cpu_replicas)), "CPU"

    extended._initialize_local_devices = split_cpu
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    finally:
        extended._initialize_local_devices = original


def worker_share(strategy):
    """``(number of workers, this worker's index)`` of ``strategy``: the chief first (or, without
    one, worker 0), then the workers by index; ``(1, 0)`` outside a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not spec:
        return 1, 0
    workers = sorted((job, index) for job in ("chief", "worker")
                     for index in range(len(spec.get(job, []))))
    return len(workers), workers.index((resolver.task_type, resolver.task_id))


def is_chief(strategy):
    """Whether this worker writes the model dir (the others write to scratch folders)."""
    return worker_share(strategy)[1] == 0
