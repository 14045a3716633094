"""Which execution providers can run a model, and the session/provider options the app loads it with.

* :func:`ep_coverage` asks onnxruntime's own mobile usability checker
  (``onnxruntime.tools.mobile_helpers.usability_checker``, behind
  ``python -m onnxruntime.tools.check_onnx_model_mobile_usability``) how NNAPI and CoreML (NeuralNetwork
  and MLProgram) would partition the model, and reads its ``PartitioningInfo`` objects rather than its log.
  The checker does not cover XNNPACK; that row is packager's estimate from the XNNPACK EP's own op rules
  (:data:`XNNPACK_RULES`), fed to the checker's partition estimator.
* :func:`ep_config` builds the :class:`EpConfig` the app reads (JSON): one :class:`SessionPlan` per EP in
  the order the loader tries them, each with the session options and provider options that EP wants.

Both checkers work per op type: per-node limits (2-D Conv only, constant weights, Softmax axis...) are
listed as ``caveats`` and not checked, so numbers are upper bounds. Calling the checker sets
``onnx.NodeProto.__hash__`` to ``id`` for the whole process (``onnx_model_utils.get_producer_consumer_maps``).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from packager.errors import ConfigError, ModelError
from targets.ort_mobile.ort_format import Style

log = logging.getLogger(__name__)

Verdict = Literal["YES", "MAYBE", "NO"]
Ep = Literal["xnnpack", "cpu", "nnapi", "coreml"]
NnapiFlag = Literal["USE_FP16", "USE_NCHW", "CPU_DISABLED", "CPU_ONLY", "CPU_DISABLED_SOFT"]
"""``ai.onnxruntime.providers.NNAPIFlags`` (ORT Java API) names, = ``NNAPI_FLAG_*`` in
include/onnxruntime/core/providers/nnapi/nnapi_provider_factory.h."""
CoreMLFormat = Literal["MLProgram", "NeuralNetwork"]
CoreMLUnits = Literal["CPUOnly", "CPUAndGPU", "CPUAndNeuralEngine", "ALL"]
"""Accepted values of ``MLComputeUnits`` (onnxruntime/core/providers/coreml/coreml_options.cc; upper-case
``ALL``, although the Objective-C header comment says "All")."""


# --- coverage -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Partitioning:
    """How one EP would split the graph: the checker's ``PartitioningInfo`` as data."""

    nodes: int
    supported_nodes: int
    partitions: int
    partition_sizes: tuple[int, ...]
    unsupported_ops: tuple[str, ...]
    """``domain:op`` of the op types the EP does not take, sorted."""
    unsupported_by_op: int
    unsupported_by_dynamic_shape: int
    unsupported_by_rank: int
    verdict: Verdict
    """``PartitioningInfo.suitability()``: YES for one partition over 75% of the nodes, MAYBE for one over
    50% or two over 75%, else NO. It assumes a device EP with copies at partition edges."""

    @property
    def share(self) -> float:
        """Supported nodes / nodes, 0..1."""
        return self.supported_nodes / self.nodes if self.nodes else 0.0


@dataclass(frozen=True)
class EpCoverage:
    """One EP's view of a model; ``if_fixed_shapes`` only when the model has dynamic inputs."""

    ep: Literal["NNAPI", "CoreML NeuralNetwork", "CoreML MLProgram", "XNNPACK"]
    source: str
    as_is: Partitioning
    if_fixed_shapes: Partitioning | None
    caveats: tuple[str, ...]
    """Per-node limits of the supported ops in the model that the checker did not check."""
    dynamic_inputs: tuple[str, ...]
    note: str = ""


_XNNPACK_NOTE = (
    "XNNPACK runs per-node kernels, not compiled partitions: a partition edge costs an NCHW/NHWC "
    "Transpose rather than a device copy, so the verdict (the checker's device-EP rule) is pessimistic; "
    "benchmark against the CPU EP"
)


@dataclass(frozen=True)
class XnnpackRules:
    """What ORT's XNNPACK EP claims, by op type (onnxruntime 1.23 source, path under
    onnxruntime/core/providers/xnnpack/ in each comment)."""

    ops: frozenset[str]
    qdq_targets: frozenset[str]
    fused_activations: frozenset[str]
    fuse_into: frozenset[str]
    caveats: dict[str, str]


