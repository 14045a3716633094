"""The iOS platform target: ORT format for the CoreML EP, Core ML ML Programs, Swift loaders, one Swift
package.

Registered in pyproject.toml under the ``packager.targets`` entry-point group; a packager.toml turns it
on with an ``[ios]`` table (:class:`targets.ios.config.IosSpec`). The core never imports this package.
"""

from __future__ import annotations

from pathlib import Path

from packager.target import PublishContext, ReleaseFiles, SourceContext, Target, TargetContext, TargetPlan
from targets.ios.config import IosSpec


def _plan(context: TargetContext) -> TargetPlan:
    from targets.ios.plan import plan

    return plan(context)


def _generate(context: SourceContext) -> list[Path]:
    from targets.ios.sources import generate

    return generate(context)


def _publish(context: PublishContext) -> ReleaseFiles:
    from targets.ios.package_archive import publish

    return publish(context)


TARGET = Target(
    "ios",
    IosSpec,
    _plan,
    summary="ORT format (CoreML EP options) and Core ML FP16 ML Programs, Swift loaders, a Swift package",
    generate=_generate,
    publish=_publish,
)
