"""The CI example, examples/ci/: its workflows are valid GitHub Actions workflows, checked against
SchemaStore's github-workflow schema as vendored by check-jsonschema (offline); every `packager ...`
command they run parses with packager's own CLI parser, so the workflows cannot drift from the CLI;
their matrix is the example's models x platforms; every action is pinned to a commit and given only
inputs it declares; and the release job's shell scripts, run with stubs for packager and aws, fail on a
gate and still collect the report for upload."""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from packager.cli import _parser
from packager.target import installed_targets

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_DIR = ROOT / "examples" / "ci" / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.yml"))
PLACEHOLDER = "EXPR"
"""What a `${{ ... }}` expression other than a matrix value or an env value stands for in a command."""

# The inputs each pinned action declares, from its action.yml at that commit. Bumping an action means
# replacing its entry: a `with:` key an action does not declare is only a warning on GitHub, and the
# workflow schema does not know the actions.
ACTION_INPUTS: dict[str, set[str]] = {
    "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1": {  # v7.0.1
        "allow-unsafe-pr-checkout", "clean", "fetch-depth", "fetch-tags", "filter", "github-server-url",
        "lfs", "path", "persist-credentials", "ref", "repository", "set-safe-directory", "show-progress",
        "sparse-checkout", "sparse-checkout-cone-mode", "ssh-key", "ssh-known-hosts", "ssh-strict",
        "ssh-user", "submodules", "token",
    },
    "actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97": {  # v7.0.0
        "allow-prereleases", "architecture", "cache", "cache-dependency-path", "check-latest",
        "freethreaded", "pip-version", "python-version", "python-version-file", "token",
        "update-environment",
    },
    "actions/cache@27d5ce7f107fe9357f9df03efb73ab90386fccae": {  # v5.0.5
        "enableCrossOsArchive", "fail-on-cache-miss", "key", "lookup-only", "path", "restore-keys",
        "save-always", "upload-chunk-size",
    },
    "actions/upload-artifact@bbbca2ddaa5d8feaa63e36b76fdaad77386f024f": {  # v7.0.0
        "archive", "compression-level", "if-no-files-found", "include-hidden-files", "name", "overwrite",
        "path", "retention-days",
    },
    "actions/download-artifact@3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c": {  # v8.0.1
        "artifact-ids", "digest-mismatch", "github-token", "merge-multiple", "name", "path", "pattern",
        "repository", "run-id", "skip-decompress",
    },
    "aws-actions/configure-aws-credentials@e6de054238d6b7531b4efff3b6587d9aade6a06c": {  # v6.2.3
        "action-timeout-s", "allowed-account-ids", "audience", "aws-access-key-id", "aws-profile",
        "aws-region", "aws-secret-access-key", "aws-session-token", "custom-tags", "disable-retry",
        "force-skip-oidc", "http-proxy", "inline-session-policy", "managed-session-policies",
        "mask-aws-account-id", "no-proxy", "output-credentials", "output-env-credentials",
        "overwrite-aws-profile", "retry-max-attempts", "role-chaining", "role-duration-seconds",
        "role-external-id", "role-session-name", "role-skip-session-tagging", "role-to-assume",
        "special-characters-workaround", "sts-endpoint", "transitive-tag-keys",
        "unset-current-credentials", "use-existing-credentials", "web-identity-token-file",
    },
}  # fmt: skip


def _load(path: Path) -> dict[str, Any]:
    """YAML 1.2 (ruamel, what check-jsonschema parses with): `on:` stays a string key."""
    return YAML(typ="safe", pure=True).load(path.read_text())


def _schema_errors(paths: list[Path]) -> dict[str, list[str]]:
    """check-jsonschema's verdict on each file against its vendored github-workflows schema:
    {file name: ["<json path>: <message>", ...]} for the files that fail."""
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows"),
            *("--output-format", "json", *map(str, paths)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr  # 1 = invalid; anything else is a usage error
    result = json.loads(proc.stdout)
    errors: dict[str, list[str]] = {}
    for error in result["errors"]:
        match = error.get("best_deep_match") or error
        errors.setdefault(error["filename"], []).append(f"{match['path']}: {match['message']}")
    for error in result.get("parse_errors", []):
        errors.setdefault(error["filename"], []).append(f"parse error: {error['message']}")
    return errors


# ---- the `packager ...` command lines of the workflows' run: steps


@dataclass(frozen=True)
class Command:
    where: str
    """workflow:job:step[matrix values], for the test id and the failure message."""
    argv: list[str]
    """After `packager`, with expressions and the workflow's env variables expanded."""
    line: tuple[str, int, int]
    """(job, step index, line of the step's script): the same for each matrix value."""


_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_SHELL_PREFIX = {"if", "then", "elif", "else", "do", "!", "time", "exec"}


def _expand_expressions(text: str, values: dict[str, str]) -> str:
    return _EXPRESSION.sub(lambda m: values.get(m.group(1), PLACEHOLDER), text)


def _expand_variables(word: str, env: dict[str, str]) -> str:
    """$NAME and ${NAME} of the workflow's env; the runner's own ($RUNNER_TEMP...) stay as they are."""
    return _VARIABLE.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), word)


