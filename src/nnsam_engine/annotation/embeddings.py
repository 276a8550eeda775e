"""Slices of an image as SAM inputs, and a background thread that computes their embeddings.

:class:`SliceSource` cuts a 2D image or a 3D volume into the 2D slices along one axis
and maps them to SAM's input. :class:`EmbeddingService` computes embeddings on one
worker thread, in the order given by the latest :meth:`EmbeddingService.schedule`
call (the slice on screen first, then its neighbours), and stores them in an
:class:`~.cache.EmbeddingCache`. PyTorch releases the GIL while it computes, so a GUI
thread stays responsive.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

from .cache import EmbeddingCache, embedding_key
from .intensity import Window, to_sam_rgb
from .results import SliceEmbedding

if TYPE_CHECKING:
    from .segmenter import PromptSegmenter

logger = logging.getLogger(__name__)

#: Services whose threads are stopped at interpreter exit: a thread still inside a PyTorch
#: call while the interpreter shuts down ends the process with "terminate called without an active exception".
_LIVE_SERVICES: weakref.WeakSet = weakref.WeakSet()
#: Seconds to wait at exit for an embedding being computed (about a second on a CPU).
_EXIT_TIMEOUT_S = 30.0


@atexit.register
def _close_live_services() -> None:
    for service in list(_LIVE_SERVICES):
        service.close(_EXIT_TIMEOUT_S)


class SliceSource:
    """The 2D slices of an image along one axis, mapped to SAM's 8-bit RGB input.

    Parameters
    ----------
    image : array-like
        A 2D grey image, a 2D RGB(A) image with channels last, or a 3D volume. Slices
        are read one at a time, so lazy arrays (dask, zarr) load only what is used.
    axis : int or None
        Axis the slices are taken along; None for 2D images.
    window : Window or None
        Intensity window; None only for 8-bit RGB images.
    weights_id : str
        :attr:`PromptSegmenter.weights_id` of the weights the embeddings are computed with.
    rgb : bool
        Whether ``image`` is a 2D colour image with its channels last.
    """

    def __init__(self, image, axis: int | None, window: Window | None, weights_id: str, rgb: bool = False):
        ndim = len(image.shape)
        if axis is None:
            if not (ndim == 2 or (rgb and ndim == 3 and image.shape[-1] in (3, 4))):
                raise ValueError(f"Image of shape {tuple(image.shape)} is not a 2D image: expected 2 axes, or 3 "
                                 "with 3 or 4 colour channels last. Give the slicing axis of a 3D volume.")
        elif rgb or ndim != 3:
            raise ValueError(f"Image of shape {tuple(image.shape)} cannot be sliced along an axis: expected a 3D "
                             "grey-value volume.")
        elif not 0 <= axis < 3:
            raise ValueError(f"Slicing axis {axis} is outside 0-2 for a 3D volume.")
        self.image = image
        self.rgb = rgb
        self.axis = axis
        self.window = window
        self.weights_id = weights_id
        self.n_slices = 1 if axis is None else int(image.shape[axis])
        self._keys: dict[int, str] = {}

    def plane(self, index: int) -> np.ndarray:
        """Return slice ``index`` as stored in the image."""
        self._check_index(index)
        if self.axis is None:
            return np.asarray(self.image)
        return np.asarray(self.image[(slice(None),) * self.axis + (index,)])

    def sam_input(self, index: int) -> np.ndarray:
        """Return slice ``index`` as SAM's ``(H, W, 3)`` uint8 input."""
        return to_sam_rgb(self.plane(index), self.window, rgb=self.rgb)

    def key(self, index: int, sam_input: np.ndarray | None = None) -> str:
        """Return the cache key of slice ``index``."""
        key = self._keys.get(index)
        if key is None:
            key = embedding_key(self.sam_input(index) if sam_input is None else sam_input, self.weights_id)
            self._keys[index] = key
        return key

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.n_slices:
            raise IndexError(f"Slice {index} is outside 0-{self.n_slices - 1}.")


def neighbour_order(current: int, n_slices: int, radius: int) -> list[int]:
    """Return ``current`` then the slices at distance 1, 2, ... ``radius`` on both sides, within range."""
    order = [current] if 0 <= current < n_slices else []
    for distance in range(1, radius + 1):
        for index in (current + distance, current - distance):
            if 0 <= index < n_slices:
                order.append(index)
    return order


