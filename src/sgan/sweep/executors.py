"""Where the cells run: worker processes on this machine (one GPU each where there are GPUs), or
Ray tasks on a cluster. An executor knows cells as configs to train, nothing of tables."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import os
import signal
import sys
import threading
from typing import Any

from ..config import Config
from ..errors import STOPS, Interrupted, SganError, on_signals, signals_deferred
from .cells import train_cell

STOP_SECONDS = 20  # how long a stopped cell may take to finish its step before it is killed


def _run_cell(values: dict[str, Any], threads: int, gpu: str | None, errors: Any, environ: dict[str, str]) -> None:
    """The local executor's cell process: its one-line error goes to the pipe `errors`, a signal
    ends it quietly. It runs in the sweep's environment as it is now (a fork server's is the one
    it started with)."""
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the fork server ignores them, and may have
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # them blocked too, as its parent did (cell_processes)
        if hasattr(signal, "pthread_sigmask"):  # POSIX
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)
        os.environ.clear()
        os.environ.update(environ)
        if gpu is not None:  # before CUDA starts in this process: the cell sees its GPU only, as cuda:0
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        train_cell(values, threads)
    except SganError as e:
        errors.send(f"{values['out']}: {e}")
        sys.exit(1)
    except Interrupted as e:  # Ctrl-C reaches the whole process group; the parent says it
        sys.exit(128 + e.signum)
    except KeyboardInterrupt:  # the same, before the run's own handlers are set
        sys.exit(128 + signal.SIGINT)


def cell_processes(cuda: bool) -> multiprocessing.context.BaseContext:
    """Where cell processes come from. On Linux, for the CPU: forked from a server process that
    imported torch once, where a fresh Python costs each cell seconds of imports (torch, and
    torch._dynamo, which the first optimizer imports). Cells given a GPU start afresh (CUDA must
    not be touched before a fork), and so does every cell elsewhere, or where no server starts.
    `cuda`: some cell may use a GPU."""
    spawn = multiprocessing.get_context("spawn")
    if cuda or sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return spawn
    ctx = multiprocessing.get_context("forkserver")
    # third-party modules only: a Python 3.11 server has its own sys.path, the cells take the sweep's
    ctx.set_forkserver_preload(["torch._dynamo", "matplotlib.pyplot"])
    # The server starts with SIGINT and SIGTERM ignored (an ignored signal stays ignored across
    # exec), so that one sent to the whole process group (Ctrl-C, timeout, scancel) cannot end it
    # while it reports its cells' exits to this process, which stops them. Meanwhile this process
    # blocks them: one that arrives waits for its own handlers (Linux keeps a blocked signal pending).
    before = signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
    handlers = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOPS}
    try:
        multiprocessing.forkserver.ensure_running()
    except OSError:  # e.g. a TMPDIR too long for its socket's path
        return spawn
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
    return ctx


def visible_gpus() -> list[str]:
    """The CUDA devices cells may use, as CUDA_VISIBLE_DEVICES entries."""
    import torch

    count = torch.cuda.device_count()
    listed = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[:count] if "CUDA_VISIBLE_DEVICES" in os.environ else [str(i) for i in range(count)]


def wants_gpu(cell: dict[str, Any]) -> bool:
    return cell.get("device", Config.device) in ("auto", "cuda")


def run_cells(cells: list[dict[str, Any]], *, workers: int, progress: bool, cpus_per_cell: int | None = None) -> None:
    """Each cell in a process of its own, `workers` at a time; where there are GPUs and the cells
    may use one, one cell per GPU at a time, each seeing only its own
    (CUDA_VISIBLE_DEVICES). A failed cell or a signal to this process stops the running cells
    within STOP_SECONDS; each checkpoints, and the next run resumes it."""
    from tqdm import tqdm

    gpus = visible_gpus() if any(wants_gpu(c) for c in cells) else []
    ctx = cell_processes(bool(gpus) or any(c.get("device", Config.device).startswith("cuda") for c in cells))
    workers = min(workers, len(gpus)) if gpus else workers
    threads = cpus_per_cell or max(1, (os.cpu_count() or 1) // workers)
    free = list(gpus)  # the GPUs no running cell holds
    waiting, running, errors, held = list(cells), [], {}, {}  # errors: each process's end of its pipe
    bar = tqdm(total=len(cells), desc=f"sweep ({len(cells)} cells to run)", disable=not progress)
    try:
        while waiting or running:
            while waiting and len(running) < workers:
                cell = waiting.pop(0)
                gpu = free.pop(0) if gpus and wants_gpu(cell) else None
                errors_out, errors_in = ctx.Pipe(duplex=False)  # a pipe, not a queue: no semaphore to leak on kill
                process = ctx.Process(target=_run_cell, args=(cell, threads, gpu, errors_in, dict(os.environ)))
                with signals_deferred():  # a started cell is listed before a signal stops the sweep: it is stopped too
                    process.start()
                    running.append(process)
                errors[process], held[process] = errors_out, gpu
            multiprocessing.connection.wait([p.sentinel for p in running])
            for p in [p for p in running if p.exitcode is not None]:
                running.remove(p)
                if held[p] is not None:
                    free.append(held[p])
                bar.update()
                if p.exitcode:
                    error = errors[p].recv() if errors[p].poll() else f"a cell ended with exit code {p.exitcode}"
                    raise SganError(error)
    finally:  # SIGTERM: a cell in training finishes its step and exits cleanly; one that lingers is killed
        for p in running:
            p.terminate()
        for p in running:
            p.join(timeout=STOP_SECONDS)
            p.kill()
            p.join()
        bar.close()


def _ray_cell(values: dict[str, Any], threads: int) -> str | None:
    """A cell as a Ray task: None when it finished, else its one-line error."""
    try:
        train_cell(values, threads)
    except SganError as e:
        return f"{values['out']}: {e}"
    return None


def run_cells_on_ray(cells: list[dict[str, Any]], *, address: str | None, cpus_per_cell: int | None,
                     gpus_per_cell: float | None, progress: bool) -> None:
    """Each cell one Ray task asking for its CPUs (its torch threads) and GPUs; Ray places them
    on the cluster and retries a task whose worker died, and the retried cell resumes from its
    checkpoint. Every node must see the sweep folder (a shared filesystem). A failed cell or a
    signal to this process cancels the running cells (each keeps its last checkpoint) and shuts
    down a local cluster this sweep started."""
    try:
        import ray
    except ImportError:
        raise SganError("--executor ray needs Ray: pip install 'sgan[ray]'") from None
    from tqdm import tqdm

    ray.init(address=address, include_dashboard=False, log_to_driver=True)
    cpus = cpus_per_cell or 1
    if gpus_per_cell is None:
        gpus_per_cell = 1 if any(wants_gpu(c) for c in cells) and ray.cluster_resources().get("GPU", 0) else 0
    task = ray.remote(num_cpus=cpus, num_gpus=gpus_per_cell, max_retries=3)(_ray_cell)
    pending = [task.remote(cell, cpus) for cell in cells]
    bar = tqdm(total=len(cells), desc=f"sweep on Ray ({len(cells)} cells to run)", disable=not progress)
    caught: list[int] = []  # a signal is only noted inside Ray's calls (an exception raised there breaks them)
    try:
        with on_signals(lambda signum, frame: caught.append(signum)):  # in place of Ray's, which abort the driver
            while pending and not caught:
                done, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                for ref in done:
                    bar.update()
                    if error := ray.get(ref):
                        raise SganError(error)
        if caught:
            raise Interrupted(caught[0], "with the cells checkpointed; rerun the sweep to continue them")
    except ray.exceptions.RayError as e:
        raise SganError(f"a cell failed on Ray: {str(e).strip().splitlines()[-1]}") from None
    finally:
        for ref in pending:
            ray.cancel(ref)  # a KeyboardInterrupt in the cell: its last checkpoint is what the next run resumes
        if pending:
            ray.wait(pending, num_returns=len(pending), timeout=STOP_SECONDS)
        ray.shutdown()  # a cluster ray.init started here stops with it; a joined one keeps running
        bar.close()


