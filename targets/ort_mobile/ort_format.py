"""ONNX -> ORT format with onnxruntime's own converter, and the rule tying it to the runtime the app ships.

* :func:`convert_to_ort` runs ``onnxruntime.tools.convert_onnx_models_to_ort`` (the function behind
  ``python -m onnxruntime.tools.convert_onnx_models_to_ort``) on a scratch copy of the model, for one
  optimization style and ``target_platform="arm"`` by default (DESIGN §5.9: ``amd64`` bakes in x86-only
  ops). It keeps the ``required_operators*.config`` the converter writes, which a reduced ORT build takes
  with ``--include_ops_by_config``.
* :func:`check_runtime_version` enforces DESIGN §5.22: an ORT runtime loads .ort files written by its own
  or an older converter, not by a newer one, so the app's runtime must not be older than the converter.

**Styles** (the converter's ``--optimization_style`` help): ``Fixed`` bakes every optimization for the
CPU EP into the file (Conv+Relu becomes ``com.microsoft:FusedConv``, QDQ groups become ``QLinearConv``,
``QGemm``...); ``Runtime`` bakes only the basic ones and saves the rest as records that a session replays
at load for the nodes the CPU EP ends up with. ORT's guidance: ``Runtime`` with NNAPI or CoreML, ``Fixed``
otherwise. A session applies saved runtime optimizations only at graph optimization level ``extended`` or
higher (measured with onnxruntime 1.23.0: at ``basic`` a Runtime-style QDQ model keeps its
QuantizeLinear/DequantizeLinear nodes; at ``extended`` they become QLinearConv/QGemm).

**Determinism** (measured, onnxruntime 1.23.0): two conversions of the same model write .ort files of the
same size whose bytes differ. The graph is the same; what moves is the kernel-type-string table, which
``KernelTypeStrResolver::SaveToOrtFormat`` (onnxruntime/core/framework/kernel_type_str_resolver.cc)
serializes while iterating an ``InlinedHashMap`` (absl ``flat_hash_map``), whose order is seeded per
process and per table. No session config key changes that, so :func:`convert_to_ort` rewrites that table
in sorted order (:mod:`targets.ort_mobile.canonical`): the same model gives the same bytes, in any folder.
A file it cannot rewrite (a layout another converter version might write) is kept as written and its
:attr:`OrtConversion.nondeterminism` says why. :func:`ort_graph_sha256` hashes the graph that onnxruntime
loads from the file (re-saved as ONNX with optimizations off), which is the same for every conversion of
one model whatever its bytes. The converter also writes the absolute paths of the models it read (one a
temporary folder) as comments into the .config; they are rewritten to file names.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from packager.errors import ConfigError, ConversionError, ModelError
from packager.validate.runners import ort_cause

log = logging.getLogger(__name__)

TOOL = "onnxruntime convert_onnx_models_to_ort"
Style = Literal["Fixed", "Runtime"]
TargetPlatform = Literal["arm", "amd64"]


@dataclass(frozen=True)
class RuntimePin:
    """One ORT runtime package an app can ship, pinned, and where the pin was checked."""

    package: str
    """Maven coordinate, pod name or Swift package URL."""
    version: str
    """The onnxruntime version the package carries."""
    reference: str
    """What the app's build file names: a version, or a git revision when no tag exists."""
    source: str
    note: str = ""


