"""For the interruption tests: a method slow enough to interrupt.

``slow_supervised`` is ``supervised`` plus a fixed sleep per step, so a subprocess run lasts
long enough to send it a signal after its first logged step; its numbers equal plain
``supervised`` (the sleep touches no tensor and no random stream). Subprocesses import this
module to register it; the test process registers the class only for the duration of one
test (fixture ``slow_method``), so the registries the other tests see stay as shipped.
"""

from __future__ import annotations

import time

from kdforge.methods.supervised import Supervised
from kdforge.registry import register_method

STEP_SLEEP_S = 0.03


@register_method("slow_supervised")
class SlowSupervised(Supervised):
    """Supervised, 30 ms slower per step."""

    def training_step(self, batch):
        time.sleep(STEP_SLEEP_S)
        return super().training_step(batch)
