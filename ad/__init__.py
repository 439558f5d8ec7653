"""Algorithm Distillation: in-context reinforcement learning from learning histories."""

__version__ = "0.1.0"
