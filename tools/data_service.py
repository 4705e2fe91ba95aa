r"""vgg-data-service: a tf.data service dispatcher, or one of its workers, for preprocessing the
training input on other machines (``vgg-train --data_service=grpc://HOST:PORT``).

    vgg-data-service --port=5050 --work_dir=/shared/dispatcher      # on one host
    vgg-data-service --dispatcher=dispatcher-host:5050 --port=5051  # on each CPU host
    vgg-train --data_service=grpc://dispatcher-host:5050 ...        # on the GPU host

It serves until stopped (Ctrl-C, SIGTERM). Workers read the shards themselves: they need the
data dir at the same path as the trainer.
"""

import os
import signal
import socket
import sys
import threading

from absl import app

from pipelines import data_service

from . import program

STOP_SECONDS = 5.0  # well inside Kubernetes' 30 s grace
# A flag for every setting of vgg-data-service, as its config declares it.
SETTINGS = program.Settings(data_service.ServiceConfig, __name__)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = SETTINGS.read()
    exposed = ("listening on every interface, without authentication: keep it inside a "
               "private network")
    if config.dispatcher:
        data_service.wait_for_dispatcher(config.dispatcher, config.wait)
        host = config.worker_address or socket.gethostname()
        port = config.port or _free_port()
        server = data_service.start_worker(config.dispatcher, port, f"{host}:{port}")
        print(f"tf.data service worker at {host}:{port} ({exposed}), serving the dispatcher "
              f"at {config.dispatcher}", flush=True)
    else:
        port = config.port or data_service.DISPATCHER_PORT
        server = data_service.start_dispatcher(port, config.work_dir, config.worker_timeout_ms)
        print(f"tf.data service dispatcher at grpc://{socket.gethostname()}:{port} ({exposed}; "
              f"journal: {config.work_dir or 'none'}; a worker silent for "
              f"{config.worker_timeout_ms / 1000:g} s is forgotten)", flush=True)
    stopped = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stopped.set())
    stopped.wait()
    # The server's own stop (and TensorFlow's at the interpreter's exit) can wait on its
    # clients for a minute: given STOP_SECONDS, then the process ends as asked.
    stopping = threading.Thread(target=server.stop, daemon=True)
    stopping.start()
    stopping.join(STOP_SECONDS)
    print("stopped", flush=True)
    sys.stderr.flush()
    os._exit(0)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def run():
    program.run(main, "vgg-data-service")


if __name__ == "__main__":
    run()