_XNNPACK_OPS = (
    "Conv",
    "ConvTranspose",
    "QLinearConv",
    "MaxPool",
    "AveragePool",
    "Softmax",
    "Resize",
    "Gemm",
    "MatMul",
)
XNNPACK_RULES = XnnpackRules(
    # detail/node_support_checker.cc NodeSupportChecker::IsNodeSupported: ONNX-domain ops only, so the
    # com.microsoft FusedConv/QGemm a Fixed-style .ort holds are not taken.
    ops=frozenset(f"ai.onnx:{op}" for op in _XNNPACK_OPS),
    # detail/utils.cc GetQuantizedOpType: DQ -> op -> Q groups run as QLinearConv, QLinearAveragePool...
    # QDQ Gemm/MatMul are not among them.
    qdq_targets=frozenset({"Conv", "ConvTranspose", "MaxPool", "AveragePool", "Softmax", "Resize"}),
    # detail/node_support_checker.cc ClipReluChecker: fused into a float NHWC Conv/MaxPool/AveragePool.
    fused_activations=frozenset({"Relu", "Clip"}),
    fuse_into=frozenset({"Conv", "MaxPool", "AveragePool"}),
    # onnxruntime.ai docs, execution-providers/Xnnpack-ExecutionProvider "Supported ops".
    caveats={
        "ai.onnx:Conv": "Only 2D Conv is supported. Weights and bias should be constant.",
        "ai.onnx:ConvTranspose": "Only 2D ConvTranspose is supported. Weights and bias should be constant.",
        "ai.onnx:MaxPool": "Only 2D Pool is supported.",
        "ai.onnx:AveragePool": "Only 2D Pool is supported.",
        "ai.onnx:Softmax": "opset 13 only when axis is the last dimension",
        "ai.onnx:Resize": "2D/4D Resize in Bilinear mode only",
        "ai.onnx:Gemm": "Only 2D Op is supported",
        "ai.onnx:MatMul": "Only 2D Op is supported",
    },
)


def ep_coverage(onnx_path: Path) -> list[EpCoverage]:
    """NNAPI, CoreML NeuralNetwork, CoreML MLProgram (onnxruntime's checker) and XNNPACK (estimate) on
    ``onnx_path``, checked as ``check_onnx_model_mobile_usability`` does: on the model optimized to the
    basic level (what a Runtime-style .ort holds), with ONNX shape inference.

    A model with a dynamic input (DESIGN §5.7: a dynamic batch dim turns NNAPI and CoreML off) is also
    checked as if its shapes were fixed (``if_fixed_shapes``). Raises :class:`ModelError` when the
    checker cannot read or optimize the model.
    """
    import onnxruntime as ort
    from onnxruntime.tools.mobile_helpers import usability_checker as uc
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

    with tempfile.TemporaryDirectory() as folder:
        optimized = Path(folder) / onnx_path.name
        try:
            optimize_model(onnx_path, optimized, use_external_initializers=True)
            model = ModelProtoWithShapeInfo(optimized).model_with_shape_info
        except Exception as exc:  # onnxruntime/onnx raise several exception types
            raise ModelError(
                onnx_path, f"the mobile usability checker cannot read it ({exc})", "check the model loads"
            ) from None
    dynamic, _ = uc.check_shapes(model.graph)
    dynamic_names = tuple(i.name for i in dynamic)
    source = f"onnxruntime {ort.__version__} usability_checker"
    checks = [
        ("NNAPI", f"{source} (nnapi_supported_ops.md)", uc.check_nnapi_partitions),
        (
            "CoreML NeuralNetwork",
            f"{source} (coreml_supported_neuralnetwork_ops.md)",
            lambda m, fixed: uc.check_coreml_partitions(m, fixed, "coreml_supported_neuralnetwork_ops.md"),
        ),
        (
            "CoreML MLProgram",
            f"{source} (coreml_supported_mlprogram_ops.md)",
            lambda m, fixed: uc.check_coreml_partitions(m, fixed, "coreml_supported_mlprogram_ops.md"),
        ),
        (
            "XNNPACK",
            "packager estimate from onnxruntime XNNPACK EP op rules (not onnxruntime's checker)",
            # Conv needs C, H, W known, not N (nn/conv_base.cc): shapes are not required to be fixed.
            lambda m, _fixed: uc.check_partitioning(m.graph, _XnnpackChecker(m.graph), False),
        ),
    ]
    results = []
    for ep, ep_source, check in checks:
        info = check(model, True)
        fixed = _partitioning(check(model, False)) if dynamic_names and ep != "XNNPACK" else None
        results.append(
            EpCoverage(
                ep=ep,
                source=ep_source,
                as_is=_partitioning(info),
                if_fixed_shapes=fixed,
                caveats=tuple(info.supported_ops_checker.get_caveats()),
                dynamic_inputs=dynamic_names,
                note=_XNNPACK_NOTE if ep == "XNNPACK" else "",
            )
        )
        log.info(
            "%s: %d/%d nodes in %d partition(s), verdict %s",
            ep,
            info.num_supported_nodes,
            info.num_nodes,
            info.num_partitions,
            results[-1].as_is.verdict,
        )
    return results


