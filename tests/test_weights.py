"""Tests of finding, verifying, downloading, importing and loading MobileSAM weights.

Every file is created under pytest's tmp_path, downloads use file:// URLs of those
files, and no test contacts the official address.
"""

import os
from pathlib import Path

import pytest

from nnsam_engine.errors import WeightsError
from nnsam_engine.network.weights import (
    CACHE_ENV_VAR,
    OFFICIAL_SHA256,
    OFFICIAL_SIZE,
    RANDOM,
    WEIGHTS_ENV_VAR,
    SamWeights,
    default_cache_path,
    download_weights,
    import_weights,
    load_sam_state_dict,
    resolve_weights,
    sha256_file,
    verify_weights,
    weights_status,
)

GOOD_BYTES = bytes(range(256)) * 40


class PickledObject:
    """A non-tensor object, which ``torch.load(weights_only=True)`` must reject."""


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path):
    """Point the cache at tmp_path and clear the weights variable, so the user's setup never leaks in."""
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV_VAR, str(cache_dir))
    monkeypatch.delenv(WEIGHTS_ENV_VAR, raising=False)
    return cache_dir


@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "good" / "mobile_sam.pt"
    path.parent.mkdir()
    path.write_bytes(GOOD_BYTES)
    return path


@pytest.fixture
def good_sha(good_file):
    return sha256_file(good_file)


