"""``math500``: the MATH-500 test subset; defined beside ``math`` in tasks/math.py (the registry finds
task plug-ins by module name, hence this one-line module)."""
from tasks.math import Math500Task  # noqa: F401  (registers "math500")
