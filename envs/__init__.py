"""Task families for in-context RL, registered with Gymnasium on import.

Adding a family: write ``envs/<family>.py`` with its env class and a ``TaskFamily`` subclass
decorated with ``@register_family``, then add one ``_register(...)`` line below.
"""

from gymnasium.envs.registration import register, registry

from envs.base import Task, TaskError, TaskFamily, TaskSplit, family_names, make_family, task_key
from envs.darkroom import DarkRoom, DarkRoomHard


def _register(env_id: str, entry_point: str, **kwargs) -> None:
    if env_id not in registry:
        register(id=env_id, entry_point=entry_point, kwargs=kwargs)


_register("DarkRoom-v0", "envs.darkroom:DarkRoomEnv", size=9, goal=(0, 0))
_register("DarkRoomHard-v0", "envs.darkroom:DarkRoomEnv", size=17, goal=(0, 0), hard=True)

__all__ = [
    "DarkRoom",
    "DarkRoomHard",
    "Task",
    "TaskError",
    "TaskFamily",
    "TaskSplit",
    "family_names",
    "make_family",
    "task_key",
]
