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

from pipelines import data_service

from . import program

# A flag for every setting of vgg-data-service, as its config declares it.
SETTINGS = program.Settings(data_service.ServiceConfig, __name__)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = SETTINGS.read()
    if config.dispatcher:
        data_service.wait_for_dispatcher(config.dispatcher, config.wait)
        host = config.worker_address or socket.gethostname()
        port = config.port or _free_port()
        server = data_service.start_worker(config.dispatcher, port, f"{host}:{port}")
        print(f"tf.data service worker on {host}:{port}, serving the dispatcher at "
              f"{config.dispatcher}", flush=True)
    else:
        server = data_service.start_dispatcher(config.port or data_service.DISPATCHER_PORT,
                                               config.work_dir, config.worker_timeout_ms)
        print(f"tf.data service dispatcher on {server.target} (journal: "
              f"{config.work_dir or 'none'})", flush=True)
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
