"""Task check for classifiers: the labels the app shows, FP32 against the variant.

``check`` reads the first output with at least two classes per sample (``[N, C]`` after flattening);
it is the generic check a classifier config names as ``task = { check = "packager.tasks.topk:check" }``.
"""

from __future__ import annotations

import numpy as np

from packager.tasks import TaskContext, TaskMetric

K = 5


def check(
    reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], context: TaskContext
) -> list[TaskMetric]:
    """Label-level agreement: the shown label, and the top-5 list an app offers as alternatives.

    ``label_match``: share of inputs whose top-1 label is the same (argmax; ties to the lower index).
    ``top5_overlap``: mean share of FP32's top-5 labels present in the variant's top-5 (order ignored).
    """
    name = next(n for n, v in reference.items() if v.reshape(len(v), -1).shape[1] >= 2)
    ref = reference[name].reshape(len(reference[name]), -1)
    cand = candidate[name].reshape(len(candidate[name]), -1)
    k = min(K, ref.shape[1])
    top_ref = np.argsort(-ref, axis=1, kind="stable")[:, :k]
    top_cand = np.argsort(-cand, axis=1, kind="stable")[:, :k]
    overlap = [len(set(a) & set(b)) / k for a, b in zip(top_ref, top_cand, strict=True)]
    return [
        TaskMetric("label_match", float(np.mean(top_ref[:, 0] == top_cand[:, 0])), True,
                   f"share of inputs whose shown label ({name} argmax) equals FP32's"),
        TaskMetric(f"top{k}_overlap", float(np.mean(overlap)), True,
                   f"mean share of FP32's top-{k} labels in the variant's top-{k}"),
    ]  # fmt: skip
