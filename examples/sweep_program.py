"""A sweep trial: one strategy at one temperature over a few simulated tasks.

The same file runs alone (`python examples/sweep_program.py`), under `tracked sweep
examples/sweep.yaml`, and under a real `wandb agent`: the parameters arrive in `exp.config`.
"""

from tracked import experiment
from tracked._demo import make_tasks, run_strategy

with experiment("sweep_trial", project="tracked-demo", config={"strategy": "single", "temperature": 0.7}) as exp:
    strategy = exp.config["strategy"]
    for task in make_tasks(int(exp.config.get("n_tasks", 4))):
        answer = run_strategy(strategy, task, temperature=float(exp.config["temperature"]))
        exp.log({"accuracy": 1.0 if answer == task["answer"] else 0.0})
