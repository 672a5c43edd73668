"""One process of a simulated 2-host run (started by test_multiprocess.py, not collected).

python tests/train/multiprocess_worker.py PORT PROCESS_ID DATA_DIR WORKDIR OUT.npz
"""

import os
import sys

# 4 CPU devices per process: 2 processes make the 8-device mesh of the 1-process reference.
os.environ["XLA_FLAGS"] = (
    "--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0"
)

import jax  # noqa: E402
import numpy as np  # noqa: E402


def main(port: str, process_id: str, data_dir: str, workdir: str, out: str) -> None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=int(process_id))
    from absl import flags

    flags.FLAGS(sys.argv[:1], known_only=True)  # Grain reads absl flags
    from fastvgs_jax.train import loop
    from tests.train.conftest import tiny_run_config

    state = loop.train(tiny_run_config(data_dir), workdir)
    if jax.process_index() == 0:
        # Data-parallel mesh: every process holds whole (replicated) parameters.
        leaves = jax.tree_util.tree_flatten_with_path(state.params)[0]
        arrays = {
            jax.tree_util.keystr(path): np.asarray(leaf.addressable_shards[0].data)
            for path, leaf in leaves
        }
        np.savez(out, **arrays)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
