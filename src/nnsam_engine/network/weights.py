"""Finding, verifying, downloading and loading the MobileSAM image-encoder weights.

Downloading and importing are implemented in :mod:`.weights_download` and
re-exported here as :func:`download_weights` and :func:`import_weights`.

nnSAM freezes the image encoder of MobileSAM, so training and prediction need the
published checkpoint ``weights/mobile_sam.pt`` of the MobileSAM repository. This
module looks for it in three places, in this order:

1. an explicit argument (``--sam-weights PATH`` in the CLI),
2. the environment variable ``NNSAM_SAM_WEIGHTS``,
3. the cache file ``mobile_sam.pt`` in ``$NNSAM_CACHE_DIR`` or the user cache folder.

The first location that is set is the one used. If it contains no verified file, the
error lists every location instead of falling through, so a mistyped path never
silently loads another file. The value ``"random"`` in place of a path selects
randomly initialised encoder weights, for tests and demos only.

Every file is checked against an expected SHA-256 (the official one by default)
before use, and downloads and imports reach the cache only after that check.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import WeightsError

logger = logging.getLogger(__name__)

OFFICIAL_URL = "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt"
OFFICIAL_SHA256 = "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f"
OFFICIAL_SIZE = 40_728_226
WEIGHTS_ENV_VAR = "NNSAM_SAM_WEIGHTS"
CACHE_ENV_VAR = "NNSAM_CACHE_DIR"
#: Value that selects randomly initialised encoder weights in place of a file path.
RANDOM = "random"
WEIGHTS_FILE_NAME = "mobile_sam.pt"

_CHUNK_SIZE = 1 << 20
_FIXES = {
    "missing": (
        "Run `nnsam weights download`, or `nnsam weights import FILE` for a file downloaded elsewhere, "
        "or pass the path of an existing file with `--sam-weights PATH`."
    ),
    "size": "Run `nnsam weights download` again, or import a complete file with `nnsam weights import FILE`.",
    "hash": (
        "Run `nnsam weights download` again, or import the official file with `nnsam weights import FILE`. "
        "To use your own fine-tuned MobileSAM checkpoint, pass `--sam-weights PATH --sam-weights-sha256 HEX` "
        "to `nnsam train`, `nnsam predict` or `nnsam demo` (`expected_sha256` in the Python API)."
    ),
    "unreadable": "Check that the file is readable by this user.",
}


def default_cache_path() -> Path:
    """Return the cache file: ``$NNSAM_CACHE_DIR/mobile_sam.pt``, else ``mobile_sam.pt`` in the user cache folder.

    The environment is read on every call, so a test or a CLI option can change it at run time.
    """
    cache_dir = os.environ.get(CACHE_ENV_VAR, "").strip()
    if cache_dir:
        return Path(cache_dir).expanduser() / WEIGHTS_FILE_NAME
    import platformdirs

    return Path(platformdirs.user_cache_dir("nnsam")) / WEIGHTS_FILE_NAME


def sha256_file(path: os.PathLike | str, chunk_size: int = _CHUNK_SIZE) -> str:
    """Return the SHA-256 of a file as lowercase hex, reading ``chunk_size`` bytes at a time."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


@dataclass(frozen=True)
class SamWeights:
    """MobileSAM weights selected by :func:`resolve_weights`.

    Attributes
    ----------
    path : Path or None
        Verified checkpoint file, or None for random weights.
    sha256 : str or None
        SHA-256 of ``path`` as verified, or None for random weights.
    random : bool
        True when the encoder is to be initialised randomly (tests and demos only).
    source : str
        Where the choice came from: ``"explicit"``, ``"environment"``, ``"cache"`` or ``"random"``.
    """

    path: Path | None
    sha256: str | None
    random: bool
    source: str

    def describe(self) -> str:
        """Return a one-line description for logs and status output."""
        if self.random:
            return "MobileSAM weights: random initialisation (for tests and demos only, not for real segmentation)"
        return f"MobileSAM weights: {self.path} (SHA-256 {self.sha256}, source: {self.source})"


def _normalise_sha256(value: str | None) -> str:
    if value is None:
        return OFFICIAL_SHA256
    text = str(value).strip().lower()
    if len(text) != 64 or any(character not in "0123456789abcdef" for character in text):
        raise WeightsError(
            f"Invalid expected SHA-256 {value!r}: expected 64 hexadecimal characters, "
            "as printed by `sha256sum FILE`."
        )
    return text


def _expected_size(expected_sha256: str, expected_size: int | None) -> int | None:
    if expected_size is None and expected_sha256 == OFFICIAL_SHA256:
        return OFFICIAL_SIZE
    return expected_size


def _size_problem(found: int, expected: int) -> str:
    if found < expected:
        return (f"wrong size: found {found} bytes, expected {expected} bytes (an interrupted download leaves a "
                "shorter file)")
    return f"wrong size: found {found} bytes, expected {expected} bytes"


def _hash_problem(found: str, expected: str) -> str:
    return f"SHA-256 mismatch: found {found}, expected {expected}"


