"""packager.toml: paths resolve against the file, every bad field is named with what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from packager.config import load_config, parse_config
from packager.errors import ConfigError

MINIMAL = {
    "project": {"name": "app", "version": "1.0.0"},
    "models": [
        {
            "name": "m",
            "source": "models/m.onnx",
            "input": {"size": [112, 112]},
            "evaluation": {"images": "data/eval"},
            "variants": ["fp16"],
        }
    ],
}


def _with_model(**changes: object) -> dict:
    model = {**MINIMAL["models"][0], **changes}
    return {**MINIMAL, "models": [model]}


def test_paths_resolve_relative_to_the_config_file(tmp_path: Path) -> None:
    config = parse_config(MINIMAL, tmp_path / "sub" / "packager.toml")
    assert config.models[0].source == (tmp_path / "sub" / "models" / "m.onnx").resolve()
    assert config.build.out == (tmp_path / "sub" / "dist").resolve()


def test_unknown_variant_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_with_model(variants=["int4"]), tmp_path / "p.toml")
    assert "unknown variant 'int4'; one of: fp16, int8-dynamic, int8-qdq, mixed" in str(err.value)


def test_bad_enum_names_field_value_and_choices(tmp_path: Path) -> None:
    data = _with_model(input={"size": [112, 112], "layout": "CHW"})
    with pytest.raises(ConfigError) as err:
        parse_config(data, tmp_path / "p.toml")
    message = str(err.value)
    assert "[models] 'm'.input.layout" in message and "'CHW'" in message and "NCHW" in message


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    data = _with_model(input={"size": [112, 112], "channels": "RGBA"}, gates={"min_mean_cosine": 2})
    with pytest.raises(ConfigError) as err:
        parse_config(data, tmp_path / "p.toml")
    assert len(err.value.problems) == 2


def test_typo_in_a_key_is_an_error_not_ignored(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[models\] 'm'\.varients: unknown key"):
        parse_config(_with_model(varients=["fp16"]), tmp_path / "p.toml")


def test_a_misspelt_key_suggests_the_closest_key_of_its_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_with_model(varients=["fp16"]), tmp_path / "p.toml")
    assert err.value.problems == [
        "[models] 'm'.varients: unknown key; did you mean 'variants'? (see README 'Configuration')"
    ]


def test_a_misspelt_key_in_a_nested_table_suggests_from_that_table(tmp_path: Path) -> None:
    data = _with_model(input={"size": [112, 112], "layot": "NHWC"}, task={"chek": "c.py:check"})
    with pytest.raises(ConfigError) as err:
        parse_config(data, tmp_path / "p.toml")
    assert err.value.problems == [
        "[models] 'm'.input.layot: unknown key; did you mean 'layout'? (see README 'Configuration')",
        "[models] 'm'.task.check: required but missing",
        "[models] 'm'.task.chek: unknown key; did you mean 'check'? (see README 'Configuration')",
    ]


def test_an_unknown_key_like_no_allowed_one_asks_to_check_the_spelling(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_with_model(zzz=1), tmp_path / "p.toml")
    assert err.value.problems == [
        "[models] 'm'.zzz: unknown key (check spelling; see README 'Configuration')"
    ]


def test_a_model_is_named_by_its_name_not_its_index(tmp_path: Path) -> None:
    second = {**MINIMAL["models"][0], "name": "face_detector", "varients": ["fp16"]}
    with pytest.raises(ConfigError, match=r"^\S+ \[models\] 'face_detector'\.varients: unknown key"):
        parse_config({**MINIMAL, "models": [MINIMAL["models"][0], second]}, tmp_path / "p.toml")


def test_a_model_without_a_name_is_named_by_its_position_counted_from_one(tmp_path: Path) -> None:
    unnamed = {k: v for k, v in MINIMAL["models"][0].items() if k != "name"}
    with pytest.raises(ConfigError) as err:
        parse_config({**MINIMAL, "models": [MINIMAL["models"][0], unnamed]}, tmp_path / "p.toml")
    assert err.value.problems == ["[models] #2.name: required but missing"]


def test_an_item_of_a_list_in_a_model_is_named_by_its_index_in_brackets(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_with_model(outputs=[{"name": "a", "knd": "dense"}]), tmp_path / "p.toml")
    assert err.value.problems == [
        "[models] 'm'.outputs[0].knd: unknown key; did you mean 'kind'? (see README 'Configuration')"
    ]


def test_static_variants_require_calibration(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"need a \[models\.calibration\]"):
        parse_config(_with_model(variants=["int8-qdq"]), tmp_path / "p.toml")


def test_mean_length_must_match_channels(tmp_path: Path) -> None:
    data = _with_model(input={"size": [112, 112], "channels": "RGB", "mean": [1, 2]})
    with pytest.raises(ConfigError, match="mean has 2 values"):
        parse_config(data, tmp_path / "p.toml")


def test_toml_syntax_error_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "packager.toml"
    path.write_text('[project]\nname = "a"\nversion = 1.0.0\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "line 3" in str(err.value) and "column" in str(err.value)


def test_missing_config_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_digest_ignores_formatting_but_not_values(tmp_path: Path) -> None:
    a = parse_config(MINIMAL, tmp_path / "p.toml")
    b = parse_config(_with_model(variants=["fp16"]), tmp_path / "p.toml")
    c = parse_config(_with_model(variants=["int8-dynamic"]), tmp_path / "p.toml")
    assert a.digest() == b.digest() != c.digest()


def test_digest_does_not_depend_on_where_the_project_lives(tmp_path: Path) -> None:
    a = parse_config(MINIMAL, tmp_path / "one" / "packager.toml")
    b = parse_config(MINIMAL, tmp_path / "two" / "packager.toml")
    assert a.digest() == b.digest()
    assert a.portable()["models"][0]["source"] == "models/m.onnx"


def test_parsing_does_not_modify_the_callers_data(tmp_path: Path) -> None:
    data = _with_model()
    parse_config(data, tmp_path / "p.toml")
    assert data["models"][0]["source"] == "models/m.onnx"


def test_evaluation_images_are_paths_relative_to_the_config(tmp_path: Path) -> None:
    config = parse_config(MINIMAL, tmp_path / "packager.toml")
    assert config.models[0].evaluation.images == (tmp_path / "data" / "eval").resolve()


def test_pairs_need_an_embedding_output(tmp_path: Path) -> None:
    data = _with_model(evaluation={"pairs": "pairs.txt"})
    with pytest.raises(ConfigError, match=r"no output is declared kind = \"embedding\""):
        parse_config(data, tmp_path / "p.toml")
    ok = _with_model(evaluation={"pairs": "pairs.txt"}, output={"kind": "embedding"})
    assert parse_config(ok, tmp_path / "p.toml").models[0].primary_output is None


def test_an_output_gate_its_kind_lacks_is_refused(tmp_path: Path) -> None:
    data = _with_model(outputs=[{"name": "heat", "kind": "dense", "gates": {"min_top1_agreement": 0.9}}])
    with pytest.raises(ConfigError, match=r"gates \['min_top1_agreement'\] do not apply to a dense output"):
        parse_config(data, tmp_path / "p.toml")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"output": {"kind": "dense"}, "outputs": [{"name": "a"}]}, "either `output`"),
        ({"outputs": [{"kind": "dense"}]}, r"outputs\[0\] needs a name"),
        ({"outputs": [{"name": "a"}, {"name": "a"}]}, "declared twice"),
        (
            {"outputs": [{"name": "a", "kind": "generic", "mask_threshold": 0.5}]},
            "mask_threshold is for dense",
        ),
    ],
)
def test_output_declarations_are_checked(tmp_path: Path, fields: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(_with_model(**fields), tmp_path / "p.toml")


def test_the_primary_output_is_the_first_declared(tmp_path: Path) -> None:
    data = _with_model(outputs=[{"name": "heat", "kind": "dense"}, {"name": "box", "kind": "dense"}])
    assert parse_config(data, tmp_path / "p.toml").models[0].primary_output == "heat"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"gates": {"max_auc_drop": 0.01}}, r"model gates \['max_auc_drop'\] need evaluation.pairs"),
        (
            {"outputs": [{"name": "p", "kind": "dense", "gates": {"min_mask_iou": 0.9}}]},
            "gate min_mask_iou needs a mask_threshold",
        ),
        ({"gates": {"min_top1_agreement": 0.99}}, "need an output declared kind classification or logits"),
    ],
)
def test_a_bar_that_could_judge_nothing_is_refused(tmp_path: Path, fields: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(_with_model(**fields), tmp_path / "p.toml")
