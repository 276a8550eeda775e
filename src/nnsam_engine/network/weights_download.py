"""Downloading and importing the MobileSAM image-encoder weights into the cache.

Both functions verify the size and SHA-256 of the file before it replaces the
destination, so the cache never contains an unverified file. They are re-exported by
:mod:`nnsam_engine.network.weights`.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

from ..atomic import atomic_path
from ..errors import WeightsError
from .weights import (
    _CHUNK_SIZE,
    _FIXES,
    CACHE_ENV_VAR,
    OFFICIAL_SHA256,
    OFFICIAL_URL,
    _expected_size,
    _hash_problem,
    _normalise_sha256,
    _size_problem,
    default_cache_path,
    sha256_file,
    verify_weights,
)

logger = logging.getLogger(__name__)

_ALLOWED_URL_SCHEMES = ("https", "http", "file")


def _create_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WeightsError(
            f"Cannot create the weights folder {folder}: {error.strerror or error}. "
            f"Set {CACHE_ENV_VAR} to a writable folder or pass another destination."
        ) from error


def _network_error(url: str, error: BaseException, timeout: float) -> WeightsError:
    if isinstance(error, urllib.error.HTTPError):
        reason = f"HTTP {error.code} {error.reason}"
    elif isinstance(error, urllib.error.URLError):
        reason = str(error.reason)
    elif isinstance(error, TimeoutError):
        reason = f"timed out after {timeout} s"
    else:
        reason = str(error) or type(error).__name__
    return WeightsError(
        f"Download of MobileSAM weights from {url} failed: {reason}. If this machine has no internet access, "
        f"download {OFFICIAL_URL} on another machine and import it with `nnsam weights import FILE`."
    )


def _stream_to_file(url, target: Path, expected_size, progress, timeout) -> tuple[int, str]:
    """Copy the response body of ``url`` into ``target`` and return ``(bytes written, SHA-256)``."""
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise _network_error(url, error, timeout) from error
    hasher = hashlib.sha256()
    done = 0
    with response, open(target, "wb") as handle:
        header = response.headers.get("Content-Length")
        total = int(header) if header and header.isdigit() else expected_size
        while True:
            try:
                chunk = response.read(_CHUNK_SIZE)
            except (OSError, http.client.HTTPException) as error:
                raise _network_error(url, error, timeout) from error
            if not chunk:
                break
            handle.write(chunk)
            hasher.update(chunk)
            done += len(chunk)
            if expected_size is not None and done > expected_size:
                # Stop early, because a large wrong file would otherwise be read in full.
                raise WeightsError(
                    f"MobileSAM weights downloaded from {url} failed verification: received more than the "
                    f"expected {expected_size} bytes, so the URL serves another file. {_FIXES['size']}"
                )
            if progress is not None:
                progress(done, total)
    return done, hasher.hexdigest()


def download_weights(
    url: str = OFFICIAL_URL,
    destination: os.PathLike | str | None = None,
    expected_sha256: str | None = OFFICIAL_SHA256,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 60,
) -> Path:
    """Download a weights file, verify it and move it into place.

    The body is written to a temporary file next to ``destination``, which replaces
    ``destination`` only after its size and SHA-256 match. A failed, partial or wrong
    download leaves no file behind, and an existing file at ``destination`` is kept.

    Parameters
    ----------
    url : str
        An ``https``, ``http`` or ``file`` URL. Defaults to the official MobileSAM checkpoint.
    destination : path-like, optional
        Target file; defaults to :func:`default_cache_path`.
    expected_sha256 : str, optional
        SHA-256 the download must have; defaults to the official checkpoint's hash, for which
        the size is checked as well.
    progress : callable, optional
        Called after each chunk as ``progress(bytes_done, bytes_total)``; ``bytes_total`` is
        the Content-Length, else the expected size, else None.
    timeout : float
        Seconds to wait for the connection and for each read.

    Returns
    -------
    Path
        ``destination``.

    Raises
    ------
    WeightsError
        If the URL is not supported, the download fails, or the file fails verification.
    """
    expected_sha256 = _normalise_sha256(expected_sha256)
    expected_size = _expected_size(expected_sha256, None)
    destination = Path(destination).expanduser() if destination is not None else default_cache_path()
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in _ALLOWED_URL_SCHEMES:
        raise WeightsError(
            f"Unsupported weights URL {url!r}: found scheme {scheme!r}, expected one of "
            f"{', '.join(_ALLOWED_URL_SCHEMES)}. Pass an https URL, or a file:// URL of a local file."
        )
    _create_folder(destination.parent)

    logger.info("Downloading MobileSAM weights from %s to %s", url, destination)
    with atomic_path(destination) as partial:
        size, digest = _stream_to_file(url, partial, expected_size, progress, timeout)
        if expected_size is not None and size != expected_size:
            problem, kind = _size_problem(size, expected_size), "size"
        elif digest != expected_sha256:
            problem, kind = _hash_problem(digest, expected_sha256), "hash"
        else:
            problem = None
        if problem is not None:
            raise WeightsError(
                f"MobileSAM weights downloaded from {url} failed verification: {problem}. "
                f"Nothing was written to {destination}. {_FIXES[kind]}"
            )
    logger.info("Saved verified MobileSAM weights (%d bytes, SHA-256 %s) to %s", size, digest, destination)
    return destination


def import_weights(
    source: os.PathLike | str,
    destination: os.PathLike | str | None = None,
    expected_sha256: str | None = OFFICIAL_SHA256,
) -> Path:
    """Verify a weights file and copy it atomically into the cache.

    Parameters
    ----------
    source : path-like
        A checkpoint downloaded elsewhere.
    destination : path-like, optional
        Target file; defaults to :func:`default_cache_path`.
    expected_sha256 : str, optional
        SHA-256 the file must have; defaults to the official checkpoint's hash.

    Returns
    -------
    Path
        ``destination``.

    Raises
    ------
    WeightsError
        If ``source`` fails verification, or the copy differs from it.
    """
    expected_sha256 = _normalise_sha256(expected_sha256)
    source = Path(source).expanduser()
    digest = verify_weights(source, expected_sha256)
    destination = Path(destination).expanduser() if destination is not None else default_cache_path()
    if destination.is_file() and destination.samefile(source):
        logger.info("MobileSAM weights %s are already in place", destination)
        return destination

    _create_folder(destination.parent)
    with atomic_path(destination) as partial:
        shutil.copyfile(source, partial)
        copied_digest = sha256_file(partial)
        if copied_digest != digest:
            raise WeightsError(
                f"Copy of {source} to {destination} failed verification: {_hash_problem(copied_digest, digest)}. "
                "The source file changed during the copy or the disk is faulty. Run `nnsam weights import FILE` again."
            )
    logger.info("Imported MobileSAM weights %s to %s", source, destination)
    return destination
