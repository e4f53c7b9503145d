import pytest


@pytest.fixture(scope="session")
def toy_world(tmp_path_factory):
    """The small toy world (SMALL_SETTINGS, seed 0), built once per session into a temporary cache."""
    from soarlite import toy

    return toy.ensure_built(toy.SMALL_SETTINGS, seed=0, cache_root=tmp_path_factory.mktemp("toy_cache"))
