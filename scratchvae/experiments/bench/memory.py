"""Memory: a separate process (PyTorch must not share its memory) trains for
``--memory-epochs`` epochs and reports its resident memory after each, and what one step and
one Adam update allocate."""
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from .contenders import ScratchRun, epoch_order, load_images, make_model
from .machine import limit_threads


def rss_bytes():
    """Resident memory of this process now (Linux), else the peak so far."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return peak_rss_bytes()


def peak_rss_bytes():
    """Peak resident memory of this process: VmHWM on Linux (getrusage's ru_maxrss would
    include the parent's memory at the fork that started this process)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def memory_child(args):
    """Runs in the child process: train, measure, print one JSON line."""
    import tracemalloc

    train, _, _ = load_images(args.dataset, args.data_dir)
    with limit_threads(args.thread_counts[0]):
        run = ScratchRun(make_model(train.shape[1], args.hidden, args.z_dim, args.seed), args.lr)
        batch_size = args.batch_sizes[0]
        after_setup = rss_bytes()
        rss = []
        for epoch in range(args.memory_epochs):
            run.epoch(train, epoch_order(train.shape[0], args.seed, epoch), batch_size)
            rss.append(rss_bytes())
        # What one step and one Adam update allocate, as NumPy reports it to tracemalloc.
        x = train[:batch_size]
        tracemalloc.start()
        run.model.loss_and_grads(x)
        step_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        run.optimizer.step()
        adam_peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
    n_params = sum(p.size for p in run.model.parameters().values())
    print(json.dumps({"batch_size": batch_size, "epochs": args.memory_epochs,
                      "rss_after_setup": after_setup, "rss_per_epoch": rss,
                      "peak_rss": peak_rss_bytes(), "parameters": int(n_params),
                      "step_peak_traced": step_peak, "adam_step_traced": adam_peak}))
    return 0


def measure_memory(args, log=print):
    """Start the memory child (a fresh process: PyTorch must not share its memory)."""
    argv = [sys.executable, "-m", "scratchvae.experiments.bench", "--memory-child",
            "--dataset", args.dataset, "--hidden", str(args.hidden), "--z-dim", str(args.z_dim),
            "--batch-sizes", str(args.batch_sizes[0]), "--threads", str(args.thread_counts[0]),
            "--memory-epochs", str(args.memory_epochs), "--seed", str(args.seed)]
    if args.data_dir is not None:
        argv += ["--data-dir", str(args.data_dir)]
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[3])   # the folder holding scratchvae/
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    log(f"  memory: training {args.memory_epochs} epochs in a separate process")
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the memory run failed:\n{done.stderr.strip()}")
    m = json.loads(done.stdout.strip().splitlines()[-1])
    rss = m["rss_per_epoch"]
    m["growth_after_first_epoch"] = rss[-1] - rss[0]
    return m
