"""Fakes of external systems, implementing their real interfaces."""
