"""Load: eight torchbook kernels at once on this machine, each running the quickstart notebook
(a `fit` with validation and early stopping, predict, save/load weights) through nbclient, as
nbconvert and papermill do. All must finish without an error output and reach the notebook's
accuracy; the wall time and the peak memory (proportional set size, so libtorch's shared pages
count once, of every process the kernels started: kernel, engine, worker, spares, cargo and
rustc) are printed and written to build/load/eight-kernels.json.

Part of `make test-slow` (it needs minutes of both cores), not of `make test`."""

import asyncio
import json
import os
import pathlib
import tempfile
import threading
import time

import nbclient
import nbformat

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "examples" / "01-quickstart.ipynb"
KERNELS = int(os.environ.get("TORCHBOOK_LOAD_KERNELS", "8"))
REPORT = ROOT / "build" / "load" / "eight-kernels.json"


def children_by_parent():
    """{ppid: [pid, ...]} for every process visible in /proc."""
    tree = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = pathlib.Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields start after the last ')'.
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(pid, tree):
    found, stack = [], [pid]
    while stack:
        for child in tree.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def pss_kib(pid):
    """The proportional set size of one process in KiB (0 once it has exited)."""
    try:
        for line in pathlib.Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def session_id(pid):
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2 :].split()[3])
    except (OSError, ValueError):
        return None


class MemorySampler(threading.Thread):
    """Samples, every 0.25 s, the summed PSS of every process descended from this one, plus the
    spare engines (they run detached, in sessions of their own, so they are found by name)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak_kib = 0
        self.peak_processes = 0
        self.samples = 0
        self.stop = threading.Event()

    def processes(self):
        tree = children_by_parent()
        pids = set(descendants(os.getpid(), tree))
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and int(entry.name) not in pids:
                if is_spare(int(entry.name)):
                    pids.add(int(entry.name))
                    pids.update(descendants(int(entry.name), tree))
        return pids

    def run(self):
        while not self.stop.is_set():
            pids = self.processes()
            total = sum(pss_kib(pid) for pid in pids)
            self.samples += 1
            if total > self.peak_kib:
                self.peak_kib, self.peak_processes = total, len(pids)
            self.stop.wait(0.25)


async def run_one(index, workdir):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    folder = workdir / f"kernel-{index}"
    folder.mkdir()
    client = nbclient.NotebookClient(
        nb, kernel_name="torchbook", timeout=1800, resources={"metadata": {"path": str(folder)}}
    )
    started = time.monotonic()
    await client.async_execute()
    return nb, time.monotonic() - started


def last_value(cell):
    results = [o for o in cell.outputs if o.output_type == "execute_result"]
    assert results, f"no value from {cell.source!r}"
    return results[-1].data["text/plain"]


def test_eight_kernels_each_fit_at_once():
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="torchbook-load-"))
    sampler = MemorySampler()
    sampler.start()
    available_before = meminfo("MemAvailable")
    started = time.monotonic()

    async def all_kernels():
        return await asyncio.gather(
            *(run_one(i, workdir) for i in range(KERNELS)), return_exceptions=True
        )

    results = asyncio.run(all_kernels())
    wall = time.monotonic() - started
    sampler.stop.set()
    sampler.join()

    failures = [f"kernel {i}: {r!r}" for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert not failures, "\n".join(failures)
    accuracies = []
    for i, (nb, _) in enumerate(results):
        code = [c for c in nb.cells if c.cell_type == "code"]
        for cell in code:
            errors = [o for o in cell.outputs if o.output_type == "error"]
            assert not errors, f"kernel {i}: {cell.source!r} failed: {errors[0]}"
        assert last_value(code[5]) == "true", f"kernel {i}: saved and loaded weights differ"
        accuracies.append(float(last_value(code[-1])))
    assert min(accuracies) >= 0.9, f"validation accuracies {accuracies}"
    left = leftover_processes(timeout=20)
    assert not left, f"processes left after every kernel shut down: {left}"

    report = {
        "kernels": KERNELS,
        "wall_s": round(wall, 1),
        "per_kernel_s": [round(seconds, 1) for _, seconds in results],
        "peak_pss_mib": round(sampler.peak_kib / 1024),
        "processes_at_peak": sampler.peak_processes,
        "mem_available_before_mib": available_before // 1024,
        "val_accuracy": accuracies,
        "cores": os.cpu_count(),
        "samples": sampler.samples,
    }
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=1) + "\n")
    print(
        f"\n{KERNELS} kernels, each the quickstart notebook with a fit: wall {wall:.0f} s "
        f"(per kernel {min(report['per_kernel_s']):.0f}–{max(report['per_kernel_s']):.0f} s), "
        f"peak memory {report['peak_pss_mib']} MiB PSS over {sampler.peak_processes} processes, "
        f"{os.cpu_count()} cores, {available_before // 1024} MiB available before"
    )


def is_spare(pid):
    try:
        cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return len(cmdline) > 1 and cmdline[0].endswith(b"torchbook") and cmdline[1] == b"spare"


def command_line(pid):
    try:
        return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120].decode()
    except OSError:
        return "(exited)"


def leftover_processes(timeout):
    """The kernels' processes still running (spare engines aside: they wait for the next kernel
    on purpose and exit by themselves when idle), after waiting up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        tree = children_by_parent()
        spares = {pid for pids in tree.values() for pid in pids if is_spare(pid)}
        spare_trees = spares.union(*(descendants(pid, tree) for pid in spares))
        left = [pid for pid in descendants(os.getpid(), tree) if pid not in spare_trees]
        if not left or time.monotonic() > deadline:
            return [(pid, command_line(pid)) for pid in left]
        time.sleep(0.5)


def meminfo(field):
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)
