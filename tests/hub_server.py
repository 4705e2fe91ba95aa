"""A download server on 127.0.0.1 standing in for the Hugging Face Hub and for a plain HTTP file
host: the Hub's ``/{repository}/resolve/{revision}/{file}`` with the headers huggingface_hub reads
(``X-Repo-Commit``, ``X-Linked-Etag``: the file's sha256, ``X-Linked-Size``) and ``Range``
requests; any other path as a plain file. A file can be served with another hash than its own,
or cut off midway a number of times. The test that starts it stops it (a context manager). And
a Hugging Face cache laid out by hand, as huggingface_hub lays it out."""

import contextlib
import dataclasses
import hashlib
import http.server
import threading

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclasses.dataclass
class Served:
    """A file's bytes, the sha256 announced for it (default: its own), and how many of the next
    GETs break off after ``cut_at`` bytes."""

    data: bytes
    sha256: str | None = None
    cut_at: int = 0
    cuts: int = 0


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # the test reads its own lines, not the server's
        pass

    def _file(self):
        path = self.path.split("?")[0]
        self.server.requests.append((self.command, path, self.headers.get("Range")))
        return path, self.server.files.get(path)

    def do_HEAD(self):  # noqa: N802 - http.server's name
        path, served = self._file()
        if served is None:
            return self._missing()
        self.send_response(200)
        self._headers(served, len(served.data))
        self.end_headers()

    def do_GET(self):  # noqa: N802 - http.server's name
        path, served = self._file()
        if served is None:
            return self._missing()
        start = 0
        if self.headers.get("Range", "").startswith("bytes="):
            start = int(self.headers["Range"][len("bytes="):].split("-")[0])
        body = served.data[start:]
        self.send_response(206 if start else 200)
        self._headers(served, len(body))
        if start:
            self.send_header("Content-Range",
                             f"bytes {start}-{len(served.data) - 1}/{len(served.data)}")
        self.end_headers()
        if served.cuts > 0:
            served.cuts -= 1
            self.wfile.write(body[:max(served.cut_at - start, 1)])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def _headers(self, served, length):
        sha256 = served.sha256 or hashlib.sha256(served.data).hexdigest()
        self.send_header("Content-Length", str(length))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("X-Linked-Etag", f'"{sha256}"')
        self.send_header("ETag", f'"{sha256}"')
        self.send_header("X-Linked-Size", str(len(served.data)))

    def _missing(self):
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.send_header("X-Error-Code", "EntryNotFound")
        self.end_headers()


@contextlib.contextmanager
def serving(files):
    """Serves ``{path: Served}`` on a free port of 127.0.0.1; yields the server, whose ``url``
    is its address and ``requests`` the ``(method, path, range)`` it was asked."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.files, server.requests = files, []
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def hub_path(repository, file, revision="main"):
    return f"/{repository}/resolve/{revision}/{file}"


def lay_out_cache(hub_cache, repository, file, data, revision=COMMIT):
    """``data`` as ``file`` of ``repository`` in a Hugging Face cache, laid out as
    huggingface_hub lays it out: ``models--<owner>--<name>/blobs/<sha256>``,
    ``snapshots/<revision>/<file>`` linking to it, ``refs/main`` naming the revision. Returns the
    snapshot's path."""
    import pathlib

    folder = pathlib.Path(hub_cache) / f"models--{repository.replace('/', '--')}"
    blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    snapshot = folder / "snapshots" / revision / file
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    snapshot.symlink_to(pathlib.Path("..", "..", "blobs", blob.name))
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(revision)
    return snapshot
