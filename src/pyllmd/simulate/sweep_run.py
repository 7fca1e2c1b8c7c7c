"""`pyllmd simulate --sweep`: the shell around `sweep.py` (files, processes, Ray, plot).

It reads the sweep file and the base documents, checks every point's edits before any point
runs, writes each point's edited stack and workload to `OUTPUT/points/<point>/` and runs
`simulate()` there, on a local process pool (`--parallelism`) or as Ray tasks
(`--ray-address`, the optional `pyllmd[ray]` extra). Then it writes `sweep.csv`, `sweep.md`,
`sweep.json` and `pareto.png` to OUTPUT. Every point uses the same `--seed`, so the same
command gives the same tables.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib
import json
import logging
import multiprocessing
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from pyllmd.core import logging as pylog
from pyllmd.core.errors import ConfigError, one_line
from pyllmd.simulate import sweep as sw
from pyllmd.simulate.run import PROG, SimulateConfig, _read_yaml, simulate

__all__ = ["run_point", "run_sweep"]

log = logging.getLogger("pyllmd.simulate.sweep")
RAY_CONNECT_TIMEOUT = 10.0  # seconds
RAY_MISSING = "--ray-address: Ray is not installed: pip install 'pyllmd[ray]'"


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a sweep runs: the parameters, the points and each point's edited documents."""

    sweep: sw.Sweep
    points: list[sw.Point]
    docs: list[dict[str, Any]]
    stack: str
    workload: str


def _base_file(flag_value: str, in_sweep: str, key: str, sweep_path: Path) -> str:
    if flag_value:
        return flag_value
    if not in_sweep:
        raise ConfigError(f"--sweep {sweep_path}: {key}: required (or give --{key})")
    return str(sweep_path.parent / in_sweep)


def prepare(config: SimulateConfig) -> Plan:
    """Read and check the sweep: ConfigError (one line) on the first problem of any point."""
    path = Path(config.sweep)
    where = f"--sweep {path}"

    def read(name: str) -> str:
        return (path.parent / name).read_text(encoding="utf-8")

    sweep = sw.parse_sweep(_read_yaml("sweep", config.sweep), where, read)
    stack = _base_file(config.stack, sweep.stack, "stack", path)
    workload = _base_file(config.workload, sweep.workload, "workload", path)
    base = {"stack": _read_yaml("stack", stack), "workload": _read_yaml("workload", workload)}
    points = sw.expand(sweep)
    docs = [sw.edit_documents(base, p, sweep.parameters, where) for p in points]
    return Plan(sweep, points, docs, stack, workload)


def run_point(fields: dict[str, Any], cwd: str) -> dict[str, Any]:
    """Simulate one point (in a worker process or a Ray task): its metrics or its error."""
    if cwd and os.getcwd() != cwd:  # a Ray worker: relative paths inside the documents
        os.chdir(cwd)
    config = SimulateConfig(**fields)
    try:
        simulate(config)
        out = Path(config.output)
        summary = json.loads((out / "summary_lifecycle_metrics.json").read_text(encoding="utf-8"))
        slo = json.loads((out / "slo_and_cost.json").read_text(encoding="utf-8"))
    except (ConfigError, OSError) as e:
        return {"metrics": {}, "error": one_line(str(e))}
    except Exception as e:  # a defect: the row says so, the log has the traceback to report
        log.exception("point %s failed", config.output)
        return {"metrics": {}, "error": one_line(f"internal error: {type(e).__name__}: {e}")}
    return {"metrics": sw.metrics_of(summary, slo), "error": None}


Task = tuple[dict[str, Any], str]


def _run_local(
    tasks: Sequence[Task], workers: int, v: int, done: Callable[[int], None]
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = [{} for _ in tasks]
    if workers <= 1:
        for i, task in enumerate(tasks):
            results[i] = run_point(*task)
            done(i)
        return results
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),  # no fork of a process with threads
        initializer=pylog.setup,
        initargs=(v,),
    ) as pool:
        futures = {pool.submit(run_point, *task): i for i, task in enumerate(tasks)}
        for future in concurrent.futures.as_completed(futures):
            results[futures[future]] = future.result()
            done(futures[future])
    return results


def _ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ModuleNotFoundError:
        raise ConfigError(RAY_MISSING) from None


