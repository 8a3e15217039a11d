"""The Hugging Face hub, checked before any work: a probe of a few seconds instead of minutes of retries.

- ``hub_reachable()`` opens one TCP connection to the hub endpoint (``HF_ENDPOINT``), or says no at once when
  offline mode is set; the answer is kept for the process;
- ``model_source(name_or_path)`` says where a model comes from (a local folder, the hub, or the local hub
  cache when the hub is out of reach) and stops with one line when none of them has it;
- ``local_model_path(name_or_path)`` is what to load: the cached snapshot's folder when the hub is out of reach
  (loading by hub id, even with ``local_files_only``, still asks the hub for a PEFT adapter: 23 s of retries).
"""
from __future__ import annotations

import functools
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

from harness.errors import UserError

PROBE_TIMEOUT_S = 3.0


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def offline_mode() -> bool:
    return _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("HF_DATASETS_OFFLINE"))


@functools.cache
def _probe(endpoint: str, timeout: float) -> bool:
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    ok = []

    def probe():
        try:
            with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
                ok.append(True)
        except OSError:
            pass

    # In a thread: the connect timeout does not cover a hanging DNS lookup, the join timeout does.
    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return bool(ok)


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """False when offline mode is set (``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE``) or a TCP connection to the
    hub endpoint does not open within ``timeout`` seconds (asked once per endpoint and process)."""
    if offline_mode():
        return False
    return _probe(os.environ.get("HF_ENDPOINT", "https://huggingface.co"), timeout)


def model_source(name_or_path: str) -> str:
    """``"local"`` (a folder), ``"hub"`` (reachable) or ``"cache"`` (the hub is out of reach but the model was
    downloaded before: load it with ``local_files_only``). Anything else is one line naming the fix."""
    if Path(name_or_path).expanduser().is_dir():
        if not (Path(name_or_path).expanduser() / "config.json").is_file():
            raise UserError(f"model.name_or_path={name_or_path}: the folder has no config.json; give a folder "
                            f"saved with save_pretrained")
        return "local"
    if hub_reachable():
        return "hub"
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = isinstance(try_to_load_from_cache(name_or_path, "config.json"), str)
    except ValueError:  # not a valid repo id either
        cached = False
    if cached:
        return "cache"
    raise UserError(f"model.name_or_path={name_or_path}: not a local folder, the Hugging Face hub is out of reach "
                    f"({os.environ.get('HF_ENDPOINT', 'https://huggingface.co')}) and the model is not in the local "
                    f"hub cache; download it where the hub is reachable (hf download {name_or_path}) "
                    f"or give a local folder")


def local_model_path(name_or_path: str) -> str:
    """``name_or_path``, or the folder of its cached snapshot when the hub is out of reach."""
    if Path(name_or_path).expanduser().is_dir() or model_source(name_or_path) != "cache":
        return name_or_path
    from huggingface_hub import snapshot_download

    return snapshot_download(name_or_path, local_files_only=True)
