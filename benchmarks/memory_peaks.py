"""Where a `resvae` command's resident memory reaches each new high: the Python code running then.

Never part of the test suite. Runs `resvae ARGS...` in this process while a
thread samples the resident set size every 5 ms. Each time it passes the last
recorded high by `--step` MB, the thread records the main thread's innermost
frames in keras_resvae, the CLI and Keras. The list shows which phase of a
command (imports, building, the training step, saving, evaluation) holds the
peak. Sampling misses highs that last under 5 ms, so it ranks phases; the
kernel's peak (`ru_maxrss`, printed last) is the number to quote; commands that
start child processes (`resvae compare`) also get the largest child's peak.

Examples:
    python benchmarks/memory_peaks.py -- fit --dataset data.npz --arch resnet18 \\
        --width 1 --latent-dim 128 --epochs 1 --batch-size 100 --no-bn --out /tmp/run
    python benchmarks/memory_peaks.py --step 50 -- evaluate /tmp/run --iwae-samples 16
"""

import argparse
import os
import resource
import sys
import threading
import time
import traceback

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
KEPT_FRAMES = 7
OURS_CLI = f"{os.sep}cli{os.sep}"
KERAS_SOURCE = f"{os.sep}keras{os.sep}src{os.sep}"


def resident_gb():
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * PAGE_BYTES / 2**30


def _ours(path):
    # The CLI ships from the top-level cli/ folder; "/cli/" leaves out click's own frames.
    return any(part in path for part in ("keras_resvae", OURS_CLI, KERAS_SOURCE))


class PeakSampler(threading.Thread):
    """Records `(GB, innermost frames)` of `thread_id` at each new resident high."""

    def __init__(self, thread_id, step_gb):
        super().__init__(daemon=True)
        self.thread_id, self.step_gb = thread_id, step_gb
        self.highs = []
        self.stopped = threading.Event()

    def run(self):
        best = 0.0
        while not self.stopped.is_set():
            now = resident_gb()
            if now > best + self.step_gb:
                best = now
                frame = sys._current_frames().get(self.thread_id)
                stack = traceback.extract_stack(frame) if frame else []
                frames = [
                    f"{os.path.basename(entry.filename)}:{entry.lineno} {entry.name}"
                    for entry in stack
                    if _ours(entry.filename)
                ]
                self.highs.append((now, " < ".join(reversed(frames[-KEPT_FRAMES:]))))
            time.sleep(0.005)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--step", type=float, default=25.0, help="MB between recorded highs")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then resvae's arguments")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    sampler = PeakSampler(threading.get_ident(), args.step / 1024)
    sampler.start()
    from keras_resvae.cli.main import main as resvae

    try:
        resvae(command, standalone_mode=False)
    finally:
        sampler.stopped.set()
        sampler.join()
        for gb, frames in sampler.highs:
            print(f"{gb:6.3f} GB  {frames}")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"peak resident memory (ru_maxrss): {peak:.2f} GB")
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        if children:
            # `resvae compare` trains each run in a child process of its own.
            print(f"largest child process's peak (ru_maxrss): {children:.2f} GB")


if __name__ == "__main__":
    main()