def _reachable(address: str) -> None:
    """ConfigError unless HOST:PORT (or ray://HOST:PORT) accepts a connection: Ray itself
    retries an address that does not answer for minutes."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        if address == "auto":  # Ray's own look-up of the cluster this machine belongs to
            return
        raise ConfigError(f"--ray-address {address}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_CONNECT_TIMEOUT).close()
    except OSError as e:
        raise ConfigError(f"--ray-address {address}: cannot connect: {e.strerror or e}") from None


def _run_ray(
    address: str, tasks: Sequence[Task], done: Callable[[int], None]
) -> list[dict[str, Any]]:
    ray = _ray()
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except Exception as e:  # Ray raises ConnectionError, RuntimeError, ValueError...
        raise ConfigError(f"--ray-address {address}: {one_line(str(e))}") from None
    try:
        remote = ray.remote(num_cpus=1)(run_point)
        refs = [remote.remote(*task) for task in tasks]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[dict[str, Any]] = [{} for _ in tasks]
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                results[index[ref]] = ray.get(ref)
                done(index[ref])
        return results
    finally:
        ray.shutdown()


def _slo_note(config: SimulateConfig) -> str:
    slos = [f"TTFT <= {config.slo_ttft:g} s"] if config.slo_ttft else []
    slos += [f"ITL <= {config.slo_itl:g} s"] if config.slo_itl else []
    slo = " and ".join(slos) if slos else "none given (attainment: the requests that succeeded)"
    return (
        f"Seed {config.seed}. SLO: {slo}. Cost: each variant's variantCost x its "
        "replica-seconds. Latencies in seconds."
    )


def plot_pareto(out: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Cost (x) against SLO attainment (y), every point; the Pareto front joined and labelled."""
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if not r["error"]]
    front = sorted((r for r in ok if r["pareto"]), key=lambda r: r["metrics"]["cost"])
    fig, ax = plt.subplots(figsize=(9, 5.5))
    ax.scatter(
        [r["metrics"]["cost"] for r in ok],
        [r["metrics"]["slo_attainment"] for r in ok],
        s=16,
        color="0.6",
        label="point",
    )
    ax.plot(
        [r["metrics"]["cost"] for r in front],
        [r["metrics"]["slo_attainment"] for r in front],
        marker="o",
        color="tab:blue",
        label="Pareto front",
    )
    labels: dict[tuple[float, float], list[str]] = {}  # points at the same place: one label
    for r in front:
        labels.setdefault((r["metrics"]["cost"], r["metrics"]["slo_attainment"]), []).append(
            r["point"]
        )
    for xy, names in labels.items():
        ax.annotate(
            ", ".join(names),
            xy,
            textcoords="offset points",
            xytext=(4, -10),
            fontsize=7,
        )
    ax.set_xlabel("cost (variantCost x replica-seconds)")
    ax.set_ylabel("SLO attainment")
    ax.set_title("Cost against SLO attainment")
    ax.legend(loc="best")
    path = out / "pareto.png"
    fig.savefig(path, dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _write_points(plan: Plan, config: SimulateConfig, out: Path) -> list[Task]:
    """Each point's edited stack and workload in OUTPUT/points/<point>/; its settings."""
    tasks: list[Task] = []
    for point, docs in zip(plan.points, plan.docs, strict=True):
        pdir = out / "points" / point.name
        pdir.mkdir(parents=True, exist_ok=True)
        (pdir / "stack.yaml").write_text(_dump(docs["stack"]), encoding="utf-8")
        (pdir / "workload.yaml").write_text(_dump(docs["workload"]), encoding="utf-8")
        one = dataclasses.replace(
            config,
            stack=str((pdir / "stack.yaml").resolve()),
            workload=str((pdir / "workload.yaml").resolve()),
            output=str(pdir.resolve()),
            sweep="",
            parallelism=0,
            ray_address="",
        )
        tasks.append((dataclasses.asdict(one), os.getcwd()))
    return tasks


def _write_reports(plan: Plan, config: SimulateConfig, rows: list[dict[str, Any]]) -> None:
    out = Path(config.output)
    names = [p.name for p in plan.sweep.parameters]
    (out / "sweep.csv").write_text(sw.to_csv(names, rows), encoding="utf-8")
    title = f"Sweep {Path(config.sweep).name}"
    md = sw.to_markdown(names, rows, title, _slo_note(config))
    (out / "sweep.md").write_text(md, encoding="utf-8")
    doc = {
        "sweep": config.sweep,
        "stack": plan.stack,
        "workload": plan.workload,
        "seed": config.seed,
        "slo": {"ttft_s": config.slo_ttft or None, "itl_s": config.slo_itl or None},
        "parameters": names,
        "points": rows,
    }
    (out / "sweep.json").write_text(sw.to_json(doc), encoding="utf-8")
    plot_pareto(out, rows)


def run_sweep(config: SimulateConfig) -> int:
    """`pyllmd simulate --sweep`: every point, then the tables and the plot."""
    if config.ray_address:  # before any work: the extra is installed, the cluster answers
        _ray()
        _reachable(config.ray_address)
    plan = prepare(config)
    out = Path(config.output)
    tasks = _write_points(plan, config, out)
    finished = 0

    def done(i: int) -> None:
        nonlocal finished
        finished += 1
        log.info("point %s done (%d of %d)", plan.points[i].name, finished, len(tasks))

    if config.ray_address:
        results = _run_ray(config.ray_address, tasks, done)
    else:
        workers = min(config.parallelism or os.cpu_count() or 1, len(tasks))
        results = _run_local(tasks, workers, config.v, done)
    # an error names the point's files relative to OUTPUT: the same tables wherever it is
    prefix = str(out.resolve()) + os.sep
    for r in results:
        r["error"] = r["error"].replace(prefix, "") if r["error"] else None
    rows = sw.rows(plan.points, plan.sweep.parameters, results)
    _write_reports(plan, config, rows)
    failed = sum(1 for r in rows if r["error"])
    front = sum(1 for r in rows if r["pareto"])
    print(
        f"{PROG}: swept {len(rows)} points ({failed} failed), {front} on the Pareto front; "
        f"wrote sweep.csv, sweep.md, sweep.json and pareto.png to {config.output}"
    )
    return 0