def _matrix_combinations(job: dict[str, Any]) -> list[dict[str, str]]:
    """The job's matrix values: the cross product of its lists, plus each `include` entry on its own."""
    matrix = dict((job.get("strategy") or {}).get("matrix") or {})
    include = matrix.pop("include", [])
    matrix.pop("exclude", None)
    keys = list(matrix)
    combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*matrix.values())]
    return combos + list(include) if keys or include else [{}]


def _script_lines(script: str) -> list[str]:
    return script.replace("\\\n", " ").splitlines()


def _shell_commands(script: str) -> Iterator[tuple[int, list[str]]]:
    """Each simple command of a bash script with its line, as words (quotes removed, nothing
    expanded), from the lines that mention packager; heredoc bodies and comments are not commands."""
    for number, line in enumerate(_script_lines(script)):
        if not re.search(r"(^|[\s;&|(!])packager\s", line):
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words: list[str] = []
        for token in [*lexer, ";"]:
            if token and set(token) <= set(lexer.punctuation_chars):  # ; && || | ( ) < >
                while words and (words[0] in _SHELL_PREFIX or re.fullmatch(r"\w+=.*", words[0])):
                    words.pop(0)
                if words:
                    yield number, words
                words = []
            else:
                words.append(token)


def _packager_commands(path: Path) -> Iterator[Command]:
    workflow = _load(path)
    for job_id, job in workflow["jobs"].items():
        for combo in _matrix_combinations(job):
            values = {f"matrix.{key}": str(value) for key, value in combo.items()}
            env: dict[str, str] = {}
            for scope in (workflow, job):
                env |= {k: _expand_expressions(str(v), values) for k, v in (scope.get("env") or {}).items()}
            for index, step in enumerate(job["steps"]):
                if "run" not in step:
                    continue
                step_env = env | {
                    k: _expand_expressions(str(v), values) for k, v in (step.get("env") or {}).items()
                }
                scope_values = values | {f"env.{k}": v for k, v in step_env.items()}
                script = _expand_expressions(step["run"], scope_values)
                for number, words in _shell_commands(script):
                    if words[0] != "packager":
                        continue
                    argv = [_expand_variables(word, step_env) for word in words[1:]]
                    raw_name = step.get("name", f"step {index}")
                    name = _expand_expressions(raw_name, values)
                    if combo and name == raw_name:  # tell the matrix jobs apart
                        name += f"[{','.join(map(str, combo.values()))}]"
                    where = f"{path.stem}:{job_id}:{name}"
                    yield Command(where, argv, (job_id, index, number))


COMMANDS = [command for path in WORKFLOWS for command in _packager_commands(path)]


# ---- the tests


def test_the_example_has_both_workflows() -> None:
    assert [p.name for p in WORKFLOWS] == ["release-actions-cache.yml", "release.yml"]


def test_workflows_match_the_github_workflow_schema() -> None:
    assert _schema_errors(WORKFLOWS) == {}


@pytest.mark.parametrize(
    ("typo", "fixed", "where"),
    [
        ("    runs-on: ubuntu-24.04", "    run-on: ubuntu-24.04", "$.jobs.build"),  # a job key
        ("concurrency:", "concurency:", "$"),  # a top-level key
        ("      - uses: actions/checkout@", "      - use: actions/checkout@", "$.jobs.build.steps[0]"),
    ],
    ids=["job-key", "top-level-key", "step-key"],
)
def test_schema_check_rejects_a_typo(tmp_path: Path, typo: str, fixed: str, where: str) -> None:
    """The schema check can fail: one mistyped key makes the workflow invalid, and the error says where."""
    text = (WORKFLOW_DIR / "release.yml").read_text()
    assert typo in text
    mutant = tmp_path / "release.yml"
    mutant.write_text(text.replace(typo, fixed, 1))
    errors = _schema_errors([mutant])
    assert list(errors) == [str(mutant)]
    assert any(error.startswith(f"{where}:") for error in errors[str(mutant)]), errors


