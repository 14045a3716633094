"""A platform target for tests, found only through the ``packager.targets`` entry point.

It re-ships each chosen ONNX variant under ``demo/`` (a real, runnable artifact the core validates),
plus a folder artifact this host declares it cannot run, and asks twice for one shared step.
"""

from __future__ import annotations

import shutil

from pydantic import BaseModel, ConfigDict

from packager.steps import Step, StepContext, StepOutput
from packager.target import Product, Target, TargetContext, TargetPlan


class DemoSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    variants: list[str] = ["fp16"]
    shared_param: int = 1


def _copy(ctx: StepContext) -> dict[str, object]:
    shutil.copyfile(ctx.inputs["model"], ctx.out / "artifact.onnx")
    return {"ep_coverage": {"supported_nodes": 7, "total_nodes": 7, "partitions": 1}}


def _folder(ctx: StepContext) -> dict[str, object]:
    (ctx.out / "package.demo").mkdir()
    (ctx.out / "package.demo" / "weights.bin").write_bytes(ctx.inputs["model"].read_bytes()[:64])
    return {}


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
                )
            )
    return TargetPlan(steps, products)


TARGET = Target("demo", DemoSpec, plan, summary="re-ships ONNX variants under demo/ (tests only)")


def conflicting_plan(context: TargetContext) -> TargetPlan:
    """Asks for demo's shared step with another parameter: a name collision the core must refuse."""
    upstream = context.models[0]
    return TargetPlan([_shared_step(upstream.spec.name, upstream.prepared, 99)], [])


OTHER = Target("other", DemoSpec, conflicting_plan)
