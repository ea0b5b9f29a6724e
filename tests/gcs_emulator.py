"""A local GCS emulator for tests: `python tests/gcs_emulator.py PORT BUCKET`.

gcp-storage-emulator, plus the `x-goog-generation` header on every media download, which
tensorstore (orbax's array writer) reads to make its conditional writes; real GCS sends it.
"""

import sys

from gcp_storage_emulator import server
from gcp_storage_emulator.handlers import objects

_download = objects.download


def download(request, response, storage, *args, **kwargs):
    try:
        obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
        response["x-goog-generation"] = obj["generation"]
        response["x-goog-metageneration"] = obj["metageneration"]
    except Exception:  # not found: the original handler answers 404
        pass
    return _download(request, response, storage, *args, **kwargs)


def main(port: int, bucket: str) -> None:
    objects.download = download  # `objects.get` with alt=media calls it by this name
    for _, handlers in server.HANDLERS:
        for method, handler in handlers.items():
            if handler is _download:
                handlers[method] = download
    from gcp_storage_emulator.__main__ import get_server

    get_server("127.0.0.1", port, memory=True, default_bucket=bucket).run()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
