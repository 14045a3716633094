"""A platform target for tests, found only through the ``packager.targets`` entry point.

It re-ships each chosen ONNX variant under ``demo/`` (a real, runnable artifact the core validates),
plus a folder artifact this host declares it cannot run, and asks twice for one shared step. With
``alternatives``, its variants compete for one place (the first that passes ships); ``reject`` names
variants its own later check refuses; ``generate`` writes a loader listing what shipped.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from packager.results import IOInfo
from packager.steps import Step, StepContext, StepOutput
from packager.target import (
    ArtifactRecord,
    ArtifactRecords,
    Product,
    SourceContext,
    Target,
    TargetContext,
    TargetPlan,
)


class DemoSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    variants: list[str] = ["fp16"]
    shared_param: int = 1
    alternatives: bool = False
    reject: list[str] = []


def _copy(ctx: StepContext) -> dict[str, object]:
    shutil.copyfile(ctx.inputs["model"], ctx.out / "artifact.onnx")
    coverage = {"supported_nodes": 7, "total_nodes": 7, "partitions": 1}
    renamed = IOInfo(name="demo_input", dtype="int8", shape=[1, 8], scale=0.5, zero_point=-3)
    record = ArtifactRecord(inputs=[renamed], details={"ep_coverage": coverage})
    return ArtifactRecords(artifacts={"artifact.onnx": record}).model_dump(mode="json")


def _reject(ctx: StepContext) -> dict[str, object]:
    record = ArtifactRecord(details={"checked": True}, rejected="slower than its float sibling")
    return ArtifactRecords(artifacts={"artifact.onnx": record}).model_dump(mode="json")


def _folder(ctx: StepContext) -> dict[str, object]:
    (ctx.out / "package.demo").mkdir()
    (ctx.out / "package.demo" / "weights.bin").write_bytes(ctx.inputs["model"].read_bytes()[:64])
    return {}


def generate(context: SourceContext) -> list[Path]:
    """demo/Loader.txt: each shipped demo artifact's path and sha256, read from the manifest."""
    lines = [f"{a.path} {a.sha256}" for a in context.manifest.artifacts if a.platform == "demo"]
    loader = context.root / "demo" / "Loader.txt"
    loader.parent.mkdir(parents=True, exist_ok=True)
    loader.write_text("\n".join(lines) + "\n")
    return [loader]


def _shared_step(model: str, source: StepOutput, param: int) -> Step:
    return Step(
        f"demo-shared[{model}]", "convert", run=_folder, inputs={"model": source}, params={"p": param}
    )


def plan(context: TargetContext) -> TargetPlan:
    table = context.table
    assert isinstance(table, DemoSpec)
    steps: list[Step] = []
    products: list[Product] = []
    for upstream in context.models:
        model = upstream.spec.name
        # Asked for twice with the same definition: the core keeps one.
        steps += [_shared_step(model, upstream.prepared, table.shared_param)] * 2
        products.append(
            Product(
                model,
                "fp32",
                "demo",
                "demo-runtime",
                "demo-folder",
                "fp32",
                f"demo/models/{model}/package.demo",
                StepOutput(f"demo-shared[{model}]", "package.demo"),
                not_validated_reason="the demo runtime exists on no host",
            )
        )
        for variant in table.variants:
            source = upstream.variants[variant]
            step = Step(f"demo-copy[{model}:{variant}]", "convert", run=_copy, inputs={"model": source})
            steps.append(step)
            check = None
            if variant in table.reject:
                check = Step(f"demo-check[{model}:{variant}]", "bench", run=_reject, after=(step.name,))
                steps.append(check)
            products.append(
                Product(
                    model,
                    variant,
                    "demo",
                    "onnxruntime",
                    "onnx",
                    variant,
                    f"demo/models/{model}/{variant}.onnx",
                    StepOutput(step.name, "artifact.onnx"),
                    details_step=check.name if check else None,
                    choice="int8-or-fp16" if table.alternatives else None,
                )
            )
    return TargetPlan(steps, products)


TARGET = Target(
    "demo", DemoSpec, plan, summary="re-ships ONNX variants under demo/ (tests only)", generate=generate
)


def conflicting_plan(context: TargetContext) -> TargetPlan:
    """Asks for demo's shared step with another parameter: a name collision the core must refuse."""
    upstream = context.models[0]
    return TargetPlan([_shared_step(upstream.spec.name, upstream.prepared, 99)], [])


OTHER = Target("other", DemoSpec, conflicting_plan)
