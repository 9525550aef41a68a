"""torch DistributedDataParallel: a full replica per rank."""

from __future__ import annotations

import contextlib

from .base import Strategy


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
