"""The moto layer: moto in a process of its own, its data on disk, its fidelity and speed."""