def _check_file(path: Path, expected_sha256: str, expected_size: int | None) -> tuple[str | None, str | None, str]:
    """Return ``(sha256, problem, kind)``, where ``problem`` is None for a verified file."""
    if not path.exists():
        return None, "file not found", "missing"
    if not path.is_file():
        return None, "not a regular file", "missing"
    try:
        size = path.stat().st_size
        if expected_size is not None and size != expected_size:
            return None, _size_problem(size, expected_size), "size"
        digest = sha256_file(path)
    except OSError as error:
        return None, f"cannot be read ({error.strerror or error})", "unreadable"
    if digest != expected_sha256:
        return digest, _hash_problem(digest, expected_sha256), "hash"
    return digest, None, "ok"


def verify_weights(
    path: os.PathLike | str,
    expected_sha256: str | None = OFFICIAL_SHA256,
    expected_size: int | None = None,
) -> str:
    """Check that a weights file exists and has the expected size and SHA-256.

    Parameters
    ----------
    path : path-like
        The checkpoint file.
    expected_sha256 : str, optional
        Expected SHA-256 in hex. Defaults to the official MobileSAM checkpoint's hash.
    expected_size : int, optional
        Expected size in bytes. When omitted, the official size is checked for the
        official hash, and no size is checked for any other hash.

    Returns
    -------
    str
        The file's SHA-256.

    Raises
    ------
    WeightsError
        If the file is missing or unreadable, or its size or hash differs from the expected value.
    """
    path = Path(path).expanduser()
    expected_sha256 = _normalise_sha256(expected_sha256)
    digest, problem, kind = _check_file(path, expected_sha256, _expected_size(expected_sha256, expected_size))
    if problem is not None:
        raise WeightsError(f"MobileSAM weights file {path} failed verification: {problem}. {_FIXES[kind]}")
    return digest


@dataclass(frozen=True)
class _Location:
    source: str
    label: str
    value: str | None
    path: Path | None
    random: bool


def _is_random(value) -> bool:
    return isinstance(value, str) and value.strip().lower() == RANDOM


def _make_location(source: str, label: str, value) -> _Location:
    if value is None or (isinstance(value, str) and not value.strip()):
        return _Location(source, label, None, None, False)
    if _is_random(value):
        return _Location(source, label, RANDOM, None, True)
    path = Path(value).expanduser()
    return _Location(source, label, str(value), path, False)


def _locations(explicit) -> list[_Location]:
    """Return the three locations in resolution order. The cache location is always set."""
    cache = default_cache_path()
    return [
        _make_location("explicit", "--sam-weights argument", explicit),
        _make_location("environment", f"environment variable {WEIGHTS_ENV_VAR}", os.environ.get(WEIGHTS_ENV_VAR)),
        _Location("cache", "cache file", str(cache), cache, False),
    ]


def _resolution_error(locations: list[_Location], chosen: _Location, problem: str, expected_sha256: str) -> str:
    expected_size = _expected_size(expected_sha256, None)
    lines = ["No verified MobileSAM weights found. Locations checked, in order:"]
    chosen_index = locations.index(chosen)
    for index, location in enumerate(locations):
        if location.value is None:
            state = "not set"
        elif index == chosen_index:
            state = f"{location.path}: {problem}"
        else:
            state = f"{location.value} (not used because an earlier location is set)"
        lines.append(f"  {index + 1}. {location.label}: {state}")
    size_text = f"a file of {expected_size} bytes with " if expected_size is not None else "a file with "
    lines += [
        f"Expected {size_text}SHA-256 {expected_sha256}.",
        "To fix this, do one of the following:",
        f"  - run `nnsam weights download` to fetch the official file from {OFFICIAL_URL};",
        "  - run `nnsam weights import FILE` to copy a file downloaded on another machine into the cache;",
        "  - pass `--sam-weights PATH` to use a file stored elsewhere.",
        f"`--sam-weights {RANDOM}` uses randomly initialised encoder weights and is for tests and demos only.",
    ]
    return "\n".join(lines)


def resolve_weights(explicit: os.PathLike | str | None = None, expected_sha256: str | None = None) -> SamWeights:
    """Select and verify the MobileSAM weights to use.

    Parameters
    ----------
    explicit : path-like or str, optional
        A checkpoint path or ``"random"``. When omitted, ``$NNSAM_SAM_WEIGHTS`` is used if
        set (a path or ``"random"``), else the cache file from :func:`default_cache_path`.
    expected_sha256 : str, optional
        SHA-256 the file must have; defaults to the official MobileSAM checkpoint. Pass the
        hash of your own fine-tuned MobileSAM checkpoint to use that file instead.

    Returns
    -------
    SamWeights

    Raises
    ------
    WeightsError
        If the first location that is set contains no verified file. The message lists each
        location, the expected size and SHA-256, and the commands that fix it.
    """
    expected_sha256 = _normalise_sha256(expected_sha256)
    locations = _locations(explicit)
    chosen = next(location for location in locations if location.value is not None)
    if chosen.random:
        logger.warning("Using randomly initialised MobileSAM encoder weights (set by %s).", chosen.label)
        return SamWeights(path=None, sha256=None, random=True, source=RANDOM)

    digest, problem, _ = _check_file(chosen.path, expected_sha256, _expected_size(expected_sha256, None))
    if problem is not None:
        raise WeightsError(_resolution_error(locations, chosen, problem, expected_sha256))
    weights = SamWeights(path=chosen.path, sha256=digest, random=False, source=chosen.source)
    logger.info("%s", weights.describe())
    return weights


