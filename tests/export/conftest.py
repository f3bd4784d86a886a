import pytest

from tests.export.tiny import TinyExport, tiny_export


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> TinyExport:
    """The tiny bundle, exported once per session by the real export pipeline."""
    return tiny_export(tmp_path_factory)
