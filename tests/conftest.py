"""Test setup: 8 fake CPU devices (for sharding tests) before JAX is imported anywhere; an offline Cloud Storage
(``gcs_emulator``, started on first use) for the gs:// tests."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MUJOCO_GL", "egl")  # offscreen rendering; chosen when mujoco is first imported
# gcsfs, before anything imports it: no gRPC bucket-type probe per operation (the emulator has no gRPC API:
# a 60 s timeout each), no GCE metadata probe (14 s offline), anonymous access.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
os.environ.setdefault("NO_GCE_CHECK", "true")
os.environ.setdefault("FSSPEC_GCS_TOKEN", "anon")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def gcs_emulator():
    """The emulator for the whole session (started in ~0.01 s on first use), its environment set."""
    from gcs_emulator import GcsEmulator

    emulator = GcsEmulator(bucket="bucket").start()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in emulator.env.items():
            patch.setenv(key, value)
        yield emulator
    emulator.stop()


@pytest.fixture
def bucket(gcs_emulator) -> str:
    """``gs://bucket``, empty at the start of each test."""
    gcs_emulator.wipe()
    return "gs://bucket"