def write_truncated(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(GOOD_BYTES[: len(GOOD_BYTES) // 2])
    return path


def write_corrupted(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(reversed(GOOD_BYTES)))
    return path


@pytest.fixture(scope="module")
def sam_state_dict():
    torch = pytest.importorskip("torch")
    mobile_sam = pytest.importorskip("mobile_sam")
    torch.manual_seed(0)
    return mobile_sam.build_sam_vit_t().state_dict()


# default_cache_path and sha256_file


def test_default_cache_path_uses_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "elsewhere"))
    assert default_cache_path() == tmp_path / "elsewhere" / "mobile_sam.pt"


def test_default_cache_path_without_env_var(monkeypatch):
    import platformdirs

    monkeypatch.delenv(CACHE_ENV_VAR)
    assert default_cache_path() == Path(platformdirs.user_cache_dir("nnsam")) / "mobile_sam.pt"


def test_sha256_file_matches_hashlib(good_file):
    import hashlib

    assert sha256_file(good_file, chunk_size=7) == hashlib.sha256(GOOD_BYTES).hexdigest()


# verify_weights


def test_verify_good_file(good_file, good_sha):
    assert verify_weights(good_file, expected_sha256=good_sha) == good_sha
    assert verify_weights(good_file, expected_sha256=good_sha.upper(), expected_size=len(GOOD_BYTES)) == good_sha


def test_verify_truncated_file(tmp_path, good_sha):
    truncated = write_truncated(tmp_path / "truncated.pt")
    with pytest.raises(WeightsError) as caught:
        verify_weights(truncated, expected_sha256=good_sha, expected_size=len(GOOD_BYTES))
    message = str(caught.value)
    assert str(truncated) in message
    assert f"found {len(GOOD_BYTES) // 2} bytes, expected {len(GOOD_BYTES)} bytes" in message
    assert "interrupted download" in message
    assert "nnsam weights download" in message
    assert "nnsam weights import FILE" in message


def test_verify_official_hash_checks_official_size(good_file):
    with pytest.raises(WeightsError, match=f"wrong size: found {len(GOOD_BYTES)} bytes, expected {OFFICIAL_SIZE} bytes"):
        verify_weights(good_file)


def test_verify_longer_file_reports_wrong_size(tmp_path, good_sha):
    longer = tmp_path / "longer.pt"
    longer.write_bytes(GOOD_BYTES + b"extra")
    with pytest.raises(WeightsError, match="wrong size: found 10245 bytes, expected 10240 bytes"):
        verify_weights(longer, expected_sha256=good_sha, expected_size=len(GOOD_BYTES))


def test_verify_wrong_hash(tmp_path, good_sha):
    corrupted = write_corrupted(tmp_path / "corrupted.pt")
    with pytest.raises(WeightsError) as caught:
        verify_weights(corrupted, expected_sha256=good_sha)
    message = str(caught.value)
    assert f"found {sha256_file(corrupted)}, expected {good_sha}" in message
    assert str(corrupted) in message
    assert "--sam-weights-sha256 HEX" in message
    assert "expected_sha256" in message


def test_verify_missing_file(tmp_path, good_sha):
    missing = tmp_path / "missing.pt"
    with pytest.raises(WeightsError, match="file not found") as caught:
        verify_weights(missing, expected_sha256=good_sha)
    assert str(missing) in str(caught.value)


def test_verify_rejects_invalid_expected_hash(good_file):
    with pytest.raises(WeightsError, match="Invalid expected SHA-256 'abc'.*64 hexadecimal"):
        verify_weights(good_file, expected_sha256="abc")


# resolve_weights


def test_resolve_explicit_wins_over_env_and_cache(monkeypatch, tmp_path, good_file, good_sha, isolated_environment):
    monkeypatch.setenv(WEIGHTS_ENV_VAR, str(write_corrupted(tmp_path / "env.pt")))
    write_corrupted(isolated_environment / "mobile_sam.pt")
    selected = resolve_weights(good_file, expected_sha256=good_sha)
    assert selected == SamWeights(path=good_file, sha256=good_sha, random=False, source="explicit")


def test_resolve_env_wins_over_cache(monkeypatch, good_file, good_sha, isolated_environment):
    monkeypatch.setenv(WEIGHTS_ENV_VAR, str(good_file))
    write_corrupted(isolated_environment / "mobile_sam.pt")
    selected = resolve_weights(expected_sha256=good_sha)
    assert selected.source == "environment"
    assert selected.path == good_file


def test_resolve_cache_when_nothing_else_set(good_file, good_sha, isolated_environment):
    cached = isolated_environment / "mobile_sam.pt"
    cached.parent.mkdir()
    cached.write_bytes(good_file.read_bytes())
    selected = resolve_weights(expected_sha256=good_sha)
    assert selected == SamWeights(path=cached, sha256=good_sha, random=False, source="cache")


def test_resolve_bad_explicit_does_not_fall_back(good_file, good_sha, tmp_path, isolated_environment):
    cached = isolated_environment / "mobile_sam.pt"
    cached.parent.mkdir()
    cached.write_bytes(good_file.read_bytes())
    with pytest.raises(WeightsError, match="not used because an earlier location is set"):
        resolve_weights(tmp_path / "typo.pt", expected_sha256=good_sha)


@pytest.mark.parametrize("how", ["explicit", "environment"])
def test_resolve_random(monkeypatch, how):
    if how == "environment":
        monkeypatch.setenv(WEIGHTS_ENV_VAR, "random")
        selected = resolve_weights()
    else:
        selected = resolve_weights(RANDOM)
    assert selected == SamWeights(path=None, sha256=None, random=True, source="random")
    assert "tests and demos only" in selected.describe()


def test_resolve_error_when_nothing_exists(isolated_environment):
    with pytest.raises(WeightsError) as caught:
        resolve_weights()
    message = str(caught.value)
    assert "--sam-weights argument: not set" in message
    assert f"environment variable {WEIGHTS_ENV_VAR}: not set" in message
    assert str(isolated_environment / "mobile_sam.pt") in message
    assert str(OFFICIAL_SIZE) in message
    assert OFFICIAL_SHA256 in message
    assert "nnsam weights download" in message
    assert "nnsam weights import FILE" in message
    assert "--sam-weights PATH" in message
    assert "--sam-weights random" in message
    assert "tests and demos only" in message


def test_resolve_error_with_own_hash_omits_size(good_sha):
    with pytest.raises(WeightsError) as caught:
        resolve_weights(expected_sha256=good_sha)
    assert f"Expected a file with SHA-256 {good_sha}" in str(caught.value)


def test_samweights_describe_names_path_and_hash(good_file, good_sha):
    line = resolve_weights(good_file, expected_sha256=good_sha).describe()
    assert str(good_file) in line
    assert good_sha in line
    assert "\n" not in line


# weights_status


def test_weights_status_reports_each_location(monkeypatch, tmp_path, good_file, good_sha):
    corrupted = write_corrupted(tmp_path / "env.pt")
    monkeypatch.setenv(WEIGHTS_ENV_VAR, str(corrupted))
    status = weights_status(good_file, expected_sha256=good_sha)
    explicit, environment, cache = status["locations"]

    assert status["selected"] == "explicit"
    assert status["usable"] is True
    assert explicit["verified"] is True
    assert explicit["size"] == len(GOOD_BYTES)
    assert explicit["reason"] is None
    assert environment["exists"] is True
    assert environment["verified"] is False
    assert "SHA-256 mismatch" in environment["reason"]
    assert cache["exists"] is False
    assert cache["reason"] == "file not found"


def test_weights_status_nothing_set():
    status = weights_status()
    assert status["selected"] == "cache"
    assert status["usable"] is False
    assert status["expected_size"] == OFFICIAL_SIZE
    assert [entry["reason"] for entry in status["locations"][:2]] == ["not set", "not set"]


# download_weights


def test_download_from_file_url(good_file, good_sha, isolated_environment):
    calls = []
    result = download_weights(
        good_file.as_uri(),
        expected_sha256=good_sha,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert result == isolated_environment / "mobile_sam.pt"
    assert result.read_bytes() == GOOD_BYTES
    assert calls[-1] == (len(GOOD_BYTES), len(GOOD_BYTES))
    assert resolve_weights(expected_sha256=good_sha).source == "cache"


def test_download_truncated_source_leaves_nothing(tmp_path, good_sha):
    truncated = write_truncated(tmp_path / "server" / "mobile_sam.pt")
    destination = tmp_path / "target" / "mobile_sam.pt"
    with pytest.raises(WeightsError, match="SHA-256 mismatch") as caught:
        download_weights(truncated.as_uri(), destination=destination, expected_sha256=good_sha)
    assert truncated.as_uri() in str(caught.value)
    assert not destination.exists()
    assert os.listdir(destination.parent) == []


def test_download_truncated_official_reports_size(tmp_path):
    truncated = write_truncated(tmp_path / "server" / "mobile_sam.pt")
    destination = tmp_path / "target" / "mobile_sam.pt"
    with pytest.raises(WeightsError, match=f"expected {OFFICIAL_SIZE} bytes.*interrupted download"):
        download_weights(truncated.as_uri(), destination=destination)
    assert not destination.exists()


def test_download_bad_file_keeps_existing_good_file(tmp_path, good_file, good_sha):
    destination = tmp_path / "target" / "mobile_sam.pt"
    download_weights(good_file.as_uri(), destination=destination, expected_sha256=good_sha)
    corrupted = write_corrupted(tmp_path / "server" / "mobile_sam.pt")
    with pytest.raises(WeightsError, match="Nothing was written"):
        download_weights(corrupted.as_uri(), destination=destination, expected_sha256=good_sha)
    assert destination.read_bytes() == GOOD_BYTES
    assert os.listdir(destination.parent) == ["mobile_sam.pt"]


def test_download_missing_source_names_url_and_import(tmp_path, good_sha):
    url = (tmp_path / "absent.pt").as_uri()
    destination = tmp_path / "target" / "mobile_sam.pt"
    with pytest.raises(WeightsError, match="nnsam weights import FILE") as caught:
        download_weights(url, destination=destination, expected_sha256=good_sha)
    assert url in str(caught.value)
    assert not destination.exists()


def test_download_rejects_unsupported_scheme(tmp_path, good_sha):
    with pytest.raises(WeightsError, match="found scheme 'ftp'"):
        download_weights("ftp://example.invalid/w.pt", destination=tmp_path / "w.pt", expected_sha256=good_sha)


def test_download_stops_when_source_is_too_long(tmp_path):
    oversized = tmp_path / "server" / "huge.pt"
    oversized.parent.mkdir()
    with open(oversized, "wb") as handle:
        handle.truncate(OFFICIAL_SIZE + (4 << 20))
    destination = tmp_path / "target" / "mobile_sam.pt"
    with pytest.raises(WeightsError, match=f"received more than the expected {OFFICIAL_SIZE} bytes"):
        download_weights(oversized.as_uri(), destination=destination)
    assert not destination.exists()


# import_weights


def test_import_good_file(good_file, good_sha, isolated_environment):
    result = import_weights(good_file, expected_sha256=good_sha)
    assert result == isolated_environment / "mobile_sam.pt"
    assert sha256_file(result) == good_sha


def test_import_bad_file_keeps_cache_empty(tmp_path, good_sha, isolated_environment):
    corrupted = write_corrupted(tmp_path / "corrupted.pt")
    with pytest.raises(WeightsError, match="SHA-256 mismatch") as caught:
        import_weights(corrupted, expected_sha256=good_sha)
    assert str(corrupted) in str(caught.value)
    assert not (isolated_environment / "mobile_sam.pt").exists()


def test_import_bad_file_keeps_existing_good_file(tmp_path, good_file, good_sha, isolated_environment):
    import_weights(good_file, expected_sha256=good_sha)
    with pytest.raises(WeightsError):
        import_weights(write_truncated(tmp_path / "t.pt"), expected_sha256=good_sha)
    assert (isolated_environment / "mobile_sam.pt").read_bytes() == GOOD_BYTES


def test_import_onto_itself(good_file, good_sha):
    assert import_weights(good_file, destination=good_file, expected_sha256=good_sha) == good_file
    assert good_file.read_bytes() == GOOD_BYTES


# load_sam_state_dict


def save_checkpoint(obj, path: Path) -> SamWeights:
    import torch

    torch.save(obj, path)
    return resolve_weights(path, expected_sha256=sha256_file(path))


def test_load_plain_state_dict(tmp_path, sam_state_dict):
    import torch

    selected = save_checkpoint(sam_state_dict, tmp_path / "plain.pt")
    loaded = load_sam_state_dict(selected)
    assert set(loaded) == set(sam_state_dict)
    key = "image_encoder.patch_embed.seq.0.c.weight"
    assert torch.equal(loaded[key], sam_state_dict[key])
    assert loaded[key].device.type == "cpu"


@pytest.mark.parametrize("wrapper_key", ["model", "state_dict"])
def test_load_nested_state_dict(tmp_path, sam_state_dict, wrapper_key):
    selected = save_checkpoint({wrapper_key: sam_state_dict, "epoch": 3}, tmp_path / "nested.pt")
    assert set(load_sam_state_dict(selected)) == set(sam_state_dict)


def test_load_strips_module_prefix(tmp_path):
    import torch

    state = {"module.image_encoder.neck.0.weight": torch.zeros(2), "module.mask_decoder.x": torch.ones(1)}
    selected = save_checkpoint(state, tmp_path / "parallel.pt")
    assert sorted(load_sam_state_dict(selected)) == ["image_encoder.neck.0.weight", "mask_decoder.x"]


def test_load_without_image_encoder_keys(tmp_path):
    import torch

    selected = save_checkpoint({"backbone.weight": torch.zeros(2)}, tmp_path / "other.pt")
    expected = r"found keys \['backbone.weight'\].*expected keys starting with 'image_encoder.'"
    with pytest.raises(WeightsError, match=expected):
        load_sam_state_dict(selected)


def test_load_rejects_non_tensor_pickle(tmp_path):
    import torch

    path = tmp_path / "pickled.pt"
    torch.save({"image_encoder.x": PickledObject()}, path)
    selected = resolve_weights(path, expected_sha256=sha256_file(path))
    with pytest.raises(WeightsError, match="Cannot load MobileSAM weights file"):
        load_sam_state_dict(selected)


def test_load_random_weights_raises():
    with pytest.raises(ValueError, match="no file to load"):
        load_sam_state_dict(resolve_weights(RANDOM))
