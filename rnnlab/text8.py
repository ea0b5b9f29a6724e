"""text8: find it in the data directory, or download, verify and unzip it there.

text8 is the first 10^8 bytes of an English Wikipedia dump (March 2006) cleaned by Matt Mahoney's
wikifil.pl to lowercase a-z and single spaces (http://mattmahoney.net/dc/textdata.html).

`fetch(data)` returns the path of the unzipped file, in this order of preference:
1. `<dir>/text8` (unzipped before, or placed by hand: used as is);
2. `<dir>/text8.zip` (placed by hand or downloaded before: its SHA-1 is checked, then unzipped);
3. a download of `data.url` to `<dir>/text8.zip`, checked and unzipped.
Every file appears under its final name only when complete (a temp file, then a rename), so a
killed run leaves nothing half-written that a later run would trust.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import sys
import tempfile
import urllib.request
import zipfile

import ml_collections

FILENAME = "text8"
ZIPNAME = "text8.zip"
_CHUNK = 1 << 20


class DataError(Exception):
    """A corpus is missing, unreachable, corrupt or unreadable; the message says how to fix it."""


def data_dir(data: ml_collections.ConfigDict) -> pathlib.Path:
    """The data directory: `data.dir`, else $RNNLAB_DATA_DIR, else ~/.cache/rnnlab."""
    d = data.dir or os.environ.get("RNNLAB_DATA_DIR") or "~/.cache/rnnlab"
    return pathlib.Path(d).expanduser()


def fetch(data: ml_collections.ConfigDict) -> pathlib.Path:
    """Returns the path of the unzipped text8 file, downloading and unzipping it if needed.

    Args:
        data: the config's `data` section (reads `dir`, `url`, `sha1`).

    Raises:
        DataError: offline, a checksum mismatch, or a zip without a `text8` member. The message
            says where to put `text8.zip` or `text8` by hand and where to get it.
    """
    directory = data_dir(data)
    path, zip_path = directory / FILENAME, directory / ZIPNAME
    if path.exists():
        return path
    if zip_path.exists():
        actual = _sha1_of_file(zip_path)
        if actual != data.sha1.lower():
            # The user's file (or an earlier download) stays where it is: it is theirs to judge.
            raise DataError(
                f"{zip_path} has SHA-1 {actual}, expected {data.sha1} (data.sha1); it was not "
                f"unzipped. {_where_to_put(directory, data)} Then delete or replace {zip_path}."
            )
    else:
        _download(data, directory, zip_path)
    _unzip(zip_path, path)
    return path


def _where_to_put(directory: pathlib.Path, data: ml_collections.ConfigDict) -> str:
    return (
        f"To install text8 by hand, download {data.url} and put it at {directory / ZIPNAME} "
        f"(SHA-1 {data.sha1}), or put the unzipped file at {directory / FILENAME} (set data.dir "
        "or $RNNLAB_DATA_DIR to use another directory)."
    )


def _sha1_of_file(path: pathlib.Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _download(
    data: ml_collections.ConfigDict, directory: pathlib.Path, zip_path: pathlib.Path
) -> None:
    tmp = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{ZIPNAME}.", suffix=".part")
        digest, done = hashlib.sha1(), 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(data.url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0)
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                _progress(data.url, done, total)
        sys.stderr.write("\n")
    except BaseException as e:  # Ctrl-C too: no temp file is left behind.
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):  # URLError, timeouts and disk errors are all OSErrors.
            raise DataError(
                f"could not download {data.url}: {e}. {_where_to_put(directory, data)}"
            ) from e
        raise
    actual = digest.hexdigest()
    if actual != data.sha1.lower():
        # A download that fails its checksum is never given the name a later run would trust.
        os.remove(tmp)
        raise DataError(
            f"the download of {data.url} has SHA-1 {actual}, expected {data.sha1} (data.sha1); "
            f"it was discarded and nothing was written to {directory}. "
            + _where_to_put(directory, data)
        )
    os.replace(tmp, zip_path)


def _progress(url: str, done: int, total: int) -> None:
    mb = f"{done / 1e6:.1f} MB"
    if total:
        mb += f" / {total / 1e6:.1f} MB ({100 * done // total}%)"
    sys.stderr.write(f"\rdownloading {url}: {mb}")
    sys.stderr.flush()


def _unzip(zip_path: pathlib.Path, path: pathlib.Path) -> None:
    tmp = None
    try:
        with zipfile.ZipFile(zip_path) as archive:
            if FILENAME not in archive.namelist():
                raise DataError(f"{zip_path} has no member {FILENAME!r}: {archive.namelist()}")
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{FILENAME}.", suffix=".part")
            with os.fdopen(fd, "wb") as out, archive.open(FILENAME) as member:
                while chunk := member.read(_CHUNK):
                    out.write(chunk)
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, (OSError, zipfile.BadZipFile)):
            raise DataError(f"could not unzip {zip_path}: {e}") from e
        raise
