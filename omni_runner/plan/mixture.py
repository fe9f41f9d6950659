"""The data mixture: each capability's share of the samples, and how that share splits over its data sets.

Mirrors the mixer (omni_runner/data/mixer.py): a capability is drawn with probability proportional to
its weight, then one of its data sets uniformly. Expected samples over a stage are therefore
steps x global batch x normalised weight, split evenly over the capability's data sets.
"""

from __future__ import annotations

from typing import Any


def stage_mixture(data: dict[str, Any], capabilities: list[str], samples: int) -> dict[str, Any]:
    specs = data.get("capabilities") or {}
    datasets = data.get("datasets") or {}
    weights = {c: float((specs.get(c) or {}).get("weight", 1.0)) for c in capabilities}
    total_weight = sum(weights.values()) or 1.0
    mixture: dict[str, Any] = {}
    for capability in capabilities:
        share = weights[capability] / total_weight
        names = list((specs.get(capability) or {}).get("datasets") or [])
        expected = round(samples * share)
        mixture[capability] = {
            "weight": round(share, 6),
            "expected_samples": expected,
            "datasets": [
                {
                    "name": name,
                    "path": (datasets.get(name) or {}).get("path"),
                    "format": (datasets.get(name) or {}).get("format"),
                    "weight": round(share / len(names), 6),
                    "expected_samples": round(expected / len(names)),
                }
                for name in names
            ],
        }
    return mixture


def total_mixture(stage_mixtures: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole run: samples summed over stages, weights as shares of all samples drawn."""
    totals: dict[str, Any] = {}
    for mixture in stage_mixtures:
        for capability, entry in mixture.items():
            into = totals.setdefault(capability, {"weight": 0.0, "expected_samples": 0, "datasets": {}})
            into["expected_samples"] += entry["expected_samples"]
            for dataset in entry["datasets"]:
                kept = into["datasets"].setdefault(dataset["name"], {**dataset, "expected_samples": 0})
                kept["expected_samples"] += dataset["expected_samples"]
    all_samples = sum(t["expected_samples"] for t in totals.values())
    for capability, entry in totals.items():
        if all_samples:
            entry["weight"] = round(entry["expected_samples"] / all_samples, 6)
        else:  # no step count yet (epochs): fall back to the recipe's normalised weights
            entry["weight"] = max(m[capability]["weight"] for m in stage_mixtures if capability in m)
        entry["datasets"] = [
            {**d, "weight": round(d["expected_samples"] / all_samples, 6) if all_samples else d["weight"]}
            for d in entry["datasets"].values()
        ]
    return totals
