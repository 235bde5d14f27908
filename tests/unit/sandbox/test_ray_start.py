"""Ray failing to start, or timing out while it starts, is one SandboxError sentence, never Ray's traceback."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")

from sandbox.errors import SandboxError  # noqa: E402
from sandbox.ray_pool import _init_ray  # noqa: E402

# What Ray 2.60 raises when its raylet does not register in time (ray/_private/node.py): a bare Exception.
RAY_STARTUP_TIMEOUT = Exception(
    "The current node timed out during startup. This could happen because some of the raylet failed to "
    "startup or the GCS has become overloaded."
)


@pytest.mark.parametrize("failure", [RAY_STARTUP_TIMEOUT, TimeoutError("Timed out after 30 seconds while waiting "
                                                                       "for node to startup.")])
def test_a_local_start_that_times_out_is_one_sentence_with_what_to_do(monkeypatch, failure) -> None:
    # A real GCS overload cannot be produced on demand; ray.init raises what Ray raises then.
    def init(**options):
        raise failure

    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(SandboxError) as raised:
        _init_ray(None, num_cpus=1)
    message = str(raised.value)
    assert message.startswith("could not start a local Ray instance") and "timed out" in message.lower()
    assert "--runner local" in message
    assert "\n" not in message and message.count(". ") == 0 and message.endswith(".")
    assert raised.value.__cause__ is failure


def test_a_cluster_that_cannot_be_reached_names_the_address(monkeypatch) -> None:
    def init(**options):
        raise ConnectionError("Could not find any running Ray instance.\nPlease specify the one to connect to.")

    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(SandboxError, match=r"could not reach the Ray cluster at 'head:6379' \(ConnectionError") as raised:
        _init_ray("head:6379", num_cpus=1)
    assert "\n" not in str(raised.value)


def test_a_real_failed_start_is_a_sandbox_error(monkeypatch, tmp_path) -> None:
    # Ray keeps its sockets and logs under RAY_TMPDIR; one that does not exist makes ray.init fail at once.
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "missing"))
    if ray.is_initialized():
        pytest.skip("Ray is already running in this process")
    with pytest.raises(SandboxError, match="could not start a local Ray instance"):
        _init_ray(None, num_cpus=1)
    assert not ray.is_initialized()