ANDROID_RUNTIME = RuntimePin(
    package="com.microsoft.onnxruntime:onnxruntime-android",
    version="1.23.0",
    reference="1.23.0",
    # 1.23.0, 1.23.1 and 1.23.2 are all resolved by public Gradle builds (GitHub code search, Dec 2026);
    # 1.23.0 is the release the host converter (onnxruntime==1.23.0 in pyproject.toml) belongs to.
    source="Maven Central com.microsoft.onnxruntime:onnxruntime-android (1.23.0, 1.23.1, 1.23.2 published)",
)
IOS_COCOAPODS = RuntimePin(
    package="onnxruntime-objc",
    version="1.23.0",
    reference="1.23.0",
    # `pod 'onnxruntime-objc', '1.23.0'` resolves from CocoaPods trunk in public Podfiles; no 1.23.1/1.23.2
    # pod was found. onnxruntime-c (the C/C++ pod) carries the same binaries.
    source="CocoaPods trunk onnxruntime-objc 1.23.0 (and onnxruntime-c 1.23.0)",
)
IOS_SWIFT_PACKAGE = RuntimePin(
    package="https://github.com/microsoft/onnxruntime-swift-package-manager",
    version="1.24.2",
    reference="1.24.2",
    # Tags in that repository: v1.15.0 ... v1.19.2, 1.20.0, 1.24.1, 1.24.2 -- none for 1.21-1.23. The
    # untagged commit b2e6c9d ("Update ONNX Runtime to 1.23.0") carries ORT 1.23.0, but its Objective-C
    # wrapper is still the 1.20 copy without appendCoreMLExecutionProviderWithOptionsV2 (ModelFormat,
    # MLComputeUnits, ModelCacheDirectory); tags 1.24.1 and 1.24.2 have it. A newer runtime loads .ort
    # files from an older converter (DESIGN §5 pitfall 22), so 1.24.2 runs the 1.23.0 converter's files.
    source="github.com/microsoft/onnxruntime-swift-package-manager tag 1.24.2 (ORT 1.24.2; no 1.23 tag)",
    note=(
        "library product 'onnxruntime', Swift module OnnxRuntimeBindings; chosen over the untagged 1.23.0 "
        "commit b2e6c9d, whose Objective-C API has no appendCoreMLExecutionProviderWithOptionsV2"
    ),
)


@dataclass(frozen=True)
class RequiredOps:
    """One line of a ``required_operators.config``: ops of ``domain`` at ``opset``."""

    domain: str
    opset: int
    ops: tuple[str, ...]


@dataclass(frozen=True)
class OrtConversion:
    """One .ort file written by :func:`convert_to_ort`, with what made it."""

    ort_path: Path
    config_path: Path
    """The converter's ``<stem>.required_operators[.with_runtime_opt].config`` (reduced-build op list)."""
    style: Style
    target_platform: TargetPlatform
    converter_version: str
    """``onnxruntime.__version__`` of the converter: the app's runtime must be at least this
    (:func:`check_runtime_version`)."""
    ort_format_version: str
    """The ORT flatbuffer format version recorded in the file ("6" for onnxruntime 1.23)."""
    required_ops: tuple[RequiredOps, ...]
    size_bytes: int
    graph_sha256: str
    """:func:`ort_graph_sha256` of the file: the same for every conversion of the same model."""
    seconds: float
    nondeterminism: str | None = None
    """Why another conversion of the same model may give other bytes (the file could not be rewritten
    canonically, see the module docstring); ``None``: it gives the same bytes."""


# --- conversion ----------------------------------------------------------------------------------


