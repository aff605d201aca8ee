"""Running the service: in a background thread (:class:`BackgroundServer`), in the foreground (:func:`run`),
and the ``reidkit serve`` command (:func:`serve_main`)."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from reidkit.serve.app import create_app
from reidkit.serve.uploads import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_MAX_CONCURRENT_DECODES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD_BYTES,
)

#: seconds a background server may take to start or to stop.
_START_STOP_TIMEOUT = 30


class BackgroundServer:
    """Run an app with uvicorn in a background thread (tests, benchmarks, the page screenshot).

    Use as a context manager; ``url`` is ``http://host:port``.
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        """Prepare the server; ``port=0`` picks a free port."""
        import socket

        import uvicorn

        if port == 0:
            with socket.socket() as probe:
                probe.bind((host, 0))
                port = probe.getsockname()[1]
        self.url = f"http://{host}:{port}"
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + _START_STOP_TIMEOUT
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the server at {self.url} did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=_START_STOP_TIMEOUT)


def run(
    index_dir: str | Path,
    embedder: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    **limits: Any,
) -> None:
    """Serve until interrupted; ``limits`` (``token``, ``max_upload_bytes``, ``max_pixels``,
    ``max_concurrent_decodes``, ...) are the keyword arguments of :func:`reidkit.serve.create_app`."""
    import uvicorn

    app = create_app(index_dir, embedder, **limits)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def serve_main(
    *,
    index: str | Path,
    uri: str | None = None,
    checkpoint: str | Path | None = None,
    onnx: str | Path | None = None,
    openvino: str | Path | None = None,
    preprocess: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    token_env: str = "REIDKIT_TOKEN",
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_BYTES / 2**20,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_concurrent_decodes: int = DEFAULT_MAX_CONCURRENT_DECODES,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    device: str = "cpu",
    bf16: bool = False,
) -> None:
    """``reidkit serve``: load the embedder (exactly one of checkpoint / onnx / openvino) and serve ``index``
    (a directory, or with ``uri`` the Milvus collection of that name).

    The write token is read from the environment variable ``token_env`` (never from the command line, where
    other users could see it); without it the write endpoints are disabled. ``max_pixels`` and
    ``max_concurrent_decodes`` bound the memory of decoded images to about
    ``max_pixels * max_concurrent_decodes * 8`` bytes (see :func:`reidkit.serve.create_app`).
    """
    from reidkit.embed import load_embedder

    embedder = load_embedder(
        checkpoint=checkpoint, onnx=onnx, openvino=openvino, preprocess=preprocess, device=device, bf16=bf16
    )
    token = os.environ.get(token_env) or None
    state = "enabled" if token else f"disabled (set {token_env} to enable them)"
    print(
        f"reidkit serve: {index} with {embedder.name} on http://{host}:{port}  writes {state}",
        file=sys.stderr,
    )
    run(
        index,
        embedder,
        host=host,
        port=port,
        uri=uri,
        token=token,
        max_upload_bytes=max(1, int(max_upload_mb * 2**20)),
        max_pixels=max_pixels,
        max_concurrent_decodes=max_concurrent_decodes,
        body_timeout_s=body_timeout_s,
    )
