"""A sweep's launch commands for a cluster, written, not run: SLURM batch scripts, Cloud TPU
VM ``gcloud`` lines, or plain shell scripts (one per host).

Every run is one ``launch/train.py`` job, with ``--multihost`` where it spans several hosts
(one process per host: JAX finds its peers under SLURM and on TPU VMs; the shell scripts
give ``--coordinator_address/--num_processes/--process_id``). There is no scheduler here:
SLURM or the TPU VM (or whoever runs the scripts) schedules.

What ``write`` puts under ``<out>/emit/``::

    configs/<run>.json     each run's resolved config (launch/train.py reads it through
                           configs/resolved.py), and sweep.json: the sweep's settings
    slurm/                 prepare.sbatch, <run>.sbatch, collect.sbatch, submit.sh
    tpu_vm.sh              gcloud lines: copy the configs, prepare, each run, collect
    shell/host<i>.sh       one per host: prepare (host 0), each run, collect (host 0)

"prepare" builds the corpus and pretrains the sweep's image tower once before the runs;
"collect" evaluates the finished runs and writes sweep.jsonl / sweep.md (``launch/sweep.py
--stage=prepare|collect`` on the emitted settings).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence

import ml_collections

from fastvgs_jax.sweep import configs_json, plan

FORMATS = ("slurm", "tpu_vm", "shell")
EMIT_DIR = "emit"
RESOLVED = "configs/resolved.py"  # the config file that loads a JSON config
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def emit_dir(settings: ml_collections.ConfigDict) -> str:
    return os.path.join(settings.out, EMIT_DIR)


def config_path(settings: ml_collections.ConfigDict, name: str) -> str:
    """Where a run's config JSON goes (relative to the checkout when ``out`` is)."""
    return os.path.join(emit_dir(settings), "configs", f"{name}.json")


def settings_path(settings: ml_collections.ConfigDict) -> str:
    return os.path.join(emit_dir(settings), "configs", "sweep.json")


def _cluster(settings: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    return settings.cluster


def _repo(settings) -> str:
    return str(_cluster(settings).repo or _REPO)


def _setup_lines(settings) -> list[str]:
    setup = _cluster(settings).setup or ""
    return [line.strip() for line in str(setup).replace(";", "\n").splitlines() if line.strip()]


def train_command(
    settings: ml_collections.ConfigDict,
    spec: plan.RunSpec,
    hosts: int,
    process: tuple[str, int, int] | None = None,
) -> list[str]:
    """``launch/train.py`` for one run: its config, workdir, history flag; ``--multihost``
    when it spans hosts (or, with ``process`` = (coordinator, count, index), the explicit
    flags)."""
    argv = [
        str(_cluster(settings).python),
        "launch/train.py",
        f"--config={RESOLVED}:{config_path(settings, spec.name)}",
        f"--workdir={plan.run_dir(settings.out, spec.name)}",
        f"--eval_history={'true' if settings.study.history.enabled else 'false'}",
    ]
    if process is not None:
        coordinator, count, index = process
        argv += [
            f"--coordinator_address={coordinator}",
            f"--num_processes={count}",
            f"--process_id={index}",
        ]
    elif hosts > 1:
        argv.append("--multihost")
    return argv


def sweep_command(settings: ml_collections.ConfigDict, stage: str) -> list[str]:
    """``launch/sweep.py`` on the emitted settings, for the prepare or collect stage."""
    return [
        str(_cluster(settings).python),
        "launch/sweep.py",
        f"--config={RESOLVED}:{settings_path(settings)}",
        f"--stage={stage}",
    ]


def _join(argv: Sequence[str]) -> str:
    """A shell line; ``$VAR`` references inside an argument stay expandable."""
    out = []
    for arg in argv:
        if "$" in arg:
            out.append('"' + arg.replace('"', '\\"') + '"')
        else:
            out.append(shlex.quote(arg))
    return " ".join(out)


def check_hosts(settings: ml_collections.ConfigDict, hosts: int) -> None:
    """Each global batch splits evenly over the hosts' processes."""
    if hosts < 1:
        raise ValueError(f"hosts={hosts}: a run needs at least one host")
    data = settings.study.run.data
    for stream in plan.STREAMS:
        batch = int(data[stream].batch_size)
        if batch % hosts:
            raise ValueError(
                f"study.run.data.{stream}.batch_size={batch} does not split over {hosts} "
                "hosts (one process each); pick a batch or a host count that divides it"
            )


# --- SLURM ---------------------------------------------------------------------------------


def _sbatch(settings, job: str, nodes: int, command: list[str], logs: str) -> str:
    s = _cluster(settings).slurm
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={settings.name}-{job}",
        f"#SBATCH --nodes={nodes}",
        "#SBATCH --ntasks-per-node=1",  # one JAX process per host, all its accelerators
    ]
    if int(s.gpus_per_host):
        lines.append(f"#SBATCH --gpus-per-node={int(s.gpus_per_host)}")
    if int(s.cpus_per_task):
        lines.append(f"#SBATCH --cpus-per-task={int(s.cpus_per_task)}")
    if s.time:
        lines.append(f"#SBATCH --time={s.time}")
    if s.partition:
        lines.append(f"#SBATCH --partition={s.partition}")
    if s.account:
        lines.append(f"#SBATCH --account={s.account}")
    for extra in str(s.extra or "").split(";"):
        if extra.strip():
            lines.append(f"#SBATCH {extra.strip()}")
    lines += [
        f"#SBATCH --output={os.path.join(logs, '%x-%j.out')}",
        "set -euo pipefail",
        f"cd {shlex.quote(_repo(settings))}",
        *_setup_lines(settings),
        # srun starts the --ntasks (= nodes) processes; JAX reads SLURM's variables.
        f"srun --nodes={nodes} --ntasks={nodes} --ntasks-per-node=1 {_join(command)}",
    ]
    return "\n".join(lines) + "\n"


