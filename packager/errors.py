"""One error hierarchy for the whole tool.

The library raises; only the CLI maps an error to an exit code and prints it. Each subclass builds its
message in ``__init__`` so that every raise site names the file or field *and* the fix.
"""

from __future__ import annotations

from pathlib import Path


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text, or its type name when it has none.

    Tools written in C++ (onnx, onnxruntime, LiteRT) put stack frames and source locations after
    the sentence that says what went wrong; a one-line error keeps that sentence.
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PackagerError(Exception):
    """Root of every error packager raises on purpose."""

    exit_code = 1


class ConfigError(PackagerError):
    """The config file or a command-line option is wrong; the user must edit it."""

    exit_code = 2

    def __init__(self, source: Path | str, problems: list[str]) -> None:
        self.source = str(source)
        self.problems = problems
        joined = "; ".join(problems)
        super().__init__(f"{source}: {joined}")


class ModelError(PackagerError):
    """The ONNX model cannot be used as given."""

    def __init__(self, path: Path | str, problem: str, fix: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: {problem}. Fix: {fix}")


class DataError(PackagerError):
    """Calibration or evaluation data is missing or malformed."""

    def __init__(self, path: Path | str, problem: str, fix: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: {problem}. Fix: {fix}")


class StepError(PackagerError):
    """A build step (quantization, conversion, inference) failed inside a real tool."""

    def __init__(self, step: str, problem: str, fix: str) -> None:
        self.step = step
        super().__init__(f"step {step} failed: {problem}. Fix: {fix}")


class ConversionError(StepError):
    """A real tool (converter, quantizer, runtime) failed on a model that checks clean.

    Fails the one variant or artifact it was making, not the build: the message names the tool, the
    node when known, and the cause, so the user can tell a tool bug from a problem in their model.
    """

    def __init__(self, step: str, tool: str, problem: str, fix: str, node: str | None = None) -> None:
        self.tool = tool
        self.node = node
        where = f" at node {node!r}" if node else ""
        super().__init__(step, f"{tool} failed{where}: {problem}", fix)


class OutputError(PackagerError):
    """The output location cannot be written."""

    def __init__(self, path: Path | str, problem: str, fix: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: {problem}. Fix: {fix}")


class BuildRejected(PackagerError):
    """The build ran and will not ship: ``failures`` say why, one line each; ``report`` is the
    rejected build's report and ``result`` its ``BuildResult``."""

    def __init__(
        self,
        headline: str,
        failures: list[str],
        lead: str,
        separator: str,
        report: Path | None,
        result: object,
    ) -> None:
        self.failures = failures
        self.report = report
        self.result = result
        where = f" (report: {report})" if report else ""
        super().__init__(f"{headline}{where}:{lead}" + separator.join(failures))


class GateFailed(BuildRejected):
    """Validation ran, and at least one release gate is not met."""

    exit_code = 3

    def __init__(self, failures: list[str], report: Path | None = None, result: object = None) -> None:
        super().__init__("release gates failed", failures, " ", "; ", report, result)


class VariantsFailed(BuildRejected):
    """Required variants could not be built or validated; the others were, and the report says so."""

    def __init__(self, failures: list[str], report: Path | None = None, result: object = None) -> None:
        super().__init__(
            f"{len(failures)} required variant(s) failed", failures, "\n  ", "\n  ", report, result
        )


class UnknownName(ConfigError):
    """A registry lookup missed; the message lists what is valid."""

    def __init__(self, kind: str, name: str, valid: list[str]) -> None:
        super().__init__(kind, [f"unknown {kind} {name!r}; one of: {', '.join(sorted(valid))}"])
