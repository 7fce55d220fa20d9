"""What a training run needs from its surroundings: the torch.distributed job, a progress bar, the machine.

Shared by the dense loop (:mod:`nucleikit.train.loop`) and the patch classifiers
(:mod:`nucleikit.train.classify`):

* :class:`Dist` — this process's place in a ``torchrun`` job (gloo, CPU), world 1 without one;
* :class:`ProgressBar` — the Rich progress bar of process 0 (loss, validation score, ETA);
* :func:`machine` — the one-line description of the machine saved with the weights.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import Any

__all__ = ["Dist", "ProgressBar", "machine"]


@dataclass(frozen=True)
class Dist:
    """This process's place in a torch.distributed job (world 1 without one)."""

    rank: int = 0
    world: int = 1
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Dist":
        """Join the job that ``torchrun`` describes in the environment (gloo, CPU)."""
        import torch.distributed as dist

        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1 or not dist.is_available():
            return cls()
        owns = False
        if not dist.is_initialized():
            dist.init_process_group("gloo")
            owns = True
        return cls(dist.get_rank(), dist.get_world_size(), owns)

    def broadcast(self, value):
        """Rank 0's ``value`` on every rank (a barrier too)."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


class ProgressBar:
    """The Rich progress bar of process 0 (loss, validation score, ETA); inert when disabled."""

    def __init__(self, enabled: bool, name: str, total: int, step: int, score: float) -> None:
        self.bar = None
        if not enabled:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                            TextColumn("{task.completed}/{task.total}"),
                            TextColumn("loss {task.fields[loss]:.4f}  val {task.fields[score]:.3f}"),
                            TimeElapsedColumn(), TimeRemainingColumn())
        self.bar.start()
        self.task = self.bar.add_task(name, total=total, completed=step, loss=float("nan"), score=max(score, 0.0))

    def update(self, **fields: Any) -> None:
        if self.bar is not None:
            self.bar.update(self.task, **fields)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def machine() -> str:
    """``"<arch> <n> cpu, <system>"``, recorded in the weights' metadata."""
    return f"{platform.machine()} {os.cpu_count()} cpu, {platform.system()}"
