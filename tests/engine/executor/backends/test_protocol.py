"""Every backend implements the one Backend interface, and make_backend builds each by name."""

from __future__ import annotations

import pytest

from engine.errors import InvalidArgument
from engine.executor.backends import BACKENDS, Backend, make_backend


@pytest.mark.anyio
@pytest.mark.parametrize("name", BACKENDS)
async def test_each_backend_implements_the_backend_interface(name: str) -> None:
    backend = make_backend(name, base_url="http://127.0.0.1:9" if name != "embedded" else None)
    try:
        assert isinstance(backend, Backend)
        assert backend.name == name and backend.parallelism >= 1
        assert backend.count_tokens("def add(a, b):\n    return a + b\n") > 5
    finally:
        await backend.aclose()


def test_an_unknown_backend_name_is_refused_with_the_choices() -> None:
    with pytest.raises(InvalidArgument, match="backend: expected one of ollama, openai, embedded"):
        make_backend("vllm")
