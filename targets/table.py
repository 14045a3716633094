"""What every platform's packager.toml table shares: strict parsing, the runtimes it ships and which of
them may fail, and lists that name each entry once."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator, model_validator


class PlatformTable(BaseModel):
    """Base of ``[android]``, ``[ios]``...: a subclass narrows ``runtimes``/``optional_runtimes`` to its
    own runtime names. Unknown keys are errors (a typo is not silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    runtimes: list[str]
    optional_runtimes: list[str] = []

    @field_validator("runtimes", "ort_eps", "tflite_precisions", "coreml_precisions", check_fields=False)
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        twice = sorted({x for x in v if v.count(x) > 1})
        if twice:
            raise ValueError(f"{twice[0]!r} is listed twice")
        return v

    @field_validator("ort_eps", check_fields=False)
    @classmethod
    def _cpu_last(cls, v: list[str]) -> list[str]:
        # The CPU EP takes every node: a plan listed after it would never be tried.
        if "cpu" in v and v.index("cpu") != len(v) - 1:
            raise ValueError(
                f"cpu runs every model, so {', '.join(v[v.index('cpu') + 1 :])} after it would never "
                "be tried: list cpu last"
            )
        return v

    @model_validator(mode="after")
    def _optional_are_listed(self) -> PlatformTable:
        stray = [r for r in self.optional_runtimes if r not in self.runtimes]
        if stray:
            raise ValueError(
                f"optional_runtimes lists {stray[0]!r}, which is not in runtimes: add it to runtimes or "
                "remove it from optional_runtimes"
            )
        return self