def slurm_files(
    settings: ml_collections.ConfigDict, specs: Sequence[plan.RunSpec], hosts: int
) -> dict[str, str]:
    """{file name: text}: prepare, one job per run (``hosts`` nodes), collect, submit.sh."""
    logs = os.path.join(_repo(settings), emit_dir(settings), "slurm", "logs")
    files = {
        "prepare.sbatch": _sbatch(settings, "prepare", 1, sweep_command(settings, "prepare"), logs)
    }
    for spec in specs:
        files[f"{spec.name}.sbatch"] = _sbatch(
            settings, spec.name, hosts, train_command(settings, spec, hosts), logs
        )
    files["collect.sbatch"] = _sbatch(
        settings, "collect", 1, sweep_command(settings, "collect"), logs
    )
    submit = [
        "#!/bin/bash",
        "# Submits the sweep: prepare, then every run (in parallel, as SLURM schedules them),",
        "# then collect (after all runs, whether they succeeded or not).",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        f"mkdir -p {shlex.quote(logs)}",
        "prepare=$(sbatch --parsable prepare.sbatch)",
        "runs=()",
    ]
    for spec in specs:
        submit.append(
            f"runs+=($(sbatch --parsable --dependency=afterok:$prepare "
            f"{shlex.quote(spec.name + '.sbatch')}))"
        )
    submit += [
        'ids=$(IFS=:; echo "${runs[*]}")',
        "sbatch --dependency=afterany:$ids collect.sbatch",
    ]
    files["submit.sh"] = "\n".join(submit) + "\n"
    return files


# --- Cloud TPU VM --------------------------------------------------------------------------


def _gcloud_target(settings) -> list[str]:
    t = _cluster(settings).tpu_vm
    args = [f"--zone={t.zone}"]
    if t.project:
        args.append(f"--project={t.project}")
    return args


def _tpu_ssh(settings, command: list[str], worker: str) -> str:
    t = _cluster(settings).tpu_vm
    remote = " && ".join(
        [f"cd {shlex.quote(_repo(settings))}", *_setup_lines(settings), _join(command)]
    )
    argv = [
        "gcloud",
        "compute",
        "tpus",
        "tpu-vm",
        "ssh",
        str(t.name),
        *_gcloud_target(settings),
        f"--worker={worker}",
        f"--command={remote}",
    ]
    return shlex.join(argv)


