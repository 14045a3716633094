"""The CLI's contract: one clear line per error, the documented exit codes, nothing half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from packager.cli import main


def _dist_is_clean(config: Path) -> bool:
    """A failed build leaves nothing in the output folder, not even an empty ``dist/``."""
    return not (config.parent / "dist").exists()


def test_help_explains_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "build" in out and "check" in out and "Exit codes" in out


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out == f"packager {version('packager')}\n"


def test_corrupt_model_exits_1_with_one_line(tiny_project, capsys: pytest.CaptureFixture[str]) -> None:
    config = tiny_project()
    model = config.parent / "model.onnx"
    model.write_bytes(model.read_bytes()[:300])
    assert main(["build", str(config)]) == 1
    err = capsys.readouterr().err
    assert "model.onnx" in err and "Fix:" in err and "Traceback" not in err
    assert _dist_is_clean(config)


def test_text_file_named_onnx_via_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.onnx"
    path.write_text("<html>404</html>")
    assert main(["check", str(path)]) == 1
    assert "text file" in capsys.readouterr().err


def test_toml_syntax_error_exits_2_with_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "packager.toml"
    path.write_text("[project\nname='x'\n")
    assert main(["build", str(path)]) == 2
    assert "line 1" in capsys.readouterr().err


def test_unknown_variant_on_the_command_line_exits_2(
    tiny_project, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["build", str(tiny_project()), "--variants", "int4"]) == 2
    assert "one of: fp16, int8-dynamic, int8-qdq, mixed" in capsys.readouterr().err


def test_empty_calibration_folder_exits_1(tiny_project, capsys: pytest.CaptureFixture[str]) -> None:
    config = tiny_project()
    for image in (config.parent / "calib").iterdir():
        image.unlink()
    assert main(["build", str(config)]) == 1
    assert "calibration folder holds no images" in capsys.readouterr().err
    assert _dist_is_clean(config)


def test_pairs_with_missing_image_exits_1_naming_the_line(
    tiny_project, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tiny_project()
    pairs = config.parent / "eval" / "pairs.txt"
    pairs.write_text(pairs.read_text() + "id00_00.png nowhere.png 0\n")
    lines = len(pairs.read_text().splitlines())
    assert main(["build", str(config)]) == 1
    assert f"pairs.txt:{lines}: image 'nowhere.png' does not exist" in capsys.readouterr().err


def test_two_image_inputs_exit_1(tiny_project, capsys: pytest.CaptureFixture[str]) -> None:
    import model_factory

    config = tiny_project()
    model_factory.save(model_factory.two_image_inputs(), config.parent / "model.onnx")
    config.write_text(config.read_text().replace("size = [32, 32]", "size = [8, 8]"))
    assert main(["build", str(config)]) == 1
    assert "one preprocessing block" in capsys.readouterr().err


def test_gate_failure_exits_3_with_a_table(tiny_project, capsys: pytest.CaptureFixture[str]) -> None:
    config = tiny_project(min_cos=0.99999)
    assert main(["build", str(config)]) == 3
    out = capsys.readouterr()
    assert "release gates" in out.out and "FAIL" in out.out
    assert _dist_is_clean(config)


def test_second_build_reports_every_step_cached(tiny_project, capsys: pytest.CaptureFixture[str]) -> None:
    config = tiny_project(variants='["fp16"]')
    assert main(["build", str(config)]) == 0
    capsys.readouterr()
    assert main(["build", str(config)]) == 0
    out = capsys.readouterr().out
    # prepare, calibration-data, evaluation, validate fp32, analyze fp16 (its range audit), quantize, validate
    assert "7 steps (7 cached, 0 ran)" in out
    assert "unchanged since the last build" in out


def test_graph_prints_the_plan(tiny_project, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(tiny_project())]) == 0
    out = capsys.readouterr().out
    assert "quantize[embedder:mixed]" in out and "validate[embedder:fp32]" in out


def test_clean_removes_the_cache(tiny_project) -> None:
    config = tiny_project(variants='["fp16"]')
    assert main(["build", str(config)]) == 0
    assert main(["clean", str(config)]) == 0
    assert not (config.parent / ".packager-cache").exists()


def test_check_json_reports_the_graph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import model_factory

    path = model_factory.save(model_factory.mobilefacenet_like(batch="N"), tmp_path / "m.onnx")
    assert main(["check", "--json", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["op_histogram"]["Conv"] == 5 and report["inputs"][0]["shape"] == ["N", 3, 32, 32]


def test_report_rerenders_from_results_json(tiny_project) -> None:
    config = tiny_project(variants='["fp16"]')
    assert main(["build", str(config)]) == 0
    bundle = config.parent / "dist" / "tiny-0.1.0"
    original = (bundle / "report.md").read_text()
    (bundle / "report.md").unlink()
    assert main(["report", str(bundle)]) == 0
    assert (bundle / "report.md").read_text() == original


def test_report_refuses_a_results_json_the_manifest_does_not_list(
    tiny_project, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tiny_project(variants='["fp16"]')
    assert main(["build", str(config)]) == 0
    results = config.parent / "dist" / "tiny-0.1.0" / "results.json"
    results.write_text(results.read_text().replace('"passed": true', '"passed": false', 1))
    assert main(["report", str(results.parent)]) == 1
    assert "results.json: does not match the sha256 manifest.json lists" in capsys.readouterr().err


def test_bench_delegates_to_device_bench(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--help"]) == 0
    assert "device-bench" in capsys.readouterr().out


def test_verbose_flag_is_accepted_after_the_subcommand(
    tiny_project, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["build", str(tiny_project(variants='["fp16"]')), "-v"]) == 0
    assert "prepare[embedder] runs: first run" in capsys.readouterr().err


def _with_unused_initializers(config: Path, count: int) -> None:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(config.parent / "model.onnx"))
    for i in range(count):
        model.graph.initializer.append(numpy_helper.from_array(np.zeros(3, np.float32), f"unused_{i}"))
    onnx.save(model, str(config.parent / "model.onnx"))


def test_onnxruntime_native_warnings_stay_off_the_terminal(
    tiny_project, capfd: pytest.CaptureFixture[str]
) -> None:
    config = tiny_project(variants='["int8-dynamic"]')
    _with_unused_initializers(config, 5)
    assert main(["build", str(config)]) == 0
    assert "Removing initializer" not in capfd.readouterr().err


def test_third_party_warnings_go_to_the_build_log_not_the_terminal(
    tiny_project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging
    import warnings

    import packager.pipeline

    real = packager.pipeline.build_project

    def chatty(*args: object, **kwargs: object) -> object:
        for i in range(3):
            logging.getLogger("onnxconverter_common").warning("value %d truncated", i)
        warnings.warn("a converter's UserWarning", UserWarning, stacklevel=1)
        logging.getLogger("packager.test").warning("our own warning")
        return real(*args, **kwargs)

    monkeypatch.setattr(packager.pipeline, "build_project", chatty)
    config = tiny_project(variants='["fp16"]')
    assert main(["build", str(config)]) == 0
    err = capsys.readouterr().err
    assert "truncated" not in err and "UserWarning" not in err and "our own warning" in err
    log = (config.parent / ".packager-cache" / "logs" / "build.log").read_text()
    assert "value 2 truncated" in log and "a converter's UserWarning" in log


def test_missing_model_file_is_said_in_user_words(tiny_project, capsys: pytest.CaptureFixture[str]) -> None:
    config = tiny_project()
    (config.parent / "model.onnx").unlink()
    assert main(["build", str(config)]) == 1
    err = capsys.readouterr().err
    assert "model.onnx: model file not found" in err and "Fix:" in err
    assert "step" not in err.split("build log:")[0] and "hash" not in err
    assert _dist_is_clean(config)


def test_check_json_carries_the_notes_the_text_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import model_factory

    source = model_factory.with_initializers_as_inputs(model_factory.mobilefacenet_like(batch="N", opset=11))
    path = model_factory.save(source, tmp_path / "m.onnx")
    assert main(["check", str(path)]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert main(["check", "--json", str(path)]) == 0
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert [n["code"] for n in notes] == ["initializers-as-inputs", "dynamic-dims", "opset-below-13"]
    assert text.count("note:") == len(notes)
    for note in notes:
        assert f"note: {note['message']}; fix: {note['fix']}" in text


def test_check_json_counts_parameters_in_constant_nodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import model_factory
    from test_graph import constant_weights

    path = model_factory.save(constant_weights(), tmp_path / "m.onnx")
    assert main(["check", "--json", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    fields = ("parameters", "parameters_in_initializers", "parameters_in_constant_nodes")
    assert [report[f] for f in fields] == [115, 4, 111]


def test_a_failed_rebuild_says_the_bundle_left_in_dist_is_an_earlier_one(
    tiny_project, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tiny_project(variants='["int8-dynamic"]')
    assert main(["build", str(config)]) == 0
    manifest = (config.parent / "dist" / "tiny-0.1.0" / "manifest.json").read_bytes()
    config.write_text(config.read_text().replace("min_mean_cosine = 0.9,", "min_mean_cosine = 0.999999,"))
    capsys.readouterr()
    assert main(["build", str(config)]) == 3
    assert "tiny-0.1.0 is from an earlier build and was left as it was" in capsys.readouterr().err
    assert (config.parent / "dist" / "tiny-0.1.0" / "manifest.json").read_bytes() == manifest


def test_the_build_log_keeps_no_third_party_debug_chatter(tiny_project) -> None:
    import logging

    import packager.pipeline

    config = tiny_project(variants='["fp16"]')
    real = packager.pipeline.build_project

    def chatty(*args: object, **kwargs: object) -> object:
        logging.getLogger("matplotlib.font_manager").debug("findfont: score(...) = 10.05")
        logging.getLogger("packager.test").debug("our own detail")
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(packager.pipeline, "build_project", chatty)
        assert main(["build", str(config)]) == 0
    log = (config.parent / ".packager-cache" / "logs" / "build.log").read_text()
    assert "findfont" not in log and "our own detail" in log


def test_an_unknown_model_or_platform_for_a_subset_exits_2_naming_it(
    tiny_project, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tiny_project(variants='["fp16"]')
    assert main(["build", str(config), "--models", "embeder", "--platforms", "ios"]) == 2
    err = capsys.readouterr().err
    assert "--models: no model named 'embeder' (the config has embedder)" in err
    assert "--platforms: no [ios] table in the config" in err
