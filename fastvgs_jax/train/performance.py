"""What a training step costs: model FLOPs per batch kind, the peak they are measured against
(MFU), and the run's parameters by part, recorded in the manifest.

The analytic count (``train/flops.py``) of each (phase, batch kind) step is checked once, at
its first batch, against XLA's cost analysis of the very step the loop runs (lowering reuses
the jit's trace: nothing recompiles); a disagreement beyond 10 % is logged. The metric lines
then carry ``model_flops_per_step``, ``model_flops_per_second`` and ``mfu``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import ml_collections

from fastvgs_jax.train import flops, manifest, mfu, parameters

log = logging.getLogger(__name__)


class StepCosts:
    """Model FLOPs of each step kind and the run's peak FLOP/s (see the module docstring)."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str, params: Mapping):
        self.config = config
        self.workdir = workdir
        self.peak, self.peak_source = mfu.device_peak(
            config.precision, config.get("peak_flops_per_device")
        )
        self.record = {
            "parameters": parameters.parameter_counts(params, config.model),
            "peak_flops": self.peak,
            "peak_source": self.peak_source,
            "flops_convention": flops.CONVENTION,
            "steps": {},
        }
        manifest.update(workdir, "performance", self.record)
        self._flops: dict[str, float] = {}

    def step_flops(self, phase, kind: str, step: Callable, args: tuple, batch: Mapping) -> float:
        """Model FLOPs of ``phase``'s ``kind`` step (analytic), checked against XLA the
        first time; ``step(*args)`` is the jitted step about to run on the global ``batch``."""
        key = f"{phase.name}/{kind}"
        if key in self._flops:
            return self._flops[key]
        ssl, vgs = phase.needs(kind)
        image = batch.get("image", batch.get("regions"))
        analytic = flops.step_flops(
            self.config.model,
            *batch["audio"].shape,
            ssl=ssl,
            vgs=vgs,
            image_batch_shape=None if image is None else tuple(image.shape),
            sample_rate=int(self.config.data.sample_rate),
        )
        xla = flops.xla_step_flops(step.lower(*args))
        check = flops.check_against_xla(analytic["total"] + analytic["recompute"], xla)
        if xla is not None and not check["within_tolerance"]:
            log.warning(
                "%s step: analytic %.4g FLOPs vs XLA's %.4g (ratio %.3f)",
                key,
                check["analytic"],
                xla,
                check["ratio"],
            )
        self.record["steps"][key] = {
            "analytic_flops_per_step": analytic["total"],
            "analytic_flops_per_audio_second": analytic["per_audio_second"],
            "recompute_flops": analytic["recompute"],
            "xla_flops_per_step": xla,
            "ratio": check["ratio"],
            "within_tolerance": check["within_tolerance"],
            "frames": analytic["frames"],
            "encoder_layers": analytic["encoder_layers"],
            "parts": {name: part["total"] for name, part in analytic["parts"].items()},
        }
        manifest.update(self.workdir, "performance", self.record)
        self._flops[key] = float(analytic["total"])
        return self._flops[key]
