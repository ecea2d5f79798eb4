"""Packaged GGUF models: the parts installed as wheels are joined in order, checked against the sha256, cached."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from p2m_engine.errors import LLMError
from p2m_engine.llm import embedded
from p2m_engine.llm.embedded import PackagedModel, embedded_model_path

PARTS = [b"GGUF-head-", b"middle-", b"tail"]


def install_parts(root: Path, parts: list[bytes]) -> None:
    """Wheels as installed: package `fakeparts_part{i}` holding data/part{i:02d}.bin."""
    for i, blob in enumerate(parts, 1):
        pkg = root / f"fakeparts_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(blob)


@pytest.fixture()
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PackagedModel:
    site = tmp_path / "site"
    install_parts(site, PARTS)
    monkeypatch.syspath_prepend(str(site))
    model = PackagedModel("fake-model", 10, "fake.gguf", hashlib.sha256(b"".join(PARTS)).hexdigest(),
                          "fakeparts-part", len(PARTS), "1.0", "fake-extra")
    monkeypatch.setitem(embedded.PACKAGED, model.name, model)
    return model


def test_the_parts_are_joined_in_order_and_cached(fake: PackagedModel, tmp_path: Path) -> None:
    path = embedded_model_path("fake-model", cache_dir=tmp_path / "models")
    assert path.read_bytes() == b"GGUF-head-middle-tail"
    assert path.name == "fake.gguf"
    # The second call reads the cached file and does not join again (the parts may be gone by then).
    path.write_bytes(b"cached")
    assert embedded_model_path("fake-model", cache_dir=tmp_path / "models").read_bytes() == b"cached"


def test_an_altered_part_is_refused_and_nothing_is_left(fake: PackagedModel, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(embedded.PACKAGED, "fake-model",
                        PackagedModel(**{**fake.__dict__, "sha256": hashlib.sha256(b"other").hexdigest()}))
    with pytest.raises(LLMError, match="sha256 .* the packages were altered"):
        embedded_model_path("fake-model", cache_dir=tmp_path / "models")
    assert list((tmp_path / "models").iterdir()) == []


def test_a_missing_part_names_the_package_and_the_install_command(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    install_parts(site, PARTS[:2])  # the third wheel is not installed
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setitem(embedded.PACKAGED, "fake-model",
                        PackagedModel("fake-model", 10, "fake.gguf", "0" * 64, "fakeparts-part", 3, "1.0", "fake-extra"))
    with pytest.raises(LLMError, match=r"package fakeparts-part3==1\.0\). Run `make install-fake-extra`"):
        embedded_model_path("fake-model", cache_dir=tmp_path / "models")


def test_an_unknown_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LLMError, match="not a packaged model"):
        embedded_model_path("qwen9-huge", cache_dir=tmp_path)


def test_both_teachers_are_packaged_with_their_own_parts() -> None:
    small, large = embedded.PACKAGED["qwen2.5-coder-0.5b-instruct"], embedded.PACKAGED["qwen2.5-coder-1.5b-instruct"]
    assert (small.parts, large.parts) == (6, 22)
    assert small.package != large.package and small.file != large.file and small.sha256 != large.sha256
    assert small.params < large.params
