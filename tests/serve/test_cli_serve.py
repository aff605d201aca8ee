"""``reidkit serve`` refuses bad numbers at parse time and hands the limits to the service."""

from __future__ import annotations

import pytest

import reidkit.serve
from reidkit.cli import main
from reidkit.serve import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_MAX_CONCURRENT_DECODES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD_BYTES,
)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--port", "99999", "port number in 0..65535"),
        ("--port", "-1", "port number in 0..65535"),
        ("--port", "http", "invalid port_number value"),
        ("--max-upload-mb", "-1", "finite number > 0"),
        ("--max-upload-mb", "0", "finite number > 0"),
        ("--max-upload-mb", "nan", "finite number > 0"),
        ("--max-upload-mb", "inf", "finite number > 0"),
        ("--max-pixels", "0", "integer >= 1"),
        ("--max-pixels", "1e6", "invalid positive value"),
        ("--max-concurrent-decodes", "-2", "integer >= 1"),
        ("--body-timeout", "0", "finite number > 0"),
    ],
)
def test_bad_numbers_are_refused_at_parse_time(capsys, option, value, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--index", "gallery", option, value])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert option in error and message in error, error


def test_limits_reach_the_service(monkeypatch):
    calls = []
    monkeypatch.setattr(reidkit.serve, "serve_main", lambda **kwargs: calls.append(kwargs))
    argv = ["serve", "--index", "gallery", "--onnx", "m.onnx", "--port", "0", "--max-upload-mb", "2.5"]
    argv += ["--max-pixels", "1000000", "--max-concurrent-decodes", "3", "--body-timeout", "30"]
    assert main(argv) == 0
    [kwargs] = calls
    assert (kwargs["port"], kwargs["max_upload_mb"], kwargs["max_pixels"]) == (0, 2.5, 1_000_000)
    assert (kwargs["max_concurrent_decodes"], kwargs["body_timeout_s"]) == (3, 30.0)
    assert main(["serve", "--index", "gallery"]) == 0
    defaults = calls[1]
    assert defaults["port"] == 8000 and defaults["max_upload_mb"] * 2**20 == DEFAULT_MAX_UPLOAD_BYTES
    assert (defaults["max_pixels"], defaults["max_concurrent_decodes"], defaults["body_timeout_s"]) == (
        DEFAULT_MAX_PIXELS,
        DEFAULT_MAX_CONCURRENT_DECODES,
        DEFAULT_BODY_TIMEOUT_S,
    )
