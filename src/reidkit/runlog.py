"""The training log: JSON lines in the run folder (``log.jsonl``), optionally mirrored to TensorBoard."""

from __future__ import annotations

import json
import time
from pathlib import Path

from reidkit._io import atomic_write_text


class JsonLog:
    """Append-only JSON-lines log, optionally mirrored to TensorBoard."""

    def __init__(self, path: Path, tensorboard_dir: Path | None) -> None:
        self.path = path
        self.writer = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as error:
                raise ImportError("TensorBoard logging needs: pip install reidkit[tensorboard]") from error
            self.writer = SummaryWriter(str(tensorboard_dir))

    def truncate_after(self, global_step: int) -> None:
        """Drop entries written after ``global_step`` (a resumed run writes them again)."""
        if not self.path.exists():
            return
        kept = [
            line
            for line in self.path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= global_step
        ]
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def __call__(self, entry: dict) -> None:
        entry = {"time": round(time.time(), 3), **entry}
        with open(self.path, "a") as stream:
            stream.write(json.dumps(entry) + "\n")
        if self.writer is not None:
            step = entry.get("step", 0)
            for key, value in entry.items():
                if isinstance(value, (int, float)) and key not in ("step", "time", "epoch"):
                    self.writer.add_scalar(f"{entry.get('kind', 'log')}/{key}", value, step)
            self.writer.flush()


class NullLog:
    """The log of a process that does not write one (every rank but 0 of a distributed run)."""

    def truncate_after(self, global_step: int) -> None:
        pass

    def __call__(self, entry: dict) -> None:
        pass
