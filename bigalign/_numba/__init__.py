"""Compiled inner loops (Numba), compiled lazily on first call and cached on disk."""