def _partitioning(info) -> Partitioning:  # info: usability_checker.PartitioningInfo
    return Partitioning(
        nodes=info.num_nodes,
        supported_nodes=info.num_supported_nodes,
        partitions=info.num_partitions,
        partition_sizes=tuple(len(group) for group in info.supported_groups),
        unsupported_ops=tuple(sorted(info.unsupported_ops)),
        unsupported_by_op=info.nodes_unsupported_due_to_op,
        unsupported_by_dynamic_shape=info.nodes_unsupported_due_to_dynamic_input,
        unsupported_by_rank=info.num_unsupported_nodes_due_to_rank,
        verdict=info.suitability().name,
    )


def _op(node) -> str:
    return f"{node.domain or 'ai.onnx'}:{node.op_type}"


class _XnnpackChecker:
    """Answers the usability checker's ``is_op_supported(node)`` with :data:`XNNPACK_RULES`.

    A node is taken when its op is in ``ops`` and no input comes from a DequantizeLinear (float). A
    ``qdq_targets`` op between DequantizeLinear inputs and QuantizeLinear consumers is taken with its
    group (the EP's QDQ node units); a QDQ Conv/ConvTranspose only when activations, weights and output
    share one type, int8 (per-tensor or per-channel) or uint8 (per-tensor): ``GetConvCompType`` in
    nn/conv_base.cc refuses uint8 activations with int8 weights (U8S8). Relu/Clip are taken after a
    taken float Conv/MaxPool/AveragePool. Stand-alone Q/DQ nodes stay on the CPU EP.
    """

    def __init__(self, graph, rules: XnnpackRules = XNNPACK_RULES) -> None:
        self._producer = {out: node for node in graph.node for out in node.output}
        self._consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                self._consumers.setdefault(name, []).append(node)
        self._inits = {init.name: init for init in graph.initializer}
        self._types = {name: init.data_type for name, init in self._inits.items()}
        for value in (*graph.input, *graph.value_info, *graph.output):
            if value.type.HasField("tensor_type"):
                self._types[value.name] = value.type.tensor_type.elem_type
        self._rules = rules
        self._taken: set[tuple[str, ...]] = set()
        for node in graph.node:
            self._take(node)
        for node in graph.node:  # graph.node is in topological order
            first = self._producer.get(node.input[0]) if node.input else None
            if (
                node.op_type in rules.fused_activations
                and first is not None
                and first.op_type in rules.fuse_into
                and tuple(first.output) in self._taken
                and not self._dq_inputs(first)
            ):
                self._taken.add(tuple(node.output))
        self._seen: set[str] = set()

    def _dq_inputs(self, node) -> list:
        found = [self._producer.get(i) for i in node.input if i]
        return [p for p in found if p is not None and p.op_type == "DequantizeLinear"]

    def _take(self, node) -> None:
        dqs = self._dq_inputs(node)
        if not dqs:
            if _op(node) in self._rules.ops:
                self._taken.add(tuple(node.output))
            return
        qs = [c for o in node.output for c in self._consumers.get(o, [])]
        if node.domain or node.op_type not in self._rules.qdq_targets or not qs:
            return
        if any(q.op_type != "QuantizeLinear" for q in qs):
            return
        if node.op_type.startswith("Conv") and not self._same_quant_types(node, qs[0]):
            return
        self._taken.update(tuple(n.output) for n in (node, *dqs, *qs))

    def _same_quant_types(self, conv, q) -> bool:
        x, w = (self._producer.get(conv.input[i]) for i in (0, 1))
        if x is None or w is None or x.op_type != "DequantizeLinear" or w.op_type != "DequantizeLinear":
            return False
        x_type, w_type = self._types.get(x.input[0]), self._types.get(w.input[0])
        y_type = self._types.get(q.input[2]) if len(q.input) > 2 and q.input[2] else 2  # uint8 default
        scale = self._inits.get(w.input[1])
        per_channel = scale is not None and len(scale.dims) > 0 and scale.dims[0] > 1
        int8, uint8 = 3, 2  # onnx.TensorProto.INT8 / UINT8
        return x_type == w_type == y_type and (x_type == int8 or (x_type == uint8 and not per_channel))

    def is_op_supported(self, node) -> bool:
        supported = tuple(node.output) in self._taken
        if supported:
            self._seen.add(_op(node))
        return supported

    def get_caveats(self) -> list[str]:
        return [f"{op}:{self._rules.caveats[op]}" for op in sorted(self._seen) if op in self._rules.caveats]


