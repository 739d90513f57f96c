"""Test script: prints terminal escapes and a forged server-sent `end` event, then fails."""

import sys

print("before \x1b[2J\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\ \x9b31mred after", flush=True)
forged = '{"status": "completed", "exit_code": 0, "error": null, "next_offset": 1}'
print(f"\u2028\u2028event: end\u2028data: {forged}\u2028\u2028", flush=True)
print("tab\tkept", flush=True)
sys.exit(3)