def weights_status(explicit: os.PathLike | str | None = None, expected_sha256: str | None = None) -> dict:
    """Describe every weights location, for ``nnsam weights status``.

    Returns
    -------
    dict
        ``expected_sha256``, ``expected_size`` (bytes or None), ``selected`` (the source
        :func:`resolve_weights` uses), ``usable`` (whether that source is random or verified) and
        ``locations``: one dict per location with ``source``, ``description``, ``value``,
        ``path``, ``random``, ``exists``, ``size`` (bytes or None), ``sha256``, ``verified``
        and ``reason`` (why it is not verified, or None). Every file that exists is hashed,
        including those after the selected location.
    """
    expected_sha256 = _normalise_sha256(expected_sha256)
    expected_size = _expected_size(expected_sha256, None)
    entries = []
    for location in _locations(explicit):
        entry = {
            "source": location.source,
            "description": location.label,
            "value": location.value,
            "path": str(location.path) if location.path is not None else None,
            "random": location.random,
            "exists": bool(location.path is not None and location.path.is_file()),
            "size": None,
            "sha256": None,
            "verified": False,
            "reason": None,
        }
        if location.value is None:
            entry["reason"] = "not set"
        elif location.random:
            entry["reason"] = "random weights requested (tests and demos only)"
        else:
            if entry["exists"]:
                entry["size"] = location.path.stat().st_size
            entry["sha256"], entry["reason"], _ = _check_file(location.path, expected_sha256, expected_size)
            entry["verified"] = entry["reason"] is None
        entries.append(entry)
    selected = next(entry for entry in entries if entry["value"] is not None)
    return {
        "expected_sha256": expected_sha256,
        "expected_size": expected_size,
        "selected": selected["source"],
        "usable": selected["random"] or selected["verified"],
        "locations": entries,
    }


def _unwrap_state_dict(loaded, path: Path) -> dict:
    if not isinstance(loaded, Mapping):
        raise WeightsError(
            f"MobileSAM weights file {path} contains a {type(loaded).__name__}, expected a state dict "
            "(a dict of tensors, as saved by torch.save(model.state_dict()))."
        )
    state = loaded
    if not any(str(key).startswith("image_encoder.") for key in state):
        for wrapper_key in ("model", "state_dict"):
            if isinstance(state.get(wrapper_key), Mapping):
                state = state[wrapper_key]
                break
    # Checkpoints saved from torch.nn.DataParallel prefix every key with "module.".
    if state and all(str(key).startswith("module.") for key in state):
        state = {str(key)[len("module."):]: value for key, value in state.items()}
    if not any(str(key).startswith("image_encoder.") for key in state):
        sample = sorted(str(key) for key in state)[:5]
        raise WeightsError(
            f"MobileSAM weights file {path} has no image encoder weights: found keys {sample} "
            f"({len(state)} in total), expected keys starting with 'image_encoder.'. "
            "Pass a MobileSAM (Sam) checkpoint such as the official mobile_sam.pt."
        )
    return dict(state)


def load_sam_state_dict(weights: SamWeights) -> dict:
    """Load the state dict of a verified MobileSAM checkpoint onto the CPU.

    The file may contain the ``Sam`` state dict itself (keys ``image_encoder.*``,
    ``prompt_encoder.*``, ``mask_decoder.*``) or contain it under ``"model"`` or
    ``"state_dict"``. A ``module.`` prefix on every key is removed. Only tensors and
    plain containers are unpickled (``weights_only=True``).

    Raises
    ------
    ValueError
        If ``weights`` selects random weights, which have no file.
    WeightsError
        If the file cannot be loaded or has no ``image_encoder.*`` keys.
    """
    if weights.random or weights.path is None:
        raise ValueError("Random MobileSAM weights have no file to load. Initialise the encoder without a state dict.")
    import torch

    path = Path(weights.path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise WeightsError(
            f"Cannot load MobileSAM weights file {path}: {first_line}. Expected a PyTorch checkpoint that contains "
            "only tensors, such as the official mobile_sam.pt. Run `nnsam weights download` again or import "
            "another file with `nnsam weights import FILE`."
        ) from error
    return _unwrap_state_dict(loaded, path)


#: Functions that live in weights_download and are re-exported here.
_DOWNLOAD_FUNCTIONS = ("download_weights", "import_weights")


def __getattr__(name: str):
    # weights_download imports this module, so its functions are loaded on first access
    # (PEP 562). An import at module level would fail when weights_download is imported first.
    if name in _DOWNLOAD_FUNCTIONS:
        from . import weights_download

        return getattr(weights_download, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