# --- session and provider options ------------------------------------------------------------------


class ProviderConfig(BaseModel):
    """One execution provider as the ORT Java/Objective-C APIs append it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["XNNPACK", "NNAPI", "CoreML"]
    options: dict[str, str] = {}
    """Provider options, keys as ORT names them (XNNPACK ``intra_op_num_threads``; CoreML ``ModelFormat``,
    ``MLComputeUnits``...: ``appendCoreMLExecutionProviderWithOptionsV2`` / ``addCoreML(Map)``)."""
    flags: list[NnapiFlag] = []
    """NNAPI only: ``addNnapi(EnumSet.of(NNAPIFlags...))``."""


class SessionPlan(BaseModel):
    """One ``OrtSession.SessionOptions`` the loader builds: ``providers`` appended in order; nodes none
    of them takes run on the CPU EP."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ep: Ep
    intra_op_num_threads: int
    inter_op_num_threads: int = 1
    graph_optimization_level: Literal["all", "extended", "basic", "disabled"] = "all"
    config_entries: dict[str, str] = {}
    """``SessionOptions.addConfigEntry`` key/values."""
    providers: list[ProviderConfig] = []
    notes: list[str] = []


class EpConfig(BaseModel):
    """What the app reads to load one .ort file: ``plans`` in the order the loader tries them (the next
    when creating a session with the previous one fails)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ort_style: Style
    plans: list[SessionPlan]


class CoreMLOptions(BaseModel):
    """CoreML EP provider options (``appendCoreMLExecutionProviderWithOptionsV2``; keys and values as
    onnxruntime/core/providers/coreml/coreml_options.cc accepts them, DESIGN §5.23)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_format: CoreMLFormat = "MLProgram"
    compute_units: CoreMLUnits = "ALL"
    require_static_input_shapes: bool = True
    """Mobile artifacts have fixed shapes (DESIGN §5.7); "1" keeps CoreML off anything dynamic."""
    enable_on_subgraphs: bool = False
    specialization_strategy: Literal["Default", "FastPrediction"] = "Default"
    model_cache_directory: str | None = None
    """ORT >= 1.21; a writable folder on the device, so the app supplies it."""

    def provider_options(self) -> dict[str, str]:
        options = {
            "ModelFormat": self.model_format,
            "MLComputeUnits": self.compute_units,
            "RequireStaticInputShapes": "1" if self.require_static_input_shapes else "0",
            "EnableOnSubgraphs": "1" if self.enable_on_subgraphs else "0",
            "SpecializationStrategy": self.specialization_strategy,
        }
        if self.model_cache_directory:
            options["ModelCacheDirectory"] = self.model_cache_directory
        return options


