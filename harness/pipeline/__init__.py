"""One job and its stages (docs/design.md §1): warm start (or the shipped π_ref family) → rollout bank → train → evaluate → record, run in this process or in processes of its own."""
