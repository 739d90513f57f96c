"""Test script: leaves symlinks in outputs/ that point out of the run folder."""

import os
from pathlib import Path

Path("outputs").mkdir(exist_ok=True)
Path("outputs/model.pkl").write_bytes(b"model")
os.symlink("/etc/passwd", "outputs/passwd")
os.symlink("/", "outputs/root")
os.symlink("../../..", "outputs/up")
print("links made", flush=True)
