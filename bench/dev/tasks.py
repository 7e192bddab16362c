"""Busy samples of a py-spy raw profile by the task (first frame under the loop's Handle._run)."""

import re
import sys
from collections import Counter

from bench.dev.summarize import IDLE

c: Counter[str] = Counter()
total = 0
with open(sys.argv[1]) as f:
    lines = f.readlines()
for line in lines:
    stack, _, n_s = line.rstrip().rpartition(" ")
    n = int(n_s)
    fr = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
    if any(fr[-1].startswith(i) for i in IDLE):
        continue
    total += n
    thread = fr[0].split(":")[-1].strip()
    try:
        i = max(k for k, f in enumerate(fr) if f.startswith("Handle._run"))
        task = fr[i + 1] if i + 1 < len(fr) else "(Handle._run itself)"
        if i + 2 < len(fr) and fr[i + 1].startswith(("Task.", "Service._execute_task")):
            task += " > " + fr[i + 2]
    except ValueError:
        task = "(loop) " + fr[-1]
    c[f"[{thread}] {task}"] += n
for k, v in c.most_common(int(sys.argv[2]) if len(sys.argv) > 2 else 30):
    print(f"{100 * v / total:5.1f}%  {k}")
