"""Task families for in-context RL, registered with Gymnasium on import.

A family of your own needs no change here: subclass ``TaskFamily`` in your own module and name
it ``module:Class`` in the config (README, "Your own task family"; ``examples/``). A family that
ships with the project: ``envs/<family>.py`` with its env class and a ``TaskFamily`` subclass
decorated with ``@register_family``, then one ``_register(...)`` line below.
"""

from gymnasium.envs.registration import register, registry

from envs.bandit import Bandit
from envs.base import TaskFamily, family_names, has_oracle, make_family
from envs.darkroom import DarkRoom, DarkRoomHard
from envs.darkroom_pixels import DarkRoomPixels
from envs.halfcheetah_vel import HalfCheetahVel
from envs.keytodoor import DarkKeyToDoor
from envs.minigrid_family import MiniGridEmpty
from envs.pointrobot import PointRobot
from envs.split import TaskSplit
from envs.tasks import Task, TaskError, task_key


def _register(env_id: str, entry_point: str, **kwargs) -> None:
    if env_id not in registry:
        register(id=env_id, entry_point=entry_point, kwargs=kwargs)


_register("DarkRoom-v0", "envs.darkroom:DarkRoomEnv", size=9, goal=(0, 0))
_register("DarkRoomHard-v0", "envs.darkroom:DarkRoomEnv", size=17, goal=(0, 0), hard=True)
_register("DarkRoomPixels-v0", "envs.darkroom_pixels:DarkRoomPixelsEnv", size=9, goal=(0, 0))
_register("DarkKeyToDoor-v0", "envs.keytodoor:DarkKeyToDoorEnv", size=9, key=(0, 0), door=(8, 8))
_register("Bandit-v0", "envs.bandit:BanditEnv")
_register("ADMiniGridEmpty-v0", "envs.minigrid_family:MiniGridEmptyEnv", size=7, goal=(5, 5))
_register("PointRobot-v0", "envs.pointrobot:PointRobotEnv", goal=(0.0, 1.0))
_register("HalfCheetahVel-v0", "envs.halfcheetah_vel:HalfCheetahVelEnv", velocity=1.0)

__all__ = [
    "Bandit",
    "DarkKeyToDoor",
    "DarkRoom",
    "DarkRoomHard",
    "DarkRoomPixels",
    "HalfCheetahVel",
    "MiniGridEmpty",
    "PointRobot",
    "Task",
    "TaskError",
    "TaskFamily",
    "TaskSplit",
    "family_names",
    "has_oracle",
    "make_family",
    "task_key",
]
