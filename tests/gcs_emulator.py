"""An offline Cloud Storage for tests: ``gcp-storage-emulator`` (PyPI) in a thread of the test process.

    emulator = GcsEmulator(bucket="bucket").start()   # a free port; bucket created, in memory
    os.environ.update(emulator.env)                   # gcsfs, google-cloud-storage and tensorstore go there
    ...
    emulator.wipe()                                   # empty the bucket between tests
    emulator.stop()

    python tests/gcs_emulator.py sh -c "gw-jax pack raw gs://bucket/p && gw-jax bench data --packed gs://bucket/p"

runs a command against a fresh in-memory bucket (gone when the command ends). Processes a test starts
(``gw-jax train``) inherit the environment and reach the same thread. The stock emulator needs four fixes,
applied here (once, on first start) and only to this test helper:

1. ``objects.moveTo``: gcsfs renames with ``POST .../o/SRC/moveTo/o/DST``; the emulator answers 501 and gcsfs
   then retries for ~33 s before it copies and deletes. Here: copy + delete.
2. ``x-goog-generation`` on media downloads: without it tensorstore records generation 0 for a ranged read and
   the next conditional read of an Orbax (OCDBT) save fails with "Malformed StorageGeneration".
3. A deep listen backlog: the server is single-threaded (its storage has no locks) and the stock backlog of 5
   drops the connections of concurrent clients (gcsfs ``cat_ranges``, tensorstore), each retried ~1 s later.
4. Quiet connection errors (gcsfs cancels a listing that lost a race: a BrokenPipe traceback each), a short
   shutdown poll, and a daemon thread, so a test that dies before ``stop()`` cannot hang interpreter exit.

The emulator ignores preconditions (``ifGenerationMatch``): it cannot show two writers racing.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
from http import HTTPStatus

from gcp_storage_emulator import server as emulator_server
from gcp_storage_emulator.handlers import objects as emulator_objects

_MOVE_ROUTE = (r"^/storage/v1/b/(?P<bucket_name>[-.\w]+)/o/(?P<object_id>.*[^/]+)"
               r"/moveTo/o/(?P<dest_object_id>.*[^/]+)$")


def _move(request, response, storage, *args, **kwargs):
    p = request.params
    try:
        moved = emulator_objects._copy(request.base_url, storage, p["bucket_name"], p["object_id"],
                                       p["bucket_name"], p["dest_object_id"])
    except emulator_objects.NotFound:
        response.status = HTTPStatus.NOT_FOUND
        return
    emulator_objects._delete(storage, p["bucket_name"], p["object_id"])
    response.json(moved)


def _with_generation(download):
    @functools.wraps(download)
    def wrapped(request, response, storage, *args, **kwargs):
        try:
            resource = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
        except emulator_objects.NotFound:
            resource = None
        if resource is not None:
            response["x-goog-generation"] = str(resource.get("generation", "1"))
            response["x-goog-metageneration"] = str(resource.get("metageneration", "1"))
        return download(request, response, storage, *args, **kwargs)

    wrapped.patched_by_gw_jax = True
    return wrapped


class _Server(emulator_server.server.HTTPServer):
    request_queue_size = 1024  # fix 3

    def handle_error(self, request, client_address):  # fix 4: a client hung up; nothing to report
        pass


def _serve(thread) -> None:
    thread._httpd = _Server((thread._host, thread._port),
                            functools.partial(emulator_server.RequestHandler, thread._storage))
    thread.is_running.set()
    thread._httpd.serve_forever(poll_interval=0.05)  # stop() waits up to one poll interval


@functools.cache
def _patch_emulator() -> None:
    """Fixes 1-4, applied once per process."""
    download = _with_generation(emulator_objects.download)
    emulator_objects.download = download  # objects.get(alt=media) looks it up here at call time
    routes = tuple((regex, {method: download if handler is getattr(download, "__wrapped__", None) else handler
                            for method, handler in handlers.items()})
                   for regex, handlers in emulator_server.HANDLERS)
    emulator_server.HANDLERS = ((_MOVE_ROUTE, {"POST": _move}),) + routes
    emulator_server.APIThread.run = _serve


class GcsEmulator:
    def __init__(self, bucket: str = "bucket"):
        self.bucket = bucket
        self.url = None
        self._server = None

    def start(self) -> "GcsEmulator":
        _patch_emulator()
        logging.getLogger("gcp_storage_emulator").setLevel(logging.CRITICAL)
        # port 0: the OS picks a free one, so parallel test runs cannot collide
        self._server = emulator_server.create_server("127.0.0.1", 0, in_memory=True, default_bucket=self.bucket)
        self._server._api.daemon = True
        self._server.start()
        self.url = f"http://127.0.0.1:{self._server._api._httpd.server_address[1]}"
        return self

    @property
    def env(self) -> dict[str, str]:
        """What points gcsfs / google-cloud-storage and tensorstore (Orbax's arrays) at the emulator."""
        return {"STORAGE_EMULATOR_HOST": self.url, "TENSORSTORE_GCS_HTTP_URL": self.url,
                "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator"}  # tensorstore: a fixed token, no credential search

    def wipe(self) -> None:
        self._server.wipe(keep_buckets=True)

    def objects(self, prefix: str = "") -> list[str]:
        """Names of the objects in the bucket (under ``prefix``), read from the emulator's storage."""
        files = self._server._storage.objects.get(self.bucket, {})
        return sorted(name for name in files if name.startswith(prefix))

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def main(argv: list[str]) -> int:
    """Runs ``argv`` with gs://bucket served by the emulator (and gcsfs set up as the tests set it up)."""
    if not argv:
        print("usage: python tests/gcs_emulator.py COMMAND [ARGS...]  (gs://bucket served while it runs)",
              file=sys.stderr)
        return 2
    emulator = GcsEmulator(bucket="bucket").start()
    env = {**os.environ, **emulator.env, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false", "NO_GCE_CHECK": "true",
           "FSSPEC_GCS_TOKEN": "anon"}
    try:
        return subprocess.call(argv, env=env)
    finally:
        emulator.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
