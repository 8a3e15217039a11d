"""Which process am I, and how processes are laid out (docs/design.md §6): ranks, the distribution strategies, GPU slots of a parallel sweep."""
