"""Preprocessing on other machines: TensorFlow's tf.data service (``tf.data.experimental.service``)
runs the training input on a dispatcher's workers, and the trainer only receives batches.

A trainer outgrows its host's cores long before its GPUs (BENCHMARKS.md: VGG-16 on 8 H100s wants
some 80 of these cores for decoding and cropping). The service is TensorFlow's own engine for
this, as Model Garden's ``tf_data_service_address``: one dispatcher, any number of CPU workers,
each running the same ``tf.data`` graph as the local pipeline (the same crops and labels).

Sharding is ``DYNAMIC``: the shard files are handed out to workers as they ask for them, so
each image is read at most once per pass over the files, workers may come and go, and one that
dies loses only the file it was reading. Order is not kept: deterministic runs stay local.
"""

import socket
import urllib.parse

from pipelines import errors

PROTOCOL = "grpc"
CONNECT_TIMEOUT = 10.0  # seconds to wait for a dispatcher to accept a connection


def parse_address(address):
    """``(host, port)`` of ``grpc://HOST:PORT`` (or ``HOST:PORT``).

    Raises:
        ValueError: for another form.
    """
    text = address if "://" in address else f"{PROTOCOL}://{address}"
    parsed = urllib.parse.urlparse(text)
    if parsed.scheme != PROTOCOL or not parsed.hostname or not parsed.port:
        raise errors.UserError(f"--data_service={address} is not grpc://HOST:PORT, the address "
                               "of a tf.data service dispatcher (vgg-data-service --port=PORT)")
    return parsed.hostname, parsed.port


def check_reachable(address, timeout=CONNECT_TIMEOUT):
    """Fails at once, clearly, if nothing accepts connections at the dispatcher's address
    (the service's own client would wait for it without end).

    Raises:
        ValueError: naming the address and how to start a dispatcher there.
    """
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return f"{PROTOCOL}://{host}:{port}"
    except OSError as error:
        raise errors.UserError(f"no tf.data service dispatcher answers at {PROTOCOL}://{host}:"
                               f"{port} ({error.strerror or error}): start one there with "
                               f"`vgg-data-service --port={port}`, and workers with "
                               f"`vgg-data-service --dispatcher={host}:{port}`") from None


def distribute(dataset, address, job_name):
    """``dataset`` produced by the service's workers; every client asking for ``job_name``
    shares one stream (each element goes to one of them)."""
    import tensorflow as tf

    return dataset.apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
        service=f"{PROTOCOL}://{':'.join(map(str, parse_address(address)))}",
        job_name=job_name))


def start_dispatcher(port, work_dir=None, worker_timeout_ms=None):
    """Starts a dispatcher on ``port`` (its journal in ``work_dir``, so that a restarted
    dispatcher recovers its jobs); returns the server."""
    import tensorflow as tf

    service = tf.data.experimental.service
    return service.DispatchServer(service.DispatcherConfig(
        port=port, protocol=PROTOCOL, work_dir=work_dir, fault_tolerant_mode=bool(work_dir),
        worker_timeout_ms=worker_timeout_ms))


def start_worker(dispatcher, port=0, worker_address=None):
    """Starts a worker of the dispatcher at ``HOST:PORT`` on ``port`` (0: any free one), that
    the dispatcher and trainers reach at ``worker_address`` (default: this host's name)."""
    import tensorflow as tf

    host, dispatcher_port = parse_address(dispatcher)
    service = tf.data.experimental.service
    config = service.WorkerConfig(
        dispatcher_address=f"{host}:{dispatcher_port}", port=port, protocol=PROTOCOL,
        worker_address=worker_address or f"{socket.gethostname()}:%port%")
    return service.WorkerServer(config)
