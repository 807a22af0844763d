"""The content holder is the one place content is reloaded: throttled for pages, never raising."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nurture.content.library import ContentHolder
from tests.support.paths import ROOT


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sequences(tmp_path: Path) -> Path:
    folder = tmp_path / "sequences"
    folder.mkdir()
    for name in ("sample.yaml", "system.yaml"):
        shutil.copy(ROOT / "sequences" / name, folder / name)
    return folder


def _retitle(sequences: Path, subject: str) -> None:
    path = sequences / "sample.yaml"
    text = path.read_text()
    first = text.index("subject:")
    end = text.index("\n", first)
    path.write_text(text[:first] + f"subject: {subject}" + text[end:])


def test_fresh_looks_at_the_files_first_and_then_at_most_every_max_age(sequences: Path) -> None:
    clock = FakeMonotonic()
    holder = ContentHolder(sequences, ROOT / "templates", monotonic=clock)
    first = holder.current.version
    _retitle(sequences, "A first new subject")
    assert holder.fresh(5.0).version != first, "the first call looks at the files"
    second = holder.current.version
    _retitle(sequences, "A second new subject")
    clock.now += 4.9
    assert holder.fresh(5.0).version == second, "too soon: the files are not looked at"
    clock.now += 0.1
    assert holder.fresh(5.0).version not in (first, second)


def test_refresh_keeps_the_last_good_version_and_never_raises(sequences: Path) -> None:
    holder = ContentHolder(sequences, ROOT / "templates", monotonic=FakeMonotonic())
    good = holder.current.version
    (sequences / "sample.yaml").write_text("key: sample\nsteps: [oops\n")
    assert holder.refresh() is False
    assert holder.current.version == good
    assert holder.last_refused is not None
    shutil.rmtree(sequences)
    assert holder.refresh() is False, "a vanished folder is refused, not raised"
    assert holder.current.version == good
