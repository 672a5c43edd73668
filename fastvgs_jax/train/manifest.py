"""The run manifest: what produced a workdir (resolved config, seed, package versions, git
commit, devices and mesh), written when a run starts and extended at every restart."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import logging
import os
import platform
import subprocess
import sys

import jax
import ml_collections

from fastvgs_jax.workdir import MANIFEST

log = logging.getLogger(__name__)

PACKAGES = (
    "fastvgs-jax",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "grain",
    "tensorflow-datasets",
    "ml-collections",
    "numpy",
)


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> dict[str, object] | None:
    """The checkout this package runs from (commit, uncommitted changes), if it is one."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(
            ["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", root, "status", "--porcelain"], capture_output=True, text=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def host_cpu() -> str:
    """The host CPU's model name. XLA compiles for the host's instruction set, so the same
    seed on another CPU model rounds differently and a run drifts within seed noise."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_run(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> dict:
    devices = jax.devices()
    return {
        "config": json.loads(config.to_json_best_effort()),
        "seed": int(config.seed),
        "packages": package_versions(),
        "git": git_commit(),
        "python": platform.python_version(),
        "command": sys.argv,
        "devices": {
            "platform": devices[0].platform,
            "kind": devices[0].device_kind,
            "count": len(devices),
            "processes": jax.process_count(),
            "host_cpu": host_cpu(),
            "host_cores": os.cpu_count(),
        },
        "mesh": dict(zip(mesh.axis_names, (int(s) for s in mesh.devices.shape), strict=True)),
    }


def config_differences(
    old: dict, new: dict, prefix: str = "", defaults: dict | None = None
) -> list[str]:
    """Dotted keys whose values differ between two config dicts.

    With ``defaults`` (a default config of the same shape), a key ``old`` lacks (a field added
    to the project after ``old`` was recorded) counts only where ``new`` gives it a value
    other than its default: the default keeps the earlier behaviour.
    """
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        default = defaults.get(k) if isinstance(defaults, dict) else None
        if k not in old and isinstance(defaults, dict) and k in defaults and default == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{k}.", default)
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def record(workdir: str, config: ml_collections.ConfigDict, mesh, step: int) -> dict:
    """Write (first start) or extend (restart at ``step``) the workdir's manifest.

    A restart whose config differs from the first start's is allowed but logged as a
    warning, naming the keys: it is no longer the run the manifest describes.
    """
    path = os.path.join(workdir, MANIFEST)
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    run = describe_run(config, mesh)
    if os.path.exists(path):
        with open(path) as f:
            manifest = json.load(f)
        changed = config_differences(manifest["config"], run["config"])
        if changed:
            log.warning("restart at step %d with a changed config: %s", step, ", ".join(changed))
        restart = {"time": now, "step": step, "config_changes": changed}
        restart.update({k: run[k] for k in ("packages", "git", "devices", "mesh", "command")})
        manifest.setdefault("restarts", []).append(restart)
    else:
        manifest = {"started": now, **run}
    if jax.process_index() == 0:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(manifest, f, indent=1)
        os.replace(tmp, path)  # never a half-written manifest
    return manifest


def update(workdir: str, key: str, value) -> None:
    """Sets one top-level section of the workdir's manifest (process 0; atomic replace)."""
    if jax.process_index() != 0:
        return
    path = os.path.join(workdir, MANIFEST)
    with open(path) as f:
        manifest = json.load(f)
    manifest[key] = value
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, path)
