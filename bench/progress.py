"""Training progress for people and for logs.

On a terminal: a tqdm bar (redrawn in place). Otherwise (``make run > log``, a SLURM job, a sweep worker):
one plain line every ``LOG_INTERVAL_S`` seconds and one at the end, instead of thousands of redraws.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

LOG_INTERVAL_S = 30.0


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress:
    def __init__(
        self,
        total: int,
        initial: int,
        desc: str,
        enabled: bool = True,
        stream: TextIO | None = None,
        interval_s: float = LOG_INTERVAL_S,
    ) -> None:
        self.total, self.step, self.desc = total, initial, desc
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.interval_s = interval_s
        self._start_step, self._start = initial, time.perf_counter()
        self._last_line = self._start
        self._postfix = ""
        self._bar = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, initial=initial, unit="step", unit_scale=True, desc=desc, mininterval=1.0,
                file=self.stream,
            )  # fmt: skip

    def update(self, steps: int, episode_return: float, steps_per_sec: float) -> None:
        self.step += steps
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(steps)
            self._bar.set_postfix(ret=f"{episode_return:.1f}", sps=f"{steps_per_sec:.0f}")
            return
        self._postfix = f"return {episode_return:.1f}, {steps_per_sec:.0f} steps/s"
        now = time.perf_counter()
        if now - self._last_line >= self.interval_s:
            self._last_line = now
            self._print_line(now)

    def _print_line(self, now: float) -> None:
        done = self.step - self._start_step
        rate = done / max(now - self._start, 1e-9)
        eta = (self.total - self.step) / rate if rate > 0 else float("inf")
        pct = 100.0 * self.step / max(self.total, 1)
        eta_text = _duration(eta) if eta != float("inf") else "?"
        print(
            f"[{self.desc}] {self.step}/{self.total} steps ({pct:.0f}%), {self._postfix}, "
            f"elapsed {_duration(now - self._start)}, eta {eta_text}",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            self._print_line(time.perf_counter())
