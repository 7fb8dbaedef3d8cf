"""Train from a config and SIGKILL this process after a given step: a killed run for the resume test.

    python tests/training/killed_train.py CONFIG.yaml STEP

Fault injection lives here, in the tests, and reaches the trainer through ``train(extra_callbacks=...)``."""

import os
import signal
import sys

from transformers import TrainerCallback

from lsfa.training.config import load_config
from lsfa.training.runner import train


class KillAtStep(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    config_path, step = sys.argv[1], int(sys.argv[2])
    train(load_config(config_path), extra_callbacks=[KillAtStep(step)])
