"""What a job is configured as, checked before any work (docs/design.md §1, §7): composing sweeps/, the preflight of overrides, range checks, run keys and variants."""
