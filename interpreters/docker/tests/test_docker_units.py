"""Docker backend pieces that need no engine: the attach-stream demuxer and the settings."""

from __future__ import annotations

import struct

import pytest

from rlm_core.errors import BridgeProtocolError, ConfigError
from rlm_core.registry import create
from rlm_docker import DEFAULT_IMAGE, DockerInterpreter
from rlm_docker._channel import StreamDemuxer


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxI", stream, len(payload)) + payload


# ---- the multiplexed attach stream ---------------------------------------------------------


def test_demuxer_keeps_stdout_and_sets_stderr_aside() -> None:
    demux = StreamDemuxer()
    out = demux.feed(frame(1, b"hello ") + frame(2, b"warning") + frame(1, b"world"))
    assert out == b"hello world"
    assert bytes(demux.stderr_tail) == b"warning"
    assert demux.at_frame_boundary


def test_demuxer_reassembles_headers_and_payloads_split_anywhere() -> None:
    stream = frame(1, b"A" * 1000) + frame(2, b"err") + frame(1, b"") + frame(1, b"tail")
    for step in (1, 3, 7, 8, 9, 100):
        demux = StreamDemuxer()
        pieces = [demux.feed(stream[i : i + step]) for i in range(0, len(stream), step)]
        assert b"".join(pieces) == b"A" * 1000 + b"tail", step
        assert bytes(demux.stderr_tail) == b"err"
        assert demux.at_frame_boundary


def test_demuxer_does_not_mistake_header_bytes_inside_a_payload_for_a_frame() -> None:
    tricky = frame(2, b"not stderr")  # stdout that happens to look like a frame header
    demux = StreamDemuxer()
    assert demux.feed(frame(1, tricky)) == tricky
    assert demux.stderr_tail == bytearray()


def test_demuxer_bounds_the_stderr_tail_to_the_latest_bytes() -> None:
    demux = StreamDemuxer()
    demux.feed(frame(2, b"x" * 100_000) + frame(2, b"LAST"))
    assert len(demux.stderr_tail) <= 8192
    assert demux.stderr_tail.endswith(b"LAST")


@pytest.mark.parametrize("header", [b"\x07\x00\x00\x00\x00\x00\x00\x01", b"\x01\x00\x09\x00"])
def test_demuxer_rejects_a_stream_that_is_not_multiplexed(header: bytes) -> None:
    # What a TTY container (raw output) would look like: the first bytes are not a header.
    with pytest.raises(BridgeProtocolError, match="TTY"):
        StreamDemuxer().feed(header + b"\x00" * 8 + b"payload")


# ---- settings ------------------------------------------------------------------------------


def test_defaults_are_locked_down_and_say_so_in_capabilities() -> None:
    interp = DockerInterpreter()
    caps = interp.capabilities
    assert interp.image == DEFAULT_IMAGE
    assert caps.isolation == "container"
    assert caps.network is False
    assert caps.survives_timeout is True
    assert caps.host_env_visible is False
    assert caps.host_files_visible is False
    # The default memory limit leaves room to bind a 1 GB input.
    assert caps.max_variable_bytes is not None
    assert caps.max_variable_bytes >= 1 << 30


def test_capabilities_follow_the_settings() -> None:
    open_up = DockerInterpreter(network_mode="host", memory=None, tmpfs_size=None)
    assert open_up.capabilities.network is True
    assert open_up.capabilities.max_variable_bytes is None
    assert open_up.capabilities.writable_filesystem is False  # read-only root, no tmpfs
    small = DockerInterpreter(memory="512m")
    assert small.capabilities.max_variable_bytes == (512 - 256) * (1 << 20) // 2
    assert DockerInterpreter(read_only=False, tmpfs_size=None).capabilities.writable_filesystem


def test_a_spec_string_configures_image_and_limits() -> None:
    interp = create(
        "docker://localhost:5000/team/py:3.12?memory=1g&cpus=0.5&pids_limit=32"
        "&read_only=false&cap_drop=NET_RAW,SYS_ADMIN&runtime=runsc"
    )
    assert isinstance(interp, DockerInterpreter)
    assert interp.image == "localhost:5000/team/py:3.12"
    assert interp.memory_bytes == 1 << 30
    assert interp.cpus == 0.5
    assert interp.pids_limit == 32
    assert interp.read_only is False
    assert interp.cap_drop == ("NET_RAW", "SYS_ADMIN")
    assert interp.runtime == "runsc"


def test_the_registered_name_builds_the_default_image() -> None:
    interp = create("docker")
    assert isinstance(interp, DockerInterpreter)
    assert interp.image == DEFAULT_IMAGE


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"memory": "lots"}, "memory"),
        ({"memory": "16m"}, "too small"),
        ({"cpus": 0}, "cpus"),
        ({"pids_limit": 0}, "pids_limit"),
        ({"tmpfs_size": "-1"}, "tmpfs_size"),
        ({"image": ""}, "image"),
        ({"api_timeout_s": 0}, "api_timeout_s"),
    ],
)
def test_bad_settings_are_config_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DockerInterpreter(**options)  # type: ignore[arg-type]


def test_an_unknown_option_in_a_spec_lists_the_real_ones() -> None:
    with pytest.raises(ConfigError, match="pids_limit"):
        create("docker://img?pid_limit=3")
