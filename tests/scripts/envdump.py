"""Test script: writes its whole environment to outputs/env.json."""

import json
import os
from pathlib import Path

Path("outputs").mkdir(exist_ok=True)
Path("outputs/env.json").write_text(json.dumps(dict(os.environ)))
print("env written", flush=True)
