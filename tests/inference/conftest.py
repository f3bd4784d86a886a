import pytest

from tests.export.tiny import TinyExport, tiny_prior_export


@pytest.fixture(scope="session")
def tiny_prior(tmp_path_factory) -> TinyExport:
    """The tiny bundle with a cell prior and a latent library, exported once per session (``tiny``,
    the one without a prior, is tests/conftest.py's)."""
    return tiny_prior_export(tmp_path_factory)