def convert_to_ort(
    onnx_path: Path,
    out_dir: Path,
    style: Style = "Fixed",
    target_platform: TargetPlatform = "arm",
) -> OrtConversion:
    """Convert ``onnx_path`` to ``out_dir/<stem>.ort`` (``<stem>.with_runtime_opt.ort`` for ``Runtime``)
    plus its ``required_operators`` config, with onnxruntime's own converter.

    The converter reads a scratch copy (it would otherwise create a temporary folder beside the source for
    the Runtime style, and it converts every .onnx in a folder); its console output goes to the log at
    DEBUG. Raises :class:`ModelError` when ``onnx_path`` is not an .onnx file, :class:`ConversionError`
    (naming the node and op when onnxruntime does) when onnxruntime cannot load or optimize the model.
    """
    import time

    import onnxruntime as ort
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    if not onnx_path.is_file() or onnx_path.suffix.lower() != ".onnx":
        raise ModelError(onnx_path, "not an .onnx file", "point to the ONNX model to convert")
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".ort-convert-", dir=out_dir) as scratch:
        model = _scratch_copy(onnx_path, Path(scratch) / "in")
        written = Path(scratch) / "out"
        console = io.StringIO()
        try:
            with contextlib.redirect_stdout(console):
                convert_onnx_models_to_ort(
                    model,
                    output_dir=written,
                    optimization_styles=[OptimizationStyle[style]],
                    target_platform=target_platform,
                )
        except Exception as exc:  # onnxruntime raises several pybind exception types
            raise _conversion_error(exc, model, onnx_path.name) from None
        finally:
            for line in console.getvalue().splitlines():
                log.debug("%s: %s", TOOL, line)
        ort_file = _one(written, "*.ort")
        config = _one(written, "*.config")
        ort_path = out_dir / ort_file.name
        config_path = out_dir / config.name
        nondeterminism = _write_canonical(ort_file, ort_path)
        config_path.write_text(_config_without_paths(config.read_text()))
    conversion = OrtConversion(
        ort_path=ort_path,
        config_path=config_path,
        style=style,
        target_platform=target_platform,
        converter_version=ort.__version__,
        ort_format_version=ort_format_version(ort_path),
        required_ops=read_required_ops(config_path),
        size_bytes=ort_path.stat().st_size,
        graph_sha256=ort_graph_sha256(ort_path),
        seconds=time.perf_counter() - start,
        nondeterminism=nondeterminism,
    )
    log.info(
        "%s -> %s (%s, %s, %d bytes, %.2f s)",
        onnx_path.name,
        ort_path.name,
        style,
        target_platform,
        conversion.size_bytes,
        conversion.seconds,
    )
    return conversion


def _write_canonical(written: Path, ort_path: Path) -> str | None:
    """Write the converter's ``written`` file to ``ort_path`` with its kernel-type-string table in sorted
    order; returns why not when its layout is not the one :mod:`targets.ort_mobile.canonical` rewrites."""
    import onnxruntime as ort

    from targets.ort_mobile.canonical import canonical_ort

    canonical = canonical_ort(written.read_bytes())
    ort_path.write_bytes(canonical.data)
    if canonical.problem is None:
        return None
    log.warning("%s: %s kept as the converter wrote it: %s", TOOL, ort_path.name, canonical.problem)
    return (
        f"onnxruntime {ort.__version__}'s converter writes its kernel-type-string table in hash-map order "
        f"(absl flat_hash_map, seeded per process), and this file could not be rewritten in sorted order: "
        f"{canonical.problem}"
    )


def _scratch_copy(model: Path, folder: Path) -> Path:
    """``model`` and the external-data files it names, copied into ``folder``."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    folder.mkdir()
    copy = folder / model.name
    shutil.copyfile(model, copy)
    try:
        proto = onnx.load(str(model), load_external_data=False)
    except Exception:  # not a readable protobuf: let the converter say so in its own words
        return copy
    for tensor in proto.graph.initializer:
        if uses_external_data(tensor):
            location = next(e.value for e in tensor.external_data if e.key == "location")
            target = folder / location
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(model.parent / location, target)
    return copy


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise ConversionError(
            "convert to ORT format",
            TOOL,
            f"expected one {pattern} file, found {[p.name for p in found]}",
            "report this: the converter's output layout changed (onnxruntime upgrade?)",
        )
    return found[0]


_NODE = (re.compile(r"node with name '([^']+)'"), re.compile(r"in node \(([^)]+)\)"))
_OP = (re.compile(r"implementation for (\w+)\(\d+\)"), re.compile(r"Optype \((\w+)\)"))


def _conversion_error(exc: Exception, model: Path, label: str) -> ConversionError:
    """One-line :class:`ConversionError` from an onnxruntime load/optimize failure, node and op named."""
    cause = ort_cause(exc, model, label).rstrip(".")
    node = next((m.group(1) for p in _NODE if (m := p.search(cause))), None)
    op = next((m.group(1) for p in _OP if (m := p.search(cause))), None)
    if op and "Could not find an implementation" in cause:
        fix = (
            f"onnxruntime's CPU EP has no kernel for {op} with these input types: change the model or the "
            "quantization recipe (DESIGN §5.6: QInt8 ConvInteger has none; use QUInt8 weights or QDQ)"
        )
    else:
        fix = "check that onnxruntime loads the .onnx itself; fix the model where the message points"
    return ConversionError("convert to ORT format", TOOL, cause, fix, node=node)


def _config_without_paths(text: str) -> str:
    """The converter's config with the model paths in its ``# - /abs/path/m.ort`` comments cut to names."""
    return re.sub(r"^(# - ).*[/\\]([^/\\]+)$", r"\1\2", text, flags=re.MULTILINE)


