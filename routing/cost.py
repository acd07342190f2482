"""What a forward of the served model costs here, fitted from the forwards a continuous batch runs.

Two decisions of continuous batching trade a forward's fixed cost against per-token work, and the balance
differs by orders of magnitude between devices and models: on a CPU a forward of the 0.5M-parameter test
base costs as much as about 70 prompt tokens of its own (Python and kernel dispatch dominate), one of
SmolLM2-135M about 10 (its matrix products dominate). Rather than a constant tuned for one of them,
:class:`ForwardCost` fits ``seconds = fixed + per_token * tokens`` by least squares over the batch's recent
prefill forwards and answers:

* :meth:`ForwardCost.pad_tokens`: how many padding tokens a joiner may add to a shared prefill (a shorter
  prompt padded to the longest of its group) before a prefill of its own is cheaper: ``fixed / per_token``;
* :meth:`ForwardCost.join_now`: whether waiting rows should join the running batch now or wait for more
  slots to free, so that several joiners share one prefill forward. While they wait, the free slots produce
  nothing: each step costs ``step seconds / live rows`` of output per free slot. The rule is the ski-rental
  one: wait until the output lost so far equals the fixed cost a shared prefill saves, then join (never more
  than twice the better of the two choices made with hindsight), and never longer than ``max_wait_steps``.

Until enough prefills of different sizes were seen the defaults apply (``default_pad`` tokens, join at once).
"""

from __future__ import annotations

from collections import deque


class ForwardCost:
    """A running fit of prefill cost against tokens, and the decode step time.

    Args:
        window: how many recent prefills the fit uses. default_pad: :meth:`pad_tokens` before a fit.
        max_wait_steps: the most decode steps a waiting row is held back by :meth:`join_now`.
    """

    MIN_SAMPLES = 8
    #: the most padding :meth:`pad_tokens` allows whatever the fit says (a noisy fit on a busy machine can make
    #: tokens look free; a 20-token prompt padded to 2,000 would not be)
    MAX_PAD = 512

    def __init__(self, window: int = 64, default_pad: int = 16, max_wait_steps: int = 8) -> None:
        self.samples: deque[tuple[int, float]] = deque(maxlen=window)
        self.default_pad = default_pad
        self.max_wait_steps = max_wait_steps
        self.step_seconds: float | None = None  # exponential average of decode step times
        self._fit: tuple[float, float] | None = None
        self._stale = False

    def prefill(self, tokens: int, seconds: float) -> None:
        """Record one prefill forward over ``tokens`` input tokens (padding included)."""
        self.samples.append((tokens, seconds))
        self._stale = True

    def step(self, seconds: float) -> None:
        """Record one decode step."""
        s = self.step_seconds
        self.step_seconds = seconds if s is None else 0.9 * s + 0.1 * seconds

    def fit(self) -> tuple[float, float] | None:
        """``(fixed seconds, seconds per token)`` of a prefill, or None while the samples cannot tell them apart
        (too few, or all of about one size). A fit with no fixed cost or no per-token cost is clamped to zero."""
        if self._stale:
            self._stale = False
            self._fit = None
            n = len(self.samples)
            if n >= self.MIN_SAMPLES:
                mx = sum(t for t, _ in self.samples) / n
                my = sum(s for _, s in self.samples) / n
                var = sum((t - mx) ** 2 for t, _ in self.samples)
                if var >= n:  # token counts spread by at least about one token
                    slope = sum((t - mx) * (s - my) for t, s in self.samples) / var
                    slope = max(slope, 0.0)
                    self._fit = (max(my - slope * mx, 0.0), slope)
        return self._fit

    def pad_tokens(self) -> int:
        """Most padding tokens one row may add to a shared prefill (at most :attr:`MAX_PAD`)."""
        f = self.fit()
        if f is None:
            return self.default_pad
        fixed, per_token = f
        if per_token * self.MAX_PAD <= fixed:
            return self.MAX_PAD
        return int(fixed / per_token)

    def join_now(self, idle_slot_steps: int, waited_steps: int, live_rows: int) -> bool:
        """Whether waiting rows join now. ``idle_slot_steps``: the free slots summed over the decode steps they
        have waited so far; ``waited_steps``: how many steps the oldest waited; ``live_rows``: rows running."""
        f = self.fit()
        if f is None or self.step_seconds is None or live_rows < 1 or waited_steps >= self.max_wait_steps:
            return True
        lost = idle_slot_steps * self.step_seconds / live_rows  # output time the free slots did not produce
        return lost >= f[0]
