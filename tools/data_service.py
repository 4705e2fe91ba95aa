r"""vgg-data-service: a tf.data service dispatcher, or one of its workers, for preprocessing the
training input on other machines (``vgg-train --data_service=grpc://HOST:PORT``).

    vgg-data-service --port=5050 --work_dir=/shared/dispatcher      # on one host
    vgg-data-service --dispatcher=dispatcher-host:5050 --port=5051  # on each CPU host
    vgg-train --data_service=grpc://dispatcher-host:5050 ...        # on the GPU host

It serves until stopped (Ctrl-C, SIGTERM). Workers read the shards themselves: they need the
data dir at the same path as the trainer.
"""

import signal
import socket
import threading

from absl import app
from absl import flags

from . import program

_PORT = flags.DEFINE_integer("port", None, "Port to listen on (default: 5050 for the "
                             "dispatcher, any free one for a worker; the one taken is printed).")
DISPATCHER_PORT = 5050
_DISPATCHER = flags.DEFINE_string("dispatcher", None, "HOST:PORT of the dispatcher: run a "
                                  "worker of it (default: run the dispatcher).")
_WORK_DIR = flags.DEFINE_string("work_dir", None, "Dispatcher: folder of its journal, so that "
                                "a restarted dispatcher recovers its jobs.")
_WORKER_ADDRESS = flags.DEFINE_string("worker_address", None, "Worker: the host name the "
                                      "dispatcher and trainers reach it at (default: this "
                                      "host's name).")
_WAIT = flags.DEFINE_float("wait", None, "Worker: how long to wait for the dispatcher to answer, "
                          "in seconds, with a line every 10 s (default: as long as it takes; "
                          "machines and pods start in any order).")
_WORKER_TIMEOUT_MS = flags.DEFINE_integer("worker_timeout_ms", None, "Dispatcher: after this "
                                          "long without a heartbeat a worker is taken as gone "
                                          "and its work given to others (default: "
                                          "TensorFlow's).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _PORT.value is not None and _PORT.value < 1:
        raise app.UsageError("--port must be >= 1")
    if _WAIT.value is not None and _WAIT.value < 0:
        raise app.UsageError("--wait must be >= 0")
    from pipelines import data_service

    if _DISPATCHER.value:
        data_service.wait_for_dispatcher(_DISPATCHER.value, _WAIT.value)
        host = _WORKER_ADDRESS.value or socket.gethostname()
        port = _PORT.value or _free_port()
        server = data_service.start_worker(_DISPATCHER.value, port, f"{host}:{port}")
        print(f"tf.data service worker on {host}:{port}, serving the dispatcher at "
              f"{_DISPATCHER.value}", flush=True)
    else:
        server = data_service.start_dispatcher(_PORT.value or DISPATCHER_PORT, _WORK_DIR.value,
                                               _WORKER_TIMEOUT_MS.value)
        print(f"tf.data service dispatcher on {server.target} (journal: "
              f"{_WORK_DIR.value or 'none'})", flush=True)
    stopped = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stopped.set())
    stopped.wait()
    print("stopped", flush=True)
    return 0


def _free_port():
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def run():
    program.run(main, "vgg-data-service")


if __name__ == "__main__":
    run()
