"""Holds a local slot without using CPU: sleeps until canceled (or an hour passes)."""

import time

time.sleep(3600)
