"""Tests of the headless SAM annotation engine: intensity mapping, cache, MobileSAM, embeddings, propagation."""

import threading

import numpy as np
import pytest
import torch
from _sam_stub import ThresholdSegmenter, ellipsoid

from nnsam_engine.annotation.cache import EmbeddingCache, embedding_key
from nnsam_engine.annotation.embeddings import (
    EmbeddingService,
    SliceSource,
    neighbour_order,
)
from nnsam_engine.annotation.intensity import (
    CT_PRESETS,
    Window,
    percentile_window,
    to_sam_rgb,
)
from nnsam_engine.annotation.propagation import (
    PropagatedSlice,
    PropagationSettings,
    PropagationStop,
    prompt_from_mask,
    propagate,
)
from nnsam_engine.annotation.results import PromptResult, SliceEmbedding
from nnsam_engine.annotation.segmenter import PromptSegmenter
from nnsam_engine.errors import WeightsError
from nnsam_engine.network.weights import resolve_weights, sha256_file


@pytest.fixture(scope="module")
def random_sam() -> PromptSegmenter:
    return PromptSegmenter.load("random", device="cpu")


def fake_embedding(value: float = 0.0, size: int = 64) -> SliceEmbedding:
    return SliceEmbedding(np.full((256, size, size), value, dtype=np.float32), (size, size), (1024, 1024))


# --- intensity ---------------------------------------------------------------------------------------

def test_window_maps_bounds_to_0_and_255():
    plane = np.array([[-100.0, 0.0], [50.0, 100.0]], dtype=np.float32)

    rgb = to_sam_rgb(plane, Window(0.0, 100.0))

    assert rgb.shape == (2, 2, 3)
    assert rgb.dtype == np.uint8
    assert rgb[..., 0].tolist() == [[0, 0], [128, 255]]
    assert np.array_equal(rgb[..., 0], rgb[..., 2])


def test_window_maps_nan_to_zero():
    rgb = to_sam_rgb(np.array([[np.nan, 1.0]]), Window(0.0, 1.0))

    assert rgb[0, :, 0].tolist() == [0, 255]


def test_window_rejects_empty_range():
    with pytest.raises(ValueError, match="greater than its lower bound"):
        Window(5.0, 5.0)


def test_ct_soft_tissue_preset():
    assert CT_PRESETS["CT soft tissue"] == Window(-160.0, 240.0)


def test_percentile_window_ignores_outliers():
    values = np.concatenate([np.linspace(0, 100, 10000), [1e6, -1e6]])

    window = percentile_window(values)

    assert 0 <= window.lower < 1
    assert 99 < window.upper <= 100


def test_uint8_rgb_passes_through():
    colour = np.random.default_rng(0).integers(0, 256, (5, 6, 4), dtype=np.uint8)

    assert np.array_equal(to_sam_rgb(colour, None, rgb=True), colour[..., :3])


# --- cache -------------------------------------------------------------------------------------------

def test_key_depends_on_content_and_weights():
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    changed = rgb.copy()
    changed[0, 0, 0] = 1

    assert embedding_key(rgb, "a") == embedding_key(rgb.copy(), "a")
    assert embedding_key(rgb, "a") != embedding_key(changed, "a")
    assert embedding_key(rgb, "a") != embedding_key(rgb, "b")


def test_memory_cache_evicts_least_recent():
    embedding_bytes = fake_embedding().nbytes
    cache = EmbeddingCache(memory_limit_bytes=2 * embedding_bytes)
    cache.put("a", fake_embedding(1))
    cache.put("b", fake_embedding(2))
    cache.get("a")
    cache.put("c", fake_embedding(3))

    assert cache.get("b") is None
    assert cache.get("a") is not None
    assert cache.stats.memory_bytes <= 2 * embedding_bytes
    assert cache.stats.memory_entries == 2


def test_disk_cache_round_trip(tmp_path):
    stored = fake_embedding(0.5)
    EmbeddingCache(disk_folder=tmp_path).put("ab12", stored)

    fresh = EmbeddingCache(disk_folder=tmp_path)
    loaded = fresh.get("ab12")

    assert np.array_equal(loaded.features, stored.features)
    assert loaded.original_size == stored.original_size
    assert loaded.input_size == stored.input_size
    assert fresh.stats.disk_hits == 1
    assert not list(tmp_path.rglob(".partial-*"))


def test_disk_cache_stays_under_limit(tmp_path):
    embedding_bytes = fake_embedding().nbytes
    cache = EmbeddingCache(disk_folder=tmp_path, disk_limit_bytes=int(2.5 * embedding_bytes))
    for index in range(5):
        cache.put(f"k{index}", fake_embedding(index))

    sizes = [path.stat().st_size for path in tmp_path.rglob("*.npz")]

    assert len(sizes) == 2
    assert sum(sizes) <= 2.5 * embedding_bytes


def test_disk_cache_drops_corrupt_file(tmp_path):
    cache = EmbeddingCache(disk_folder=tmp_path)
    cache.put("cd34", fake_embedding())
    path = next(tmp_path.rglob("*.npz"))
    path.write_bytes(b"not an npz file")

    assert EmbeddingCache(disk_folder=tmp_path).get("cd34") is None
    assert not path.exists()