def tpu_vm_script(
    settings: ml_collections.ConfigDict, specs: Sequence[plan.RunSpec], hosts: int
) -> str:
    """gcloud lines, in order: copy the configs to every worker, prepare on every worker
    (each builds the corpus and the tower on its disk), each run on all workers (one
    process per host: ``--worker=all``), collect on worker 0."""
    t = _cluster(settings).tpu_vm
    configs = os.path.dirname(settings_path(settings))
    copy = [
        "gcloud",
        "compute",
        "tpus",
        "tpu-vm",
        "scp",
        "--recurse",
        configs,
        f"{t.name}:{os.path.join(_repo(settings), os.path.dirname(configs))}",
        *_gcloud_target(settings),
        "--worker=all",
    ]
    lines = [
        "#!/bin/bash",
        f"# Sweep {settings.name} on the TPU VM {t.name}: {len(specs)} run(s), one after "
        f"another, each on its {hosts} host(s).",
        "set -euo pipefail",
        _tpu_ssh(settings, ["mkdir", "-p", os.path.dirname(configs)], "all"),
        shlex.join(copy),
        _tpu_ssh(settings, sweep_command(settings, "prepare"), "all"),
    ]
    for spec in specs:
        lines.append(_tpu_ssh(settings, train_command(settings, spec, hosts), "all"))
    lines.append(_tpu_ssh(settings, sweep_command(settings, "collect"), "0"))
    return "\n".join(lines) + "\n"


# --- Plain shell ---------------------------------------------------------------------------


def shell_files(
    settings: ml_collections.ConfigDict, specs: Sequence[plan.RunSpec], hosts: int
) -> dict[str, str]:
    """host<i>.sh for each host: run them at once, one per host (host 0 prepares first and
    collects last; with a disk of its own, a host runs host0.sh's prepare line first)."""
    default = _cluster(settings).shell.coordinator
    coordinator = f"${{COORDINATOR:-{default}}}"
    note = f" (COORDINATOR: host 0's address:port, default {default})" if hosts > 1 else ""
    files = {}
    for index in range(hosts):
        lines = [
            "#!/bin/bash",
            f"# Sweep {settings.name}: host {index} of {hosts}{note}",
            "set -euo pipefail",
            f"cd {shlex.quote(_repo(settings))}",
            *_setup_lines(settings),
        ]
        if index == 0:
            lines.append(_join(sweep_command(settings, "prepare")))
        for spec in specs:
            process = (coordinator, hosts, index) if hosts > 1 else None
            lines.append(_join(train_command(settings, spec, hosts, process)))
        if index == 0:
            lines.append(_join(sweep_command(settings, "collect")))
        files[f"host{index}.sh"] = "\n".join(lines) + "\n"
    return files


# --- Writing -------------------------------------------------------------------------------


def files(settings: ml_collections.ConfigDict, fmt: str, hosts: int) -> dict[str, str]:
    """{path under emit/: text} of one format (the configs excluded)."""
    if fmt not in FORMATS:
        raise ValueError(f"emit={fmt!r}; expected one of {FORMATS}")
    check_hosts(settings, hosts)
    specs = plan.expand(settings)
    plan.check_settings(settings, specs)
    if fmt == "slurm":
        return {f"slurm/{k}": v for k, v in slurm_files(settings, specs, hosts).items()}
    if fmt == "tpu_vm":
        return {"tpu_vm.sh": tpu_vm_script(settings, specs, hosts)}
    return {f"shell/{k}": v for k, v in shell_files(settings, specs, hosts).items()}


def write(settings: ml_collections.ConfigDict, fmt: str, hosts: int) -> list[str]:
    """Writes the sweep's settings, every run's config and the ``fmt`` scripts under
    ``<out>/emit/``; returns the scripts' paths (the one to start first is first)."""
    scripts = files(settings, fmt, hosts)
    root = emit_dir(settings)
    os.makedirs(os.path.dirname(settings_path(settings)), exist_ok=True)
    _write(settings_path(settings), configs_json.config_json(settings))
    for spec in plan.expand(settings):
        _write(
            config_path(settings, spec.name),
            configs_json.config_json(plan.run_config_of(settings, spec)),
        )
    paths = []
    for name, text in scripts.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _write(path, text)
        if name.endswith(".sh"):
            os.chmod(path, 0o755)
        paths.append(path)
    first = {"slurm": "submit.sh", "tpu_vm": "tpu_vm.sh", "shell": "host0.sh"}[fmt]
    return sorted(paths, key=lambda p: (os.path.basename(p) != first, p))


def _write(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
