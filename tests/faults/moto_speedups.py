"""The fault suite's moto speed-ups live with the local stack, which applies them too."""

from infra.moto.speedups import faster_moto

__all__ = ["faster_moto"]