# --- MobileSAM -----------------------------------------------------------------------------------------

def test_sam_mask_has_slice_shape(random_sam):
    rgb = to_sam_rgb(np.random.default_rng(1).random((51, 35)), Window(0.0, 1.0))
    embedding = random_sam.embed(rgb)

    result = random_sam.predict(embedding, points=np.array([[20.0, 10.0]]), labels=np.array([1]))

    assert embedding.features.shape == (256, 64, 64)
    assert embedding.input_size == (1024, 703)
    assert result.mask.shape == (51, 35)
    assert result.mask.dtype == bool
    assert result.logits.shape == (256, 256)
    assert 0.0 <= result.score <= 1.5


def test_sam_accepts_box_and_negative_points(random_sam):
    embedding = random_sam.embed(np.zeros((40, 60, 3), dtype=np.uint8))

    result = random_sam.predict(embedding, points=np.array([[10.0, 10.0], [30.0, 50.0]]), labels=np.array([1, 0]),
                                box=np.array([5.0, 5.0, 35.0, 55.0]))

    assert result.mask.shape == (40, 60)


def test_sam_needs_a_prompt(random_sam):
    with pytest.raises(ValueError, match="point or a box"):
        random_sam.predict(random_sam.embed(np.zeros((8, 8, 3), dtype=np.uint8)))


def test_sam_embedding_is_deterministic(random_sam):
    rgb = np.random.default_rng(2).integers(0, 256, (30, 30, 3), dtype=np.uint8)

    assert np.array_equal(random_sam.embed(rgb).features, random_sam.embed(rgb).features)


def test_sam_loads_verified_weights_file(tmp_path, random_sam):
    path = tmp_path / "mobile_sam_random.pt"
    torch.save(random_sam.sam.state_dict(), path)
    weights = resolve_weights(path, expected_sha256=sha256_file(path))

    loaded = PromptSegmenter.load(weights, device="cpu")

    assert loaded.weights_id == sha256_file(path)
    assert not loaded.random_weights
    for name, tensor in random_sam.sam.state_dict().items():
        assert torch.equal(loaded.sam.state_dict()[name], tensor), name


def test_sam_rejects_unverified_weights_file(tmp_path):
    path = tmp_path / "mobile_sam.pt"
    path.write_bytes(b"not the official file")

    with pytest.raises(WeightsError, match="No verified MobileSAM weights"):
        PromptSegmenter.load(str(path), device="cpu")


# --- embeddings service -------------------------------------------------------------------------------

def test_neighbour_order_alternates_and_clips():
    assert neighbour_order(1, 5, 3) == [1, 2, 0, 3, 4]


def test_slice_source_rejects_4d_volume():
    with pytest.raises(ValueError, match="3D grey-value volume"):
        SliceSource(np.zeros((2, 3, 4, 5)), 0, Window(0, 1), "w")


def test_service_computes_once_and_serves_cache():
    volume = np.zeros((6, 20, 20), dtype=np.float32)
    segmenter = ThresholdSegmenter()
    ready = []
    service = EmbeddingService(segmenter, EmbeddingCache(), on_ready=ready.append)
    try:
        service.set_source(SliceSource(volume, 0, Window(0, 1), segmenter.weights_id))
        first = service.wait(3)
        again = service.wait(3)
        service.schedule(range(6))
        for index in range(6):
            service.wait(index)
    finally:
        service.close()

    assert first is again
    # All six slices are identical, so their keys are equal and one embedding serves them all.
    assert segmenter.embedded == 1
    assert 3 in ready


def test_service_computes_each_distinct_slice():
    volume = np.arange(4, dtype=np.float32)[:, None, None] * np.ones((4, 10, 12), dtype=np.float32)
    segmenter = ThresholdSegmenter()
    service = EmbeddingService(segmenter, EmbeddingCache())
    try:
        service.set_source(SliceSource(volume, 0, Window(0, 3), segmenter.weights_id))
        embeddings = [service.wait(index) for index in range(4)]
        service.wait(2)
    finally:
        service.close()

    assert segmenter.embedded == 4
    assert [int(embedding.features[0, 0]) for embedding in embeddings] == [0, 85, 170, 255]


def test_service_reports_embedding_error():
    class FailingSegmenter(ThresholdSegmenter):
        def embed(self, rgb):
            raise RuntimeError("out of memory")

    service = EmbeddingService(FailingSegmenter(), EmbeddingCache())
    try:
        service.set_source(SliceSource(np.zeros((2, 4, 4)), 0, Window(0, 1), "w"))
        with pytest.raises(RuntimeError, match="out of memory"):
            service.wait(1)
    finally:
        service.close()


def test_service_wait_returns_none_when_cancelled():
    release = threading.Event()

    class SlowSegmenter(ThresholdSegmenter):
        def embed(self, rgb):
            release.wait(10)
            return super().embed(rgb)

    service = EmbeddingService(SlowSegmenter(), EmbeddingCache())
    try:
        service.set_source(SliceSource(np.zeros((2, 4, 4)), 0, Window(0, 1), "w"))
        assert service.wait(0, cancelled=lambda: True) is None
    finally:
        release.set()
        service.close()


