"""Pilot images for the tests, built in the test engine by contrib/devstack/images.sh.

The shell script is the single implementation (users run it too); this only points it at the
right engine and reports its output when it fails."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGES_SH = REPO / "contrib" / "devstack" / "images.sh"

BUSYBOX_TAG = "busybox:latest"
WQ_WORKER_TAG = "planctond/wq-worker:latest"


class ImageBuildError(RuntimeError):
    pass


def ensure_image(docker_url: str, kind: str, tag: str) -> str:
    """Build `kind` ("busybox" or "wq-worker") as `tag` in the engine at `docker_url` unless it
    is already there; return the tag."""
    env = {**os.environ, "DOCKER_HOST": docker_url}
    proc = subprocess.run(
        ["bash", str(IMAGES_SH), kind, tag],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise ImageBuildError(
            f"images.sh {kind} {tag} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
    return tag


def ensure_busybox(docker_url: str, tag: str = BUSYBOX_TAG) -> str:
    return ensure_image(docker_url, "busybox", tag)


def ensure_wq_worker(docker_url: str, tag: str = WQ_WORKER_TAG) -> str:
    return ensure_image(docker_url, "wq-worker", tag)
