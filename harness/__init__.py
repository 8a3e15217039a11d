"""dqo-bench: the commands (``python -m harness.run|report|tune|plan|options|bench|build_family|lm_eval_check``),
the plug-in API (``options``, ``registry``, ``errors``) and, below them, the shared backbone in sub-packages by
layer: ``reporting`` > ``pipeline`` > ``config`` > ``backbone`` > ``generation`` > ``storage`` > ``distributed``
(docs/design.md §2)."""