# --- propagation -------------------------------------------------------------------------------------

def blob_segment(volume: np.ndarray, segmenter: ThresholdSegmenter):
    def segment(index, prompt):
        rgb = to_sam_rgb(volume[index], Window(0.0, 1.0))
        return segmenter.predict(segmenter.embed(rgb), prompt.points, prompt.labels, prompt.box)

    return segment


def test_propagation_stops_at_blob_end():
    blob = ellipsoid((30, 40, 40), (14, 20, 20), (6, 10, 10))
    volume = blob.astype(np.float32)

    events = list(propagate(blob[14], 14, 30, blob_segment(volume, ThresholdSegmenter())))

    kept_slices = sorted(event.index for event in events if isinstance(event, PropagatedSlice))
    stops = [event for event in events if isinstance(event, PropagationStop)]
    # The blob's end slices (8 and 20) contain one pixel each, below the default minimum of 4 pixels.
    assert [int(blob[index].sum()) for index in (7, 8, 20, 21)] == [0, 1, 1, 0]
    assert kept_slices == [index for index in range(9, 20) if index != 14]
    for event in events:
        if isinstance(event, PropagatedSlice):
            assert np.array_equal(event.mask, blob[event.index])
    assert [(stop.direction, stop.index) for stop in stops] == [(1, 20), (-1, 8)]
    assert all("object ended" in stop.reason for stop in stops)


def test_propagation_respects_slice_limit():
    blob = ellipsoid((30, 40, 40), (14, 20, 20), (10, 10, 10))

    events = list(propagate(blob[14], 14, 30, blob_segment(blob.astype(np.float32), ThresholdSegmenter()),
                            PropagationSettings(max_slices=2), directions=(1,)))

    assert [event.index for event in events if isinstance(event, PropagatedSlice)] == [15, 16]
    assert "limit of 2 slices" in events[-1].reason


def test_propagation_stops_at_volume_edge():
    column = np.ones((5, 10, 10), dtype=bool)

    events = list(propagate(column[2], 2, 5, blob_segment(column.astype(np.float32), ThresholdSegmenter()),
                            directions=(1,)))

    assert [event.index for event in events if isinstance(event, PropagatedSlice)] == [3, 4]
    assert "last slice" in events[-1].reason


def test_propagation_stops_on_leak():
    seed = np.zeros((20, 20), dtype=bool)
    seed[8:12, 8:12] = True

    def leaking(index, prompt):
        return PromptResult(mask=np.ones((20, 20), dtype=bool), score=1.0, logits=np.zeros((256, 256)))

    events = list(propagate(seed, 5, 10, leaking, directions=(1,)))

    assert len(events) == 1
    assert "likely leaks" in events[0].reason


def test_propagation_stops_on_low_score():
    seed = np.ones((10, 10), dtype=bool)

    def unsure(index, prompt):
        return PromptResult(mask=seed, score=0.2, logits=np.zeros((256, 256)))

    events = list(propagate(seed, 5, 10, unsure, PropagationSettings(min_score=0.5), directions=(-1,)))

    assert "predicted IoU 0.20" in events[0].reason


def test_propagation_ends_when_segment_cancelled():
    seed = np.ones((10, 10), dtype=bool)

    assert list(propagate(seed, 5, 10, lambda index, prompt: None)) == []


def test_propagation_rejects_empty_seed():
    with pytest.raises(ValueError, match="seed mask on slice 3 is empty"):
        list(propagate(np.zeros((5, 5), dtype=bool), 3, 10, lambda index, prompt: None))


def test_prompt_point_lies_inside_ring():
    ring = ellipsoid((41, 41), (20, 20), (18, 18)) & ~ellipsoid((41, 41), (20, 20), (10, 10))

    prompt = prompt_from_mask(ring)
    row, column = prompt.points[0].astype(int)

    assert ring[row, column]
    assert prompt.box[0] == 0
    assert prompt.box[2] == 40


def test_service_defers_prefetch_but_not_requests():
    volume = np.arange(3, dtype=np.float32)[:, None, None] * np.ones((3, 8, 8), dtype=np.float32)
    segmenter = ThresholdSegmenter()
    service = EmbeddingService(segmenter, EmbeddingCache())
    try:
        service.set_source(SliceSource(volume, 0, Window(0, 2), segmenter.weights_id))
        service.defer_prefetch(30.0)
        service.schedule([0, 1])
        threading.Event().wait(0.5)
        prefetched = segmenter.embedded
        service.request(2)
        requested = service.wait(2)
    finally:
        service.close()

    assert prefetched == 0
    assert requested is not None
    assert service.lookup(0) is None


def test_disk_cache_failure_turns_disk_off(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache = EmbeddingCache(disk_folder=blocker / "cache")

    cache.put("ef56", fake_embedding())

    assert cache.disk_folder is None
    assert "Cannot write SAM embedding cache file" in cache.disk_error
    assert cache.get("ef56") is not None
