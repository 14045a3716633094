"""The Android platform target: ORT-format and TFLite artifacts, Kotlin loaders, one Gradle module.

Registered in pyproject.toml under the ``packager.targets`` entry-point group; a packager.toml turns
it on with an ``[android]`` table (:class:`targets.android.config.AndroidSpec`). The core never
imports this package.
"""

from __future__ import annotations

from pathlib import Path

from packager.target import (
    PublishContext,
    PublishOption,
    ReleaseFiles,
    SourceContext,
    Target,
    TargetContext,
    TargetPlan,
)
from targets.android.config import AndroidSpec

PUBLISH_OPTIONS = (
    PublishOption(
        "kotlinc",
        "the Kotlin compiler for the Android AAR's classes.jar (default: $KOTLINC, then kotlinc on PATH)",
        metavar="PATH",
    ),
    PublishOption("no-maven", "publish without the Android Maven repository (then no kotlinc is needed)"),
)
"""``packager publish`` options of this target (declared here so the CLI does not import the Maven code)."""


def _plan(context: TargetContext) -> TargetPlan:
    from targets.android.plan import plan

    return plan(context)


def _generate(context: SourceContext) -> list[Path]:
    from targets.android.sources import generate

    return generate(context)


def _publish(context: PublishContext) -> ReleaseFiles:
    from targets.android.maven import publish

    return publish(context)


TARGET = Target(
    "android",
    AndroidSpec,
    _plan,
    summary="ORT format (NNAPI/XNNPACK configs) and TFLite artifacts, Kotlin loaders, a Gradle module",
    generate=_generate,
    publish=_publish,
    publish_options=PUBLISH_OPTIONS,
)
