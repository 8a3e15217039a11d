"""``reference``: π_ref itself, trained no further. Every sweep evaluates it so each algorithm's row
reads as a change from the same starting point."""
from algorithms._base import Algorithm, AlgoOptions
from harness.registry import register_algorithm


@register_algorithm("reference")
class Reference(Algorithm):
    Options = AlgoOptions
    trains = False
