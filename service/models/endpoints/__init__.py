"""Endpoints: registered model versions served for scoring (issue 16)."""
