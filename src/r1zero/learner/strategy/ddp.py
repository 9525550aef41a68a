"""torch DistributedDataParallel: a full replica per rank."""

from __future__ import annotations

import contextlib

from ...schema import DDPStrategyConfig
from .base import Strategy, register_strategy


@register_strategy("ddp", schema=DDPStrategyConfig)
class DDPStrategy(Strategy):
    """torch ``DistributedDataParallel``: a full replica per rank, one gradient all-reduce per optimizer step.

    Every micro-batch but the last runs under ``no_sync()``, so the all-reduce happens once, on the
    accumulated gradient (and the number of micro-batches may differ between ranks).
    """

    name = "ddp"

    def _wrap(self, model):
        from torch.nn.parallel import DistributedDataParallel as DDP

        if not self.distributed:
            return model  # one process: DDP would only add overhead
        ids = [self.device.index] if self.device is not None and self.device.type == "cuda" else None
        return DDP(
            model, device_ids=ids, output_device=ids[0] if ids else None,
            find_unused_parameters=self.cfg.find_unused_parameters,
            bucket_cap_mb=float(self.cfg.bucket_cap_mb),
            gradient_as_bucket_view=self.cfg.gradient_as_bucket_view,
        )

    def accumulate(self, is_last: bool):
        if self.distributed and not is_last:
            return self.train_model.no_sync()
        return contextlib.nullcontext()

    def cleanup(self) -> None:
        """Take down DDP's C++ gradient reducer, then leave the process group (idempotent).

        The reducer holds a reference to the process group, and when that is the last one (the group left, the
        wrapper freed afterwards) the gloo group's destructor runs from the reducer's, with this thread holding
        the GIL, and joins gloo's worker threads; one of them may still be freeing the last collective's
        tensor, for which it needs the GIL: a deadlock (pytorch/pytorch#56297). A rank that stopped right after
        a collective hung there. Dropped here, while ``torch.distributed`` still holds the group, the reducer's
        reference is not the last, and the group goes with Python's, which releases the GIL first. Whoever else
        still holds the wrapper (a traceback) keeps a module without its reducer; no step runs after this.
        """
        wrapper, self.train_model = self.train_model, self.module
        if wrapper is not None and wrapper is not self.module:
            for name in ("logger", "reducer"):  # DDP's C++ logger holds the reducer too
                wrapper.__dict__.pop(name, None)
        del wrapper
        super().cleanup()
