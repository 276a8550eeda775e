"""Benchmark SAM-assisted annotation: seconds per slice embedding and milliseconds from a prompt to a preview.

Run from the repository root (the GUI part needs a display, so use Xvfb on a server):

    xvfb-run -a .venv/bin/python benchmarks/bench_annotation.py --device cpu

It reads middle slices of a Hippocampus MRI volume (35 x 51 pixels) and of a
TotalSegmentator CT volume from the ``shared/data`` folder next to the repository, and

1. times MobileSAM embeddings of whole slices (resized to 1024 pixels by SAM, so the
   time barely depends on the slice size), and reading an embedding from the disk cache;
2. times prompt-to-mask prediction on an existing embedding (one point, three points,
   two points and a box) in the engine alone;
3. times the annotation widget's preview in a real napari viewer, from adding a point
   to the Points layer until the mask is drawn in the preview layer. It measures first
   with no embedding being computed, then while the neighbouring slices are prefetched.

MobileSAM runs with seeded random weights (mobile_sam.pt is not needed); the
architecture, and so the time, is that of the released model.

Results go to ``benchmarks/results/annotation-<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
SHARED_DATA = REPOSITORY.parent / "shared" / "data"
VOLUMES = {
    "hippocampus_mri": SHARED_DATA / "Dataset004_Hippocampus" / "imagesTr" / "hippocampus_001_0000.nii.gz",
    "totalseg_ct": SHARED_DATA / "Dataset302_TotalSegExamples" / "imagesTr" / "ts_ct_dicom_0000.nii.gz",
}


def middle_slices(volume: np.ndarray, count: int) -> list[int]:
    middle = volume.shape[0] // 2
    return [min(max(middle + offset, 0), volume.shape[0] - 1) for offset in range(-(count // 2), count - count // 2)]


def summary(values: list[float]) -> dict:
    return {
        "median": round(statistics.median(values), 4),
        "mean": round(statistics.fmean(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "n": len(values),
    }


def bench_engine(device: str, embeddings: int, prompts: int) -> dict:
    from nnsam_engine.annotation.cache import EmbeddingCache
    from nnsam_engine.annotation.intensity import percentile_window, to_sam_rgb
    from nnsam_engine.annotation.segmenter import PromptSegmenter
    from nnsam_engine.dataset import read_image

    started = time.perf_counter()
    segmenter = PromptSegmenter.load("random", device=device)
    results = {"model_load_s": round(time.perf_counter() - started, 3), "volumes": {}}
    for name, path in VOLUMES.items():
        volume, _ = read_image(path)
        window = percentile_window(volume)
        planes = [to_sam_rgb(volume[index], window) for index in middle_slices(volume, embeddings + 1)]
        segmenter.embed(planes[0])  # warm-up: first-call allocations are not part of the steady cost
        embed_seconds, embedding = [], None
        for plane in planes[1:]:
            started = time.perf_counter()
            embedding = segmenter.embed(plane)
            if device == "cuda":
                import torch

                torch.cuda.synchronize()
            embed_seconds.append(time.perf_counter() - started)

        with tempfile.TemporaryDirectory() as folder:
            EmbeddingCache(disk_folder=folder).put("bench", embedding)
            disk_seconds = []
            for _ in range(5):
                started = time.perf_counter()
                EmbeddingCache(disk_folder=folder).get("bench")
                disk_seconds.append(time.perf_counter() - started)

        rows, columns = embedding.original_size
        centre = np.array([[rows / 2, columns / 2]])
        prompt_sets = {
            "one_point": {"points": centre, "labels": np.array([1])},
            "three_points": {"points": np.vstack([centre, centre * 0.8, centre * 1.1]), "labels": np.array([1, 1, 0])},
            "two_points_and_box": {"points": np.vstack([centre, centre * 0.9]), "labels": np.array([1, 0]),
                                   "box": np.array([rows * 0.3, columns * 0.3, rows * 0.7, columns * 0.7])},
        }
        prompt_ms = {}
        for prompt_name, prompt in prompt_sets.items():
            segmenter.predict(embedding, **prompt)
            times = []
            for _ in range(prompts):
                started = time.perf_counter()
                segmenter.predict(embedding, **prompt)
                times.append((time.perf_counter() - started) * 1000)
            prompt_ms[prompt_name] = summary(times)
        results["volumes"][name] = {
            "file": str(path.relative_to(SHARED_DATA)),
            "volume_shape": list(volume.shape),
            "slice_shape": [rows, columns],
            "embedding_s": summary(embed_seconds),
            "disk_cache_read_ms": summary([seconds * 1000 for seconds in disk_seconds]),
            "prompt_to_mask_ms": prompt_ms,
        }
        print(f"{name}: embedding {statistics.median(embed_seconds):.2f} s, one point "
              f"{prompt_ms['one_point']['median']:.0f} ms", flush=True)
    return results


def bench_widget(device: str, prompts: int) -> dict:
    """Time each added point until its preview is drawn, in a napari viewer with the annotation widget."""
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_nnsam._annotate_widget import AnnotationWidget
    from napari_nnsam._reader import read_layers
    from nnsam_engine.annotation.segmenter import PromptSegmenter

    os.environ["NNSAM_SAM_WEIGHTS"] = "random"
    app = QApplication.instance() or QApplication(sys.argv)
    viewer = napari.Viewer(show=True)
    data, kwargs, _ = read_layers(str(VOLUMES["totalseg_ct"]))[0]
    image = viewer.add_image(data, **kwargs)
    widget = AnnotationWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.prefetch_spin.setValue(0)
    deadline = time.monotonic() + 120
    while widget.segmenter is None and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)
    if widget.segmenter is None:
        raise RuntimeError(f"MobileSAM did not load in 120 s: {widget.weights_label.text()}")
    widget.use_segmenter(PromptSegmenter.load("random", device=device))
    widget.image_combo.setCurrentText(image.name)
    middle = data.shape[0] // 2
    point = list(viewer.dims.point)
    point[0] = float(np.asarray(image.data_to_world(np.array([middle, 0.0, 0.0])))[0])
    viewer.dims.point = point
    while widget.service.lookup(middle) is None and time.monotonic() < deadline + 120:
        app.processEvents()
        time.sleep(0.02)

    idle = time_prompts(app, widget, image, middle, prompts)

    # The same with the default prefetching: move to another slice, wait for its embedding,
    # then prompt while the neighbouring slices are still being embedded.
    widget.prefetch_spin.setValue(8)
    other = (middle + data.shape[0] // 2) % data.shape[0]
    point[0] = float(np.asarray(image.data_to_world(np.array([other, 0.0, 0.0])))[0])
    viewer.dims.point = point
    while widget.service.lookup(other) is None and time.monotonic() < deadline + 240:
        app.processEvents()
        time.sleep(0.02)
    pending_before = widget.service.pending()
    prefetching = time_prompts(app, widget, image, other, min(prompts, 10))
    viewer.close()
    print(f"widget preview: {statistics.median(idle):.0f} ms median idle, {statistics.median(prefetching):.0f} ms "
          "while prefetching", flush=True)
    return {"volume": str(VOLUMES["totalseg_ct"].relative_to(SHARED_DATA)), "slice_shape": list(data.shape[1:]),
            "prompt_to_preview_ms": summary(idle),
            "prompt_to_preview_ms_while_prefetching": summary(prefetching),
            "slices_waiting_for_embedding_at_first_prompt": pending_before}


def time_prompts(app, widget, image, index: int, count: int) -> list[float]:
    """Return the milliseconds from each added point on slice ``index`` until its preview is drawn."""
    rng = np.random.default_rng(0)
    shape = np.array(image.data.shape[1:])
    times = []
    for _ in range(count):
        voxel = np.array([index, *(rng.uniform(0.3, 0.7, 2) * shape)])
        points = widget.positive_layer
        position = np.asarray(points.world_to_data(np.asarray(image.data_to_world(voxel), dtype=float)))
        widget.last_preview_ms = None
        started = time.perf_counter()
        # The user's path: the Points layer's data event makes the widget predict the preview into
        # its layer, and the next event-loop pass draws it.
        points.add(position)
        while widget.last_preview_ms is None:
            app.processEvents()
        app.processEvents()
        times.append((time.perf_counter() - started) * 1000)
        if len(points.data) >= 3:
            widget.clear()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="PyTorch device: cpu, cuda or mps (default: cpu)")
    parser.add_argument("--embeddings", type=int, default=5, help="slices embedded per volume (default: 5)")
    parser.add_argument("--prompts", type=int, default=30, help="predictions timed per prompt kind (default: 30)")
    parser.add_argument("--no-gui", action="store_true", help="skip the napari widget part")
    args = parser.parse_args()
    missing = [str(path) for path in VOLUMES.values() if not path.is_file()]
    if missing:
        sys.exit(f"bench_annotation: dataset files not found: {', '.join(missing)}; the benchmark reads the real "
                 "datasets from the shared/data folder next to the repository.")
    sys.modules.setdefault("triton", None)  # see tests/conftest.py: triton crashes next to Mesa's LLVM

    import torch

    result = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "device": args.device,
        "weights": "MobileSAM vit_t, seeded random weights (same architecture and cost as mobile_sam.pt)",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}, Python "
                   f"{platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads",
        "engine": bench_engine(args.device, args.embeddings, args.prompts),
    }
    if not args.no_gui:
        result["widget"] = bench_widget(args.device, args.prompts)
    output = REPOSITORY / "benchmarks" / "results" / f"annotation-{args.device}.json"
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"Wrote {output}")


if __name__ == "__main__":
    main()
