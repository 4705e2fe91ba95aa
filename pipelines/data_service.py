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

import dataclasses
import functools
import socket
import threading
import time
import urllib.parse

from pipelines.foundation import errors
from pipelines.foundation import settings as declared
from pipelines.foundation.settings import at_least
from pipelines.foundation.settings import setting

PROTOCOL = "grpc"
CONNECT_TIMEOUT = 10.0  # seconds to wait for a dispatcher to accept a connection
DISPATCHER_PORT = 5050
# A worker that stops heart-beating is forgotten after this long (TensorFlow's default keeps a
# dead worker registered, and the trainer waiting on it, for minutes).
WORKER_TIMEOUT_MS = 20_000


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServiceConfig:
    """``vgg-data-service``: a dispatcher, or (with ``dispatcher``) one of its workers."""

    port: int | None = setting(None, "Port to listen on (default: 5050 for the dispatcher, any "
                                     "free one for a worker; the one taken is printed).",
                               check=at_least(1))
    dispatcher: str | None = setting(None, "HOST:PORT of the dispatcher: run a worker of it "
                                           "(default: run the dispatcher).")
    work_dir: str | None = setting(None, "Dispatcher: folder of its journal, so that a "
                                         "restarted dispatcher recovers its jobs.")
    worker_address: str | None = setting(None, "Worker: the host name the dispatcher and "
                                               "trainers reach it at (default: this host's "
                                               "name).")
    wait: float | None = setting(None, "Worker: how long to wait for the dispatcher to answer, "
                                       "in seconds, with a line every 10 s (default: as long as "
                                       "it takes; machines and pods start in any order).",
                                 check=at_least(0))
    worker_timeout_ms: int = setting(WORKER_TIMEOUT_MS, "Dispatcher: after this long without "
                                                        "a heartbeat a worker is taken as gone "
                                                        "and its work given to others.",
                                     check=at_least(1))

    def validate(self):
        """Raises ``UserError`` for a value that cannot work."""
        declared.check_settings(self)
        if self.dispatcher:
            parse_address(self.dispatcher)


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
    (``tensorflow.data.DispatcherService/GetWorkers``), and its answer is parsed by the protobuf
    library with the two messages it needs (``_dispatcher_messages``)."""
    import grpc

    request, response = _dispatcher_messages()
    host, port = parse_address(address)
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        call = channel.unary_unary("/tensorflow.data.DispatcherService/GetWorkers",
                                   request_serializer=request.SerializeToString,
                                   response_deserializer=response.FromString)
        answer = call(request(), timeout=timeout)
    return [worker.address for worker in answer.workers]


@functools.lru_cache(maxsize=1)
def _dispatcher_messages():
    """``(GetWorkersRequest, GetWorkersResponse)`` message classes, as the dispatcher's protocol
    (tensorflow/core/data/service/dispatcher.proto) declares the fields read here: TensorFlow does
    not ship its Python module, so the declaration is written out, and protobuf builds the
    classes from it (fields left out of a declaration are skipped when parsing)."""
    from google.protobuf import descriptor_pb2
    from google.protobuf import descriptor_pool
    from google.protobuf import message_factory

    proto = descriptor_pb2.FileDescriptorProto(name="vgg_keras_dispatcher.proto",
                                               package="tensorflow.data", syntax="proto3")
    proto.message_type.add(name="GetWorkersRequest")
    info = proto.message_type.add(name="WorkerInfo")
    info.field.add(name="address", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                   label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    answer = proto.message_type.add(name="GetWorkersResponse")
    answer.field.add(name="workers", number=1,
                     type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                     type_name=".tensorflow.data.WorkerInfo",
                     label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED)
    pool = descriptor_pool.DescriptorPool()  # our own pool: never clashes with TensorFlow's
    pool.Add(proto)
    return tuple(message_factory.GetMessageClass(pool.FindMessageTypeByName(
        f"tensorflow.data.{name}")) for name in ("GetWorkersRequest", "GetWorkersResponse"))


def watch_workers(address, report=print, interval=30.0, waiting=None):
    """A daemon thread that says, at once and then every ``interval`` seconds, when the
    dispatcher at ``address`` has no worker registered (a trainer's input then waits without
    end), and, where ``waiting()`` (seconds the trainer's step has waited, or None) passes
    ``interval``, that no batch has come, with the workers the dispatcher knows; returns a
    function that stops it."""
    stopped = threading.Event()

    def watch():
        while True:
            waited = waiting() if waiting else None
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
                elif waited is not None and waited >= interval:
                    report(f"no batch from the tf.data service at {address} for "
                           f"{waited:.0f} s; its dispatcher knows {len(workers)} worker(s): "
                           f"{', '.join(workers)} (a worker that died is forgotten after the "
                           "dispatcher's --worker_timeout_ms)", flush=True)
            if stopped.wait(interval):
                return

    threading.Thread(target=watch, name="data-service-workers", daemon=True).start()
    return stopped.set


# What the trainer's input raises when the service lost its job: a dispatcher restarted
# without its journal ("Iteration id 2000 not found"), or one that went away.
_LOST = ("not found", "Failed to get or create", "unavailable", "Socket closed",
         "Connection refused", "deadline exceeded")


def service_gone(error, address, resume_from):
    """A ``TemporaryError`` for a TensorFlow error of the trainer's input that says the tf.data
    service at ``address`` lost its job or went away (a rerun resumes from ``resume_from``), or
    None for any other error."""
    message = getattr(error, "message", "") or str(error)
    kinds = ("NotFoundError", "UnavailableError", "AbortedError", "DeadlineExceededError",
             "FailedPreconditionError", "InternalError")
    if type(error).__name__ not in kinds or not any(
            text.lower() in message.lower() for text in _LOST):
        return None
    return errors.TemporaryError(
        f"the tf.data service at {address} lost this run's input ({errors.one_line(error)}): "
        "its dispatcher restarted without a journal (--work_dir) or went away; rerun the same "
        f"command once it answers, and the run resumes from "
        f"{resume_from or 'its start (no checkpoint yet)'}")


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
