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
import threading
import time
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


def wait_for_dispatcher(address, wait=None, report=print, interval=10.0):
    """Waits until a dispatcher accepts connections at ``address`` (pods and machines start in
    any order), with a line to ``report`` every ``interval`` seconds; returns its address.

    Raises:
        UserError: if none answered within ``wait`` seconds (None: wait as long as it takes).
    """
    started = time.monotonic()
    reported = started
    while True:
        try:
            return check_reachable(address, timeout=min(CONNECT_TIMEOUT, interval))
        except errors.UserError:
            waited = time.monotonic() - started
            if wait is not None and waited >= wait:
                raise errors.UserError(f"no tf.data service dispatcher answered at {address} "
                                       f"within --wait={wait:g} s: start it there "
                                       "(vgg-data-service --port=PORT), or wait longer") from None
            if time.monotonic() - reported >= interval or reported == started:
                report(f"waiting for the tf.data service dispatcher at {address} "
                       f"({waited:.0f} s so far)", flush=True)
                reported = time.monotonic()
            time.sleep(min(1.0, interval))


def registered_workers(address, timeout=CONNECT_TIMEOUT):
    """The addresses of the workers registered with the dispatcher at ``address``.

    TensorFlow offers no client call for this; the dispatcher's gRPC service does
    (``tensorflow.data.DispatcherService/GetWorkers``, in tensorflow/core/data/service/
    dispatcher.proto): its answer is read here with the protocol buffer wire format, as its
    Python message class is not shipped (a repeated ``WorkerInfo workers = 1`` whose field 1 is
    the address)."""
    import grpc

    host, port = parse_address(address)
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        call = channel.unary_unary("/tensorflow.data.DispatcherService/GetWorkers",
                                   request_serializer=lambda request: request,
                                   response_deserializer=lambda response: response)
        answer = call(b"", timeout=timeout)
    return [_field(info, 1).decode() for info in _fields(answer, 1)]


def _fields(message, number):
    """The length-delimited fields ``number`` of a serialized protocol buffer message."""
    found, position = [], 0
    while position < len(message):
        key, position = _varint(message, position)
        kind = key & 7
        if kind == 2:
            length, position = _varint(message, position)
            if key >> 3 == number:
                found.append(message[position:position + length])
            position += length
        elif kind == 0:
            _, position = _varint(message, position)
        else:  # fixed 64- or 32-bit fields: none in these messages, but skip them right
            position += 8 if kind == 1 else 4
    return found


def _field(message, number):
    values = _fields(message, number)
    return values[0] if values else b""


def _varint(data, position):
    value, shift = 0, 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def watch_workers(address, report=print, interval=30.0):
    """A daemon thread that says, at once and then every ``interval`` seconds, when the
    dispatcher at ``address`` has no worker registered (a trainer's input then waits without
    end); returns a function that stops it."""
    stopped = threading.Event()

    def watch():
        while True:
            try:
                workers = registered_workers(address)
            except Exception as error:  # noqa: BLE001 - a report, never a failure of the run
                report(f"the tf.data service at {address} does not answer ({error}): the "
                       "input waits", flush=True)
            else:
                if not workers:
                    report(f"the tf.data service at {address} has 0 workers registered: the "
                           "input waits for one (start it: vgg-data-service "
                           f"--dispatcher={':'.join(map(str, parse_address(address)))})",
                           flush=True)
            if stopped.wait(interval):
                return

    threading.Thread(target=watch, name="data-service-workers", daemon=True).start()
    return stopped.set


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