def _parse_error(argv: list[str]) -> str | None:
    """What packager's argument parser says about `packager ARGV` (None: it parses). Options must be
    spelled in full: an abbreviation that parses today (`--platform` for `--platforms`) becomes
    ambiguous the day another option shares the prefix."""
    parser = _parser()
    parsers = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers += action.choices.values()
    for each in parsers:
        each.allow_abbrev = False
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parser.parse_args(argv)
    except SystemExit as exc:
        return f"exit {exc.code}: {stderr.getvalue().strip().splitlines()[-1]}"
    return None


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_packager_command_parses(command: Command) -> None:
    """Every `packager ...` line the workflows run is accepted by packager's own argument parser."""
    error = _parse_error(command.argv)
    assert error is None, f"{command.where}: `packager {shlex.join(command.argv)}` does not parse: {error}"


@pytest.mark.parametrize(
    "argv",
    [["build", "packager.toml", "--no-gate"], ["verify"], ["buidl", "packager.toml"]],
    ids=["abbreviated-option", "missing-argument", "unknown-command"],
)
def test_parse_check_rejects_a_wrong_command(argv: list[str]) -> None:
    assert _parse_error(argv) is not None


def test_the_workflows_run_build_verify_and_publish() -> None:
    """The command search finds what the workflows run (so the parse test above is not vacuous): per
    workflow, a subset build per matrix job, the release build, verify and publish."""
    for path in WORKFLOWS:
        lines = [
            line
            for job in _load(path)["jobs"].values()
            for step in job["steps"]
            for line in _script_lines(step.get("run", ""))
            if re.match(r"\s*packager\s", line)
        ]
        found = [c for c in COMMANDS if c.where.startswith(f"{path.stem}:")]
        assert {"build", "verify", "publish"} <= {c.argv[0] for c in found}, path.name
        assert len({c.line for c in found}) == len(lines), path.name


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_matrix_is_the_example_models_times_platforms(path: Path) -> None:
    """The build matrix lists exactly the [[models]] and platform tables of the config it builds."""
    workflow = _load(path)
    config_path = ROOT / workflow["env"]["CONFIG"]
    config = tomllib.loads(config_path.read_text())
    matrix = workflow["jobs"]["build"]["strategy"]["matrix"]
    assert sorted(matrix["model"]) == sorted(model["name"] for model in config["models"])
    assert sorted(matrix["platform"]) == sorted(set(config) & set(installed_targets()))
    commands = [c for c in COMMANDS if c.where.startswith(f"{path.stem}:build:") and c.argv[0] == "build"]
    assert all(c.argv[1] == workflow["env"]["CONFIG"] for c in commands)
    legs = [(c.argv[c.argv.index("--models") + 1], c.argv[c.argv.index("--platforms") + 1]) for c in commands]
    assert sorted(legs) == sorted(itertools.product(matrix["model"], matrix["platform"]))


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_actions_are_pinned_and_given_declared_inputs(path: Path) -> None:
    """Every `uses:` is a full commit SHA with its tag in a comment, of an action whose inputs we know."""
    for line in path.read_text().splitlines():
        if "uses:" in line:
            assert re.fullmatch(r"\s*(- )?uses: [\w-]+/[\w-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+", line), line
    for job in _load(path)["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert step["uses"] in ACTION_INPUTS, f"{step['uses']}: add its inputs to ACTION_INPUTS"
                unknown = set(step.get("with") or {}) - ACTION_INPUTS[step["uses"]]
                assert not unknown, f"{step['uses']} has no input {sorted(unknown)}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_release_job_publishes_on_tags_and_always_uploads_the_report(path: Path) -> None:
    release = _load(path)["jobs"]["release"]
    assert release["needs"] == "build"
    steps = {step.get("name", ""): step for step in release["steps"]}
    assert "refs/tags/" in steps["Publish the release"]["if"]
    for name in ("Collect the report", "Upload the report"):
        assert "always()" in steps[name]["if"], name
    assert "/rejected/$BUNDLE/" in steps["Collect the report"]["run"]
    assert steps["Upload the report"]["with"]["path"] == "report/"


_S3_AS_FOLDER = 'local() { case "$1" in s3://*) echo "$S3_ROOT/${1#s3://}" ;; *) echo "$1" ;; esac; }\n'
STUBS = {
    # `packager build ... --cache C --out O` as a real build ends: exit 0 with the bundle in O, or exit 3
    # (a gate failed) with no bundle and the rejected build's report under C/rejected/<name>-<version>/.
    "packager": "#!/bin/bash\n"
    + _S3_AS_FOLDER
    + """[ "$1" = build ] || exit 0
while [ $# -gt 0 ]; do case "$1" in --cache) cache=$(local "$2") ;; --out) out=$2 ;; esac; shift; done
if [ "$STUB_STATUS" = 0 ]; then
  mkdir -p "$out/faceid-1.4.0"
  for f in report.md report.html manifest.json android.zip; do echo "$f" > "$out/faceid-1.4.0/$f"; done
else
  mkdir -p "$cache/rejected/faceid-1.4.0"
  for f in report.md report.html results.json; do echo "$f" > "$cache/rejected/faceid-1.4.0/$f"; done
fi
exit "$STUB_STATUS"
""",
    # `aws s3 cp --recursive s3://B/K/ DIR`; like aws, a prefix with nothing under it copies nothing.
    "aws": "#!/bin/bash\n"
    + _S3_AS_FOLDER
    + """[ "$1 $2 $3" = "s3 cp --recursive" ] || exit 2
src=$(local "$4")
mkdir -p "$5"
if [ -d "$src" ]; then cp -R "$src/." "$5"; fi
""",
}


@pytest.mark.parametrize(
    ("status", "report"),
    [(0, {"report.md", "report.html", "manifest.json"}), (3, {"report.md", "report.html", "results.json"})],
    ids=["released", "gate-failed"],
)
@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_release_job_scripts_fail_on_a_gate_and_keep_its_report(
    tmp_path: Path, path: Path, status: int, report: set[str]
) -> None:
    """Run the release job's own scripts with bash as the runner does (`bash -e`), packager and aws
    replaced by stubs (an S3 bucket is a folder): exit 3 fails the build step, and the report collected
    for upload is the bundle's or, for a rejected build, the one kept in the cache."""
    (tmp_path / "bin").mkdir()
    for name, text in STUBS.items():
        (tmp_path / "bin" / name).write_text(text)
        (tmp_path / "bin" / name).chmod(0o755)
    workflow = _load(path)
    config = tmp_path / workflow["env"]["CONFIG"]
    config.parent.mkdir(parents=True)
    config.write_text((ROOT / workflow["env"]["CONFIG"]).read_text())
    env = {k: _expand_expressions(v, {"github.workspace": str(tmp_path)}) for k, v in workflow["env"].items()}
    env |= {
        "PATH": f"{tmp_path / 'bin'}:{Path(sys.executable).parent}:/usr/bin:/bin",
        "S3_ROOT": str(tmp_path / "s3"),
        "STUB_STATUS": str(status),
    }
    outputs: dict[str, dict[str, str]] = {}
    codes: dict[str, int] = {}
    steps = {step.get("name"): step for step in workflow["jobs"]["release"]["steps"]}
    for name in ("Name the bundle", "Build and gate the release", "Collect the report"):
        step = steps[name]
        github_output = tmp_path / "github_output"
        github_output.write_text("")
        values = {f"steps.{id_}.outputs.{k}": v for id_, out in outputs.items() for k, v in out.items()}
        step_env = {k: _expand_expressions(v, values) for k, v in (step.get("env") or {}).items()}
        proc = subprocess.run(
            ["bash", "-e", "-c", step["run"]],
            cwd=tmp_path,
            env=env | step_env | {"GITHUB_OUTPUT": str(github_output)},
            capture_output=True,
            text=True,
            check=False,
        )
        codes[name] = proc.returncode
        if "id" in step:
            outputs[step["id"]] = dict(line.split("=", 1) for line in github_output.read_text().splitlines())
    assert outputs["bundle"] == {"name": "faceid-1.4.0", "version": "1.4.0"}
    assert codes == {"Name the bundle": 0, "Build and gate the release": status, "Collect the report": 0}
    assert outputs["build"] == {"status": str(status)}
    assert {p.name for p in (tmp_path / "report").iterdir()} == report
