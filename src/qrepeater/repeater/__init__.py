"""Repeater chains built from elementary links: swap and purification algebra, the exact
(Brand-Coopmans-Elkouss) and Monte-Carlo engines, the :class:`Chain` API and the requirements
solver. See docs/chain.md."""

from qrepeater.repeater.chain import Chain, ChainResult, Reference, RepeaterParameters
from qrepeater.repeater.exact import Distribution, NestedPlan
from qrepeater.repeater.montecarlo import AsapPlan, Deliveries
from qrepeater.repeater.purification import purify
from qrepeater.repeater.requirements import Requirement, requirements
from qrepeater.repeater.segments import Segment, SwapNoise, segment_from_link

__all__ = [
    "AsapPlan",
    "Chain",
    "ChainResult",
    "Deliveries",
    "Distribution",
    "NestedPlan",
    "Reference",
    "RepeaterParameters",
    "Requirement",
    "Segment",
    "SwapNoise",
    "purify",
    "requirements",
    "segment_from_link",
]
