"""The top costs in py-spy raw (folded) profiles: `bench/profile_top.py DIR PHASE [N]`.

Prints, for the phase's samples across all gunicorn workers, the functions that take the most
time inclusive of what they call (only wpotp, Flask, SQLAlchemy, limits, redis, phonenumbers,
pydantic and friends; idle threads waiting for a connection are left out).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

IDLE = ("select (selectors.py", "wait (threading.py", "accept (", "_wait_for_tstate_lock", "poll (selectors.py")


def main() -> None:
    folder, phase = Path(sys.argv[1]), sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for path in folder.glob(f"{phase}-*.txt"):
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            if not count.isdigit() or any(idle in frames[-1] for idle in IDLE):
                continue
            weight = int(count)
            total += weight
            for frame in set(frames):
                inclusive[frame] += weight
            own[frames[-1]] += weight
    print(f"{phase}: {total} busy samples")
    print("inclusive:")
    for frame, count in inclusive.most_common(n):
        print(f"  {100 * count / total:5.1f}%  {frame}")
    print("self:")
    for frame, count in own.most_common(n // 2):
        print(f"  {100 * count / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
