"""The official client's tests run on both runtimes, like the end-to-end suite."""

from tests.e2e.conftest import neuro  # noqa: F401  (the fixture, parametrised by runtime)
