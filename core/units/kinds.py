"""The unit source for a kind of unit: `source('neuron')`, or `source('feature:<SAE path>')` for SAE features.

It stands above core.units.sources (the protocol and NeuronSource) and core.saes.features (FeatureSource), which
both build on the shared unit view; neither imports this module.
"""

from __future__ import annotations

from core.units.sources import NeuronSource, UnitSource

SOURCES: dict[str, UnitSource] = {"neuron": NeuronSource()}


def source(kind: str) -> UnitSource:
    """The unit source for `kind`: 'neuron', or 'feature:<SAE path>' (core.saes.features.FeatureSource)."""
    if kind.startswith("feature:"):
        from core.saes.features import FeatureSource  # torch: only when a feature is asked for

        return FeatureSource(kind.split(":", 1)[1])
    return SOURCES[kind]
