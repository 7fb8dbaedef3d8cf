"""`lsfa train` under torchrun where rank 1's clock never reaches the deadline: the time-limit test for DDP.

    python -m torch.distributed.run --nproc_per_node 2 tests/training/skewed_clock_train.py --config C --time-limit T

Rank 0's clock decides when a time limit is reached; were each rank to read its own, rank 0 would stop while
rank 1 waited for it in the next collective. Here rank 1's clock reads 0, so only the broadcast stops it."""

import os
import sys
import time
import types

from lsfa.training import time_limit

if os.environ.get("RANK") == "1":
    time_limit.time = types.SimpleNamespace(time=lambda: 0.0, perf_counter=time.perf_counter)

if __name__ == "__main__":
    from lsfa.cli import main

    sys.argv = ["lsfa", "train", *sys.argv[1:]]
    main()
