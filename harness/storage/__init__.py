"""Files that outlive a process (docs/design.md §1): run records written whole or not at all, and content-addressed artifacts."""
