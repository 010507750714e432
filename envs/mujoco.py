"""MuJoCo control tasks (gymnasium v5) and a discrete-action classic-control task."""

from rlarena.registry import register_env

from .gym_env import GymTask

MUJOCO_TASKS = {
    "halfcheetah": "HalfCheetah-v5",
    "hopper": "Hopper-v5",
    "walker2d": "Walker2d-v5",
    "ant": "Ant-v5",
    "humanoid": "Humanoid-v5",
    "invertedpendulum": "InvertedPendulum-v5",
    "inverteddoublependulum": "InvertedDoublePendulum-v5",
    "swimmer": "Swimmer-v5",
    "reacher": "Reacher-v5",
    "pusher": "Pusher-v5",
    "humanoidstandup": "HumanoidStandup-v5",
}
CLASSIC_TASKS = {"cartpole": "CartPole-v1"}

for _name, _id in {**MUJOCO_TASKS, **CLASSIC_TASKS}.items():
    register_env(_name)(GymTask(_name, _id))
# Any other gymnasium task, by id (env=gym env.id=Swimmer-v5, or a module's own: env.id=pkg.envs:MyEnv-v0).
register_env("gym")(GymTask("gym", None))
