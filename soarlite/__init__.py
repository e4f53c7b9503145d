"""soarlite: SOAR (a teacher LoRA learns to write questions that make a student LoRA improve) on one GPU or a CPU."""

__version__ = "0.1.0"
