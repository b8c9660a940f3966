"""The finding catalogue: shipped as data, extended and overridden by a site file, strictly."""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnostics import findings
from diagnostics.errors import ConfigurationError
from diagnostics.findings import KNOWN_FINDINGS, load_catalogue, merge_catalogue
from diagnostics.train.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


def test_every_shipped_display_stays_marked_for_translation() -> None:
    """Babel does not read TOML: `_DISPLAYS` holds the N_() markers of findings.toml."""
    assert sorted(f.display for f in KNOWN_FINDINGS.values()) == sorted(findings._DISPLAYS)


def test_the_shipped_catalogue_says_what_a_flag_does() -> None:
    assert KNOWN_FINDINGS["nodule"].on_flag == "routine"
    assert KNOWN_FINDINGS["cardiomegaly"].on_flag == "routine"
    assert KNOWN_FINDINGS["consolidation"].on_flag == "urgent"
    assert KNOWN_FINDINGS["pneumothorax"].on_flag == "urgent"


def test_a_site_entry_overrides_only_the_fields_it_gives() -> None:
    merged = merge_catalogue(
        [
            {"code": "nodule", "on_flag": "urgent", "urgent_threshold": 0.8},
            {"code": "tb_screen", "display": "TB", "snomed": "56717001", "snomed_meaning": "TB"},
        ],
        "site.toml",
    )
    assert merged["nodule"].snomed == KNOWN_FINDINGS["nodule"].snomed
    assert (merged["nodule"].on_flag, merged["nodule"].urgent_threshold) == ("urgent", 0.8)
    assert merged["tb_screen"].on_flag == "urgent" and list(merged)[-1] == "tb_screen"
    assert KNOWN_FINDINGS["nodule"].on_flag == "routine"  # the shipped one is untouched
    routine = merge_catalogue([{"code": "nodule", "on_flag": "routine"}], "s", merged)
    assert routine["nodule"].urgent_threshold is None


def test_a_repeated_code_and_a_missing_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"s\.toml: findings\[1\] \(nodule\): .*twice"):
        merge_catalogue([{"code": "nodule"}, {"code": "nodule"}], "s.toml")
    with pytest.raises(ConfigurationError, match="no such file"):
        load_catalogue(tmp_path / "absent.toml")
    (tmp_path / "empty.toml").write_text("")
    with pytest.raises(ConfigurationError, match=r"one or more \[\[findings\]\] tables"):
        load_catalogue(tmp_path / "empty.toml")


def _recipe(tmp_path: Path, findings_part: str) -> Path:
    text = (ROOT / "training" / "cxr-demo.toml").read_text()
    head, _, rest = text.partition('findings = ["nodule", "consolidation", "cardiomegaly"]\n')
    path = tmp_path / "r.toml"
    path.write_text(head + rest + findings_part)
    return path


def test_recipe_findings_tables_name_and_define_the_findings(tmp_path: Path) -> None:
    path = _recipe(
        tmp_path,
        '\n[[findings]]\ncode = "pneumothorax"\non_flag = "routine"\n'
        '\n[[findings]]\ncode = "silicosis"\ndisplay = "Silicosis"\nsnomed = "805002"\n'
        'snomed_meaning = "Silicosis"\n',
    )
    recipe = load_recipe(path)
    assert recipe.findings == ("pneumothorax", "silicosis")
    assert recipe.catalogue["pneumothorax"].on_flag == "routine"
    assert recipe.catalogue["silicosis"].snomed == "805002"


def test_a_bad_recipe_findings_table_names_the_recipe_and_entry(tmp_path: Path) -> None:
    path = _recipe(tmp_path, '\n[[findings]]\ncode = "silicosis"\n')
    with pytest.raises(ConfigurationError, match=r"r\.toml: findings\[0\] \(silicosis\): .*snomed"):
        load_recipe(path)
