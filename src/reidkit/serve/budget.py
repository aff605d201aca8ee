"""The decoded-pixel budget of a service: how many pixels its requests may hold decoded at once.

A request reads its images' headers (cheap), then holds its pixel count from the budget while it decodes the
images and uses them; a request that cannot get its share within a short wait is refused with 503 and a
``Retry-After`` header. With ``capacity = max_pixels * max_concurrent_decodes`` at most that many requests at
the pixel limit decode at once (and more, smaller ones), so the memory of decoded images stays under about
``capacity * BYTES_PER_PIXEL`` bytes, whatever the number of clients.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator

from reidkit.serve.uploads import UploadError

#: bytes a decoded pixel takes at most while a request holds it: Pillow keeps RGB in 4 bytes a pixel, and
#: converting another mode (RGBA, palette, grey) to RGB holds a second copy for a moment.
BYTES_PER_PIXEL = 8


class PixelBudget:
    """A counting semaphore over decoded pixels, shared by the threads serving requests.

    Attributes:
        capacity: pixels that may be held at once.
        in_use: pixels held now.
        peak: the most pixels held at once so far.
    """

    def __init__(self, capacity: int, *, wait_s: float) -> None:
        """A budget of ``capacity`` pixels; a request waits at most ``wait_s`` seconds for its share."""
        if capacity < 1:
            raise ValueError(f"the pixel budget must be >= 1, got {capacity}")
        self.capacity = capacity
        self.wait_s = wait_s
        self.in_use = 0
        self.peak = 0
        self._condition = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Hold ``pixels`` of the budget for the body of the ``with`` block.

        A share larger than the whole budget is granted when nothing else is held (it is never refused for
        its size alone: the per-request limit is checked before).

        Raises:
            UploadError: 503 with ``Retry-After`` when the share is not free within ``wait_s`` seconds.
        """
        with self._condition:
            granted = self._condition.wait_for(
                lambda: self.in_use == 0 or self.in_use + pixels <= self.capacity, timeout=self.wait_s
            )
            if not granted:
                raise UploadError(
                    503,
                    f"the server is busy decoding other images ({self.in_use} of {self.capacity} pixels in use); "
                    "retry shortly",
                    headers={"Retry-After": str(max(1, math.ceil(self.wait_s)))},
                )
            self.in_use += pixels
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            with self._condition:
                self.in_use -= pixels
                self._condition.notify_all()