def recommended_style(eps: Sequence[Ep]) -> Style:
    """``Runtime`` when NNAPI, CoreML or XNNPACK is listed, else ``Fixed``.

    Source: the converter's ``--optimization_style`` help ("Runtime style when using NNAPI or CoreML and
    Fixed style otherwise"). XNNPACK is added from its op rules: it takes only ONNX-domain ops, so the
    ``com.microsoft:FusedConv`` a Fixed-style FP32 .ort holds instead of Conv+Relu stays on the CPU EP.
    """
    return "Runtime" if set(eps) & {"nnapi", "coreml", "xnnpack"} else "Fixed"


def ep_config(
    eps: Sequence[Ep],
    threads: int,
    style: Style = "Runtime",
    *,
    nnapi_flags: Sequence[NnapiFlag] = (),
    coreml: CoreMLOptions | None = None,
    source: str = "[android] ort_eps",
) -> EpConfig:
    """One :class:`SessionPlan` per entry of ``eps``, for an .ort of ``style``.

    ``threads`` is the intra-op thread count the app wants. Every plan names the format
    (``session.load_model_format`` = ``ORT``; ORT would infer it from a ``.ort`` name or the bytes' marker,
    but a wrong file then fails loudly) and asks for level ``all``: a Fixed-style file has its
    optimizations baked in already, and a Runtime-style file's saved optimizations are replayed only at
    ``extended`` or higher.

    * ``xnnpack``: the XNNPACK EP page's recommended configuration -- XNNPACK ``intra_op_num_threads`` =
      ``threads``, session intra-op threads 1, ``session.intra_op.allow_spinning`` 0 (two pools contend).
    * ``nnapi``: ``nnapi_flags``; CPU_DISABLED with CPU_ONLY is refused (the NNAPI EP returns an error).
    * ``coreml``: ``coreml`` (default :class:`CoreMLOptions`).
    * ``cpu``: the CPU EP alone with ``threads`` intra-op threads.

    Raises :class:`ConfigError` (naming ``source``) listing every problem at once.
    """
    problems = []
    if threads < 1:
        problems.append(f"threads must be >= 1, got {threads}")
    if not eps:
        problems.append("list at least one execution provider (cpu always works)")
    twice = sorted({ep for ep in eps if list(eps).count(ep) > 1})
    if twice:
        problems.append(f"{twice[0]!r} is listed twice")
    if {"CPU_DISABLED", "CPU_ONLY"} <= set(nnapi_flags):
        problems.append("NNAPI flags CPU_DISABLED and CPU_ONLY exclude each other: keep one")
    if nnapi_flags and "nnapi" not in eps:
        problems.append("nnapi_flags are given but nnapi is not in the EP list")
    if problems:
        raise ConfigError(source, problems)
    entries = {"session.load_model_format": "ORT"}
    plans = {
        "xnnpack": SessionPlan(
            ep="xnnpack",
            intra_op_num_threads=1,
            config_entries={**entries, "session.intra_op.allow_spinning": "0"},
            providers=[ProviderConfig(name="XNNPACK", options={"intra_op_num_threads": str(threads)})],
            notes=[
                "ORT's XNNPACK EP page: XNNPACK gets the threads, the ORT intra-op pool 1 thread without "
                "spinning. Ops XNNPACK does not take (PRelu, DESIGN §5.21) run single-threaded on the CPU "
                "EP then: benchmark against the cpu plan."
            ],
        ),
        "nnapi": SessionPlan(
            ep="nnapi",
            intra_op_num_threads=threads,
            config_entries=entries,
            providers=[ProviderConfig(name="NNAPI", flags=list(nnapi_flags))],
            notes=["NNAPI is deprecated since Android 15 and often slower than the CPU (DESIGN §5.11)."],
        ),
        "coreml": SessionPlan(
            ep="coreml",
            intra_op_num_threads=threads,
            config_entries=entries,
            providers=[ProviderConfig(name="CoreML", options=(coreml or CoreMLOptions()).provider_options())],
        ),
        "cpu": SessionPlan(ep="cpu", intra_op_num_threads=threads, config_entries=entries),
    }
    return EpConfig(ort_style=style, plans=[plans[ep] for ep in eps])