# --- reading what was written ---------------------------------------------------------------------


def read_required_ops(config: Path) -> tuple[RequiredOps, ...]:
    """The op lines of a ``required_operators.config``, parsed by onnxruntime's own reader
    (``onnxruntime.tools.reduced_build_config_parser.parse_config``), sorted."""
    from onnxruntime.tools.reduced_build_config_parser import parse_config

    required, _type_filter = parse_config(str(config))
    return tuple(
        RequiredOps(domain, int(opset), tuple(sorted(ops)))
        for domain in sorted(required)
        for opset, ops in sorted(required[domain].items())
    )


def ort_format_version(path: Path) -> str:
    """The ORT format version an .ort file records (``InferenceSession.ort_version`` in ort.fbs)."""
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs.InferenceSession import InferenceSession

    data = path.read_bytes()
    if not InferenceSession.InferenceSessionBufferHasIdentifier(data, 0):
        raise ModelError(
            path, "not an ORT format file (no ORTM identifier)", "convert it with convert_to_ort"
        )
    return InferenceSession.GetRootAs(data, 0).OrtVersion().decode()


def ort_graph_sha256(path: Path) -> str:
    """sha256 of the graph onnxruntime loads from an .ort file, re-saved as ONNX with optimizations off.

    Stable across conversions of one model (the .ort bytes are not; module docstring). Saved runtime
    optimization records are not part of it: a Runtime-style file is hashed as its basic-level graph.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory() as folder:
        options.optimized_model_filepath = str(Path(folder) / "graph.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return hashlib.sha256(Path(options.optimized_model_filepath).read_bytes()).hexdigest()


# --- the runtime the app ships --------------------------------------------------------------------

_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?(?:[-.+]?(.*))?$")


def parse_version(text: str) -> tuple[int, int, int, bool]:
    """``"1.23.0"`` -> (1, 23, 0, True); a qualifier (``1.24.0-rc1``) makes the last item False, so a
    pre-release sorts before its release. Raises ValueError for anything else."""
    found = _VERSION.match(text.strip())
    if not found:
        raise ValueError(f"{text!r} is not a version like 1.23.0")
    major, minor, patch, qualifier = found.groups()
    return int(major), int(minor), int(patch or 0), not qualifier


def check_runtime_version(
    runtime: str,
    converter: str | None = None,
    source: str = "[android] ort runtime",
) -> None:
    """Raise :class:`ConfigError` (naming ``source``) if the ORT runtime ``runtime`` is older than the
    converter that wrote the .ort files (``converter``; default: this host's onnxruntime).

    ``runtime`` is a version (``1.23.0``) or a Maven coordinate ending in one
    (``com.microsoft.onnxruntime:onnxruntime-android:1.23.0``). Rule (DESIGN §5.22, and ORT's "ORT model
    format" page, *Backwards Compatibility*): a runtime runs .ort files at its own or an older ORT format
    version, not newer ones. A runtime newer than the converter is fine.
    """
    if converter is None:
        import onnxruntime as ort  # only when asked: plans pass the version (no-op without onnxruntime)

        converter = ort.__version__
    version = runtime.rsplit(":", 1)[-1]
    try:
        shipped, made_by = parse_version(version), parse_version(converter)
    except ValueError as exc:
        raise ConfigError(source, [f"{exc}; give the runtime version the app ships, e.g. 1.23.0"]) from None
    if shipped < made_by:
        raise ConfigError(
            source,
            [
                f"onnxruntime {version} is older than the converter (onnxruntime {converter}) that writes "
                f"the .ort files, and cannot be relied on to load them: ship onnxruntime >= {converter} "
                f"(e.g. {ANDROID_RUNTIME.package}:{ANDROID_RUNTIME.version}) or convert with onnxruntime "
                f"{version}"
            ],
        )
