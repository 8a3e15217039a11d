"""Algorithm plug-ins: one file each, registered by name (``@register_algorithm``), loaded lazily."""
