"""The model card's section on real images states what the bundled model does with them: the
numbers in the manifest are measured again here, so the card cannot drift from the model."""

from __future__ import annotations

import pytest

from diagnostics.package import card as model_card
from diagnostics.package import load_package
from tests.realworld.observe import BUNDLED, observe


@pytest.mark.slow
def test_real_image_numbers_in_the_manifest_are_what_the_model_does() -> None:
    manifest = load_package(BUNDLED).manifest
    kept = manifest.metrics[model_card.REAL_IMAGES_KEY]
    assert isinstance(kept, dict)
    seen = observe()
    for key in ("images", "refused_by_appearance", "let_through", "flagged_if_forced"):
        assert seen[key] == kept[key], key
    assert seen["flag_counts_if_forced"] == kept["flag_counts_if_forced"]
    assert seen["phantoms_analyzed"] == kept["phantoms_analyzed"] == kept["phantoms"]
    for name, item in seen["per_image"].items():
        stored = kept["per_image"][name]  # type: ignore[index, call-overload]
        assert item["status"] == stored["status"], name
        assert abs(item["appearance_score"] - stored["appearance_score"]) <= 0.02, name


def test_the_card_says_in_plain_words_what_real_images_get() -> None:
    package = load_package(BUNDLED)
    card = package.card_path.read_text(encoding="utf-8")
    kept = package.manifest.metrics[model_card.REAL_IMAGES_KEY]
    assert isinstance(kept, dict)
    assert card == model_card.render(package.manifest)
    section = card.split("## Behaviour on real radiographs", 1)[1].split("\n## ", 1)[0]
    for words in (
        "appearance check",
        "What it lets through",
        "mean nothing clinically",
        f"Of {kept['images']} such images, {kept['refused_by_appearance']} were refused",
    ):
        assert words in section, words
