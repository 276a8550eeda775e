"""Cache of SAM slice embeddings in memory (bounded) and optionally on disk (bounded).

An entry's key is a digest of the exact 8-bit RGB input of the slice and of the
weights' identity (:func:`embedding_key`). A changed image, slice, axis, intensity
window or set of weights therefore gives another key, so a stale embedding is never
returned. Both stores evict the least recently used entries once over their limit.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from .results import SliceEmbedding

logger = logging.getLogger(__name__)

#: Default memory limit: 128 embeddings of 4 MiB (SAM's 256 x 64 x 64 float32).
DEFAULT_MEMORY_LIMIT_BYTES = 512 * 2**20
#: Default disk limit of the on-disk cache.
DEFAULT_DISK_LIMIT_BYTES = 4 * 2**30
_KEY_VERSION = b"nnsam-sam-embedding-v1"
_SUFFIX = ".npz"


def embedding_key(rgb: np.ndarray, weights_id: str) -> str:
    """Return the cache key of the SAM input ``rgb`` under the weights ``weights_id``."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(_KEY_VERSION)
    digest.update(weights_id.encode())
    digest.update(str((rgb.shape, rgb.dtype.str)).encode())
    digest.update(np.ascontiguousarray(rgb).data)
    return digest.hexdigest()


def default_disk_folder() -> Path:
    """Return ``sam-embeddings`` in ``$NNSAM_CACHE_DIR``, else in the user cache folder."""
    from ..network.weights import CACHE_ENV_VAR

    cache_dir = os.environ.get(CACHE_ENV_VAR, "").strip()
    if cache_dir:
        return Path(cache_dir).expanduser() / "sam-embeddings"
    import platformdirs

    return Path(platformdirs.user_cache_dir("nnsam")) / "sam-embeddings"


@dataclass
class CacheStats:
    """Counts of cache lookups since the cache was created."""

    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    memory_entries: int = 0
    memory_bytes: int = 0
    disk_bytes: int = 0


class EmbeddingCache:
    """Thread-safe least-recently-used cache of :class:`SliceEmbedding` objects.

    Parameters
    ----------
    memory_limit_bytes : int
        Largest total size of the embeddings kept in memory.
    disk_folder : path-like, optional
        Folder of the on-disk cache; None keeps embeddings in memory only.
    disk_limit_bytes : int
        Largest total size of the files in ``disk_folder`` written by this cache.
    """

    def __init__(self, memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES, disk_folder: os.PathLike | str | None = None,
                 disk_limit_bytes: int = DEFAULT_DISK_LIMIT_BYTES):
        if memory_limit_bytes < 0 or disk_limit_bytes < 0:
            raise ValueError("Cache limits must be zero or positive numbers of bytes.")
        self.memory_limit_bytes = int(memory_limit_bytes)
        self.disk_limit_bytes = int(disk_limit_bytes)
        self.disk_folder = Path(disk_folder).expanduser() if disk_folder is not None else None
        self._entries: OrderedDict[str, SliceEmbedding] = OrderedDict()
        self._lock = threading.RLock()
        self.stats = CacheStats()
        #: Why the disk cache was turned off after a failed write, or None.
        self.disk_error: str | None = None
        if self.disk_folder is not None:
            self.stats.disk_bytes = sum(path.stat().st_size for path in self._disk_files())

    def get(self, key: str, count: bool = True) -> SliceEmbedding | None:
        """Return the embedding stored under ``key``, or None.

        With ``count`` the lookup adds to the hit and miss counts in :attr:`stats`;
        background prefetching passes False so the counts reflect what a user revisits.
        """
        with self._lock:
            embedding = self._entries.get(key)
            if embedding is not None:
                self._entries.move_to_end(key)
                self.stats.memory_hits += count
                return embedding
        embedding = self._read_disk(key)
        with self._lock:
            if embedding is None:
                self.stats.misses += count
                return None
            self.stats.disk_hits += count
            self._store_in_memory(key, embedding)
        return embedding

    def put(self, key: str, embedding: SliceEmbedding) -> None:
        """Store ``embedding`` in memory and, when a disk folder is set, on disk."""
        with self._lock:
            self._store_in_memory(key, embedding)
        self._write_disk(key, embedding)

    def set_disk_folder(self, folder: os.PathLike | str | None) -> None:
        """Start keeping embeddings in ``folder`` as well, or only in memory when None.

        Raises
        ------
        OSError
            If ``folder`` cannot be created or written; the cache then stays in memory only.
        """
        folder = Path(folder).expanduser() if folder is not None else None
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(folder / ".write-test") as probe:
                probe.write_bytes(b"")
            (folder / ".write-test").unlink()
        with self._lock:
            self.disk_folder = folder
            self.disk_error = None
            self.stats.disk_bytes = sum(path.stat().st_size for path in self._disk_files())

    # --- memory ------------------------------------------------------------------------------------

    def _store_in_memory(self, key: str, embedding: SliceEmbedding) -> None:
        if key in self._entries:
            self._entries.move_to_end(key)
            return
        self._entries[key] = embedding
        self.stats.memory_bytes += embedding.nbytes
        while self.stats.memory_bytes > self.memory_limit_bytes and self._entries:
            _, evicted = self._entries.popitem(last=False)
            self.stats.memory_bytes -= evicted.nbytes
        self.stats.memory_entries = len(self._entries)

    # --- disk --------------------------------------------------------------------------------------

    def _disk_path(self, key: str) -> Path | None:
        if self.disk_folder is None:
            return None
        return self.disk_folder / key[:2] / (key + _SUFFIX)

    def _disk_files(self) -> list[Path]:
        if self.disk_folder is None or not self.disk_folder.is_dir():
            return []
        return [path for path in self.disk_folder.glob(f"??/*{_SUFFIX}") if not path.name.startswith(".")]

    def _read_disk(self, key: str) -> SliceEmbedding | None:
        path = self._disk_path(key)
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                embedding = SliceEmbedding(
                    features=np.array(stored["features"], dtype=np.float32),
                    original_size=tuple(int(size) for size in stored["original_size"]),
                    input_size=tuple(int(size) for size in stored["input_size"]),
                )
            os.utime(path)  # the modification time orders disk eviction
        except (OSError, ValueError, KeyError) as error:
            logger.warning("Removing unreadable cached SAM embedding %s: %s", path, error)
            path.unlink(missing_ok=True)
            return None
        return embedding

    def _write_disk(self, key: str, embedding: SliceEmbedding) -> None:
        path = self._disk_path(key)
        if path is None or path.is_file():
            return
        try:
            with atomic_path(path) as partial:
                # np.savez appends ".npz" to names without it; the partial name keeps the suffix.
                np.savez(partial, features=embedding.features, original_size=np.array(embedding.original_size),
                         input_size=np.array(embedding.input_size))
            size = path.stat().st_size
        except OSError as error:
            # One message, then memory only: every later write would fail the same way.
            with self._lock:
                self.disk_error = f"Cannot write SAM embedding cache file {path}: {error}. Embeddings are kept in memory only."
                self.disk_folder = None
            logger.warning("%s", self.disk_error)
            return
        with self._lock:
            self.stats.disk_bytes += size
            if self.stats.disk_bytes > self.disk_limit_bytes:
                self._prune_disk()

    def _prune_disk(self) -> None:
        files = []
        for path in self._disk_files():
            try:
                stat = path.stat()
            except OSError:
                continue
            files.append((stat.st_mtime, stat.st_size, path))
        files.sort()
        total = sum(size for _, size, _ in files)
        for _, size, path in files:
            if total <= self.disk_limit_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
        self.stats.disk_bytes = total