class EmbeddingService:
    """Compute slice embeddings on a background thread and keep them in a cache.

    Parameters
    ----------
    segmenter : PromptSegmenter
    cache : EmbeddingCache
    on_ready : callable, optional
        Called as ``on_ready(index)`` on the worker thread after slice ``index`` of the
        current source has an embedding.
    on_error : callable, optional
        Called as ``on_error(index, exception)`` on the worker thread when computing fails.
    """

    def __init__(self, segmenter: PromptSegmenter, cache: EmbeddingCache,
                 on_ready: Callable[[int], None] | None = None,
                 on_error: Callable[[int, BaseException], None] | None = None):
        self.segmenter = segmenter
        self.cache = cache
        self.on_ready = on_ready
        self.on_error = on_error
        self.computed = 0
        self._source: SliceSource | None = None
        self._pending: list[int] = []
        self._busy_index: int | None = None
        # Slices someone waits for; they start even while prefetching is deferred.
        self._urgent: set[int] = set()
        self._hold_until = 0.0
        self._errors: dict[int, BaseException] = {}
        self._closed = False
        self._condition = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="nnsam-sam-embeddings", daemon=True)
        self._thread.start()
        _LIVE_SERVICES.add(self)

    @property
    def source(self) -> SliceSource | None:
        return self._source

    def set_source(self, source: SliceSource | None) -> None:
        """Replace the image being embedded and drop the slices still waiting."""
        with self._condition:
            self._source = source
            self._pending = []
            self._urgent = set()
            self._errors = {}
            self._condition.notify_all()

    def schedule(self, indices: Iterable[int]) -> None:
        """Replace the waiting slices with ``indices``, computed in that order unless cached."""
        with self._condition:
            self._pending = [int(index) for index in dict.fromkeys(indices)]
            self._condition.notify_all()

    def request(self, index: int) -> None:
        """Compute slice ``index`` next, even while prefetching is deferred, without waiting for it."""
        with self._condition:
            self._urgent.add(index)
            self._pending = [index] + [queued for queued in self._pending if queued != index]
            self._condition.notify_all()

    def defer_prefetch(self, seconds: float) -> None:
        """Start no prefetch for ``seconds``, so prompt predictions get the CPU while the user places prompts.

        A slice already being computed finishes; slices passed to :meth:`request` or :meth:`wait` still start.
        """
        with self._condition:
            self._hold_until = max(self._hold_until, time.monotonic() + seconds)
            self._condition.notify_all()

    def pending(self) -> int:
        """Return how many slices wait, including the one being computed."""
        with self._condition:
            return len(self._pending) + (self._busy_index is not None)

    def lookup(self, index: int) -> SliceEmbedding | None:
        """Return the cached embedding of slice ``index`` of the current source, or None."""
        source = self._source
        if source is None:
            return None
        return self.cache.get(source.key(index))

    def wait(self, index: int, cancelled: Callable[[], bool] | None = None, poll_s: float = 0.1) -> SliceEmbedding | None:
        """Return the embedding of slice ``index``, computing it first in line if needed.

        Returns None if ``cancelled()`` becomes true or the source changes while waiting.

        Raises
        ------
        Exception
            What computing the embedding raised.
        """
        source = self._source
        embedding = self.lookup(index)
        while embedding is None:
            with self._condition:
                if self._source is not source or self._closed:
                    return None
                if index in self._errors:
                    raise self._errors.pop(index)
                if self._busy_index != index and index not in self._pending[:1]:
                    self._pending = [index] + [queued for queued in self._pending if queued != index]
                    self._condition.notify_all()
                self._urgent.add(index)
                self._condition.wait(poll_s)
            if cancelled is not None and cancelled():
                return None
            embedding = self.lookup(index) if index not in self._errors else None
        return embedding

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the worker thread after the slice it is computing."""
        with self._condition:
            self._closed = True
            self._pending = []
            self._condition.notify_all()
        self._thread.join(timeout_s)

    def _next_index(self) -> tuple[SliceSource, int] | None:
        with self._condition:
            while not self._closed:
                if not (self._pending and self._source is not None):
                    self._condition.wait()
                    continue
                held_for = self._hold_until - time.monotonic()
                if held_for > 0 and self._pending[0] not in self._urgent:
                    self._condition.wait(held_for)
                    continue
                break
            if self._closed:
                return None
            self._busy_index = self._pending.pop(0)
            self._urgent.discard(self._busy_index)
            return self._source, self._busy_index

    def _run(self) -> None:
        while True:
            job = self._next_index()
            if job is None:
                return
            source, index = job
            try:
                sam_input = source.sam_input(index)
                key = source.key(index, sam_input)
                if self.cache.get(key, count=False) is None:
                    self.cache.put(key, self.segmenter.embed(sam_input))
                    self.computed += 1
            except Exception as error:  # reported to the caller, so the thread keeps serving
                logger.exception("Computing the SAM embedding of slice %d failed", index)
                with self._condition:
                    self._errors[index] = error
                    self._busy_index = None
                    self._condition.notify_all()
                if self.on_error is not None and source is self._source:
                    try:
                        self.on_error(index, error)
                    except (RuntimeError, AttributeError) as notify_error:
                        logger.warning("Reporting the failure of slice %d failed: %s", index, notify_error)
                continue
            with self._condition:
                self._busy_index = None
                self._condition.notify_all()
            if self.on_ready is not None and source is self._source:
                try:
                    self.on_ready(index)
                except (RuntimeError, AttributeError) as error:  # a Qt receiver deleted during the computation
                    logger.info("Notifying that slice %d has an embedding failed: %s", index, error)
