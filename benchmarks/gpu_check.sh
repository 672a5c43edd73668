#!/usr/bin/env bash
# The GPU check of the base step in bf16: MFU (goal ≥ 45 %) and speed against HF transformers'
# PyTorch wav2vec2 on the same card (goal ≥ 3×). One short script for a lent GPU machine.
#
#   bash benchmarks/gpu_check.sh prepare   # here, once, before the device call: the wheels the
#                                          # device image lacks, into .whl/ (ignored by git)
#   bash benchmarks/gpu_check.sh           # on the device: run(command="bash benchmarks/gpu_check.sh",
#                                          #   carry=[".whl"], kind="nvidia-h200", timeout_s=560):
#                                          #   about 6-8 minutes
#   bash benchmarks/gpu_check.sh smoke     # any machine: the same pipeline at tiny shapes
#
# The device image (.library/device/KINDS.md) has jax[cuda13], flax, optax, orbax, torch and
# transformers, but not ml_collections, grain, array_record or tensorflow_datasets (imported by
# the trainer's modules) and a few of their needs: those travel as wheels and are installed
# under /tmp/site only where the image lacks them or has an older version (flax, optax, orbax
# and protobuf are carried for that case). The repository itself is put on PYTHONPATH.
#
# nvidia-h200 rather than the H100: at the paper's 64 × 8 s the comparison holds our SSL step's
# and HF's activations on one card at once (HF's alone ~50 GB by its saved tensors; XLA:CPU
# plans ~80 GB of temporaries for ours, the GPU fewer). On an H100 train_throughput reruns a
# step or comparison that runs out of memory at half the batch (at most twice; the JSON says).
#
# Writes to $OUT: env.txt, train_throughput.json/.log, step_vs_hf.json/.log; prints the two
# JSON lines last. train_throughput.log holds a "train_throughput partial" line as soon as the
# full step is timed, so a run stopped during the HF comparison keeps the MFU figures.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-python3}
SITE=${SITE:-/tmp/site}  # where missing packages are installed (on PYTHONPATH)
WHEELS=(
  ml_collections==1.1.0 grain==0.2.18 array_record==0.8.6 tensorflow_datasets==4.9.10
  tensorflow_metadata==1.21.0 immutabledict==4.3.1 portpicker==1.6.0 toml==0.10.2
  dm-tree==0.1.10 simple-parsing==0.1.9 docstring_parser==0.18.0 termcolor==3.3.0
  importlib_resources==7.1.0 googleapis-common-protos==1.76.0 nest_asyncio==1.6.0
  protobuf==7.36.2 flax==0.12.8 optax==0.2.8 orbax-checkpoint==0.12.8
)

if [[ "${1:-}" == prepare ]]; then
  exclude=$(git rev-parse --git-path info/exclude)
  mkdir -p .whl "$(dirname "$exclude")"
  grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"
  platforms=()
  for p in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${p}_x86_64")
  done
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d .whl "${WHEELS[@]}" || exit 1
  # promise (tensorflow_datasets imports it) is published as a source archive only: its
  # pure-Python wheel is built here.
  "$PY" -m pip wheel -q --no-deps -w .whl promise==2.3 || exit 1
  ls .whl && du -sh .whl
  exit 0
fi

OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false # torch allocates on the same card in the same process

need=""
if compgen -G ".whl/*.whl" >/dev/null; then
  need=$("$PY" - <<'EOF'
import glob, importlib.metadata as md, os, re
def Version(v):  # numeric parts: enough to order these releases
    return tuple(int(x) for x in re.findall(r"\d+", v.split("+")[0])[:4])
for wheel in sorted(glob.glob(".whl/*.whl")):
    name, version = os.path.basename(wheel).split("-")[:2]
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        have = None
    if have is None or Version(have) < Version(version):
        print(wheel)
EOF
  )
  if [[ -n "$need" ]]; then
    # shellcheck disable=SC2086 # one wheel path a word
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" $need || exit 1
    export PYTHONPATH=$SITE
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import ml_collections, grain, array_record, tensorflow_datasets" 2>/dev/null; then
  echo "packages missing: run 'bash benchmarks/gpu_check.sh prepare' here, then carry .whl" >&2
  exit 1
fi

{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm \
    --format=csv 2>&1 || echo "no nvidia-smi"
  echo "installed from .whl: ${need//$'\n'/ }"
  "$PY" -c "import jax, flax, optax, torch, transformers
print('jax', jax.__version__, jax.devices(), '| flax', flax.__version__, '| optax', optax.__version__)
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), '| transformers', transformers.__version__)"
} 2>&1 | tee "$OUT/env.txt"

if [[ "${1:-}" == smoke ]]; then
  tt_args=(--steps 1 --batch 1 --seconds 1 --hf_repeats 1)
  svh_args=(--repeats 1 --batch 1 --seconds 1 --layers 1 --full_batch 1 --full_seconds 1)
  tt_limit=900 svh_limit=600
else  # the accelerator defaults: base at the paper's 64 × 8 s; step_vs_hf 4 × 4 s and 2 × 8 s
  tt_args=(--steps 5 --hf_repeats 5)
  svh_args=(--repeats 10 --pause 0)
  tt_limit=330 svh_limit=150
fi

timeout "$tt_limit" "$PY" benchmarks/train_throughput.py --config base --precision bf16 \
  --vs_hf "${tt_args[@]}" >"$OUT/train_throughput.json" 2>"$OUT/train_throughput.log"
echo "train_throughput exit $?"
timeout "$svh_limit" "$PY" benchmarks/step_vs_hf.py --precision bf16 --full "${svh_args[@]}" \
  >"$OUT/step_vs_hf.json" 2>"$OUT/step_vs_hf.log"
echo "step_vs_hf exit $?"

for name in train_throughput step_vs_hf; do
  if [[ ! -s "$OUT/$name.json" ]]; then
    echo "--- $name.log (tail)"
    tail -n 25 "$OUT/$name.log"
  fi
done
grep -h "train_throughput partial" "$OUT/train_throughput.log" | tail -n 1
cat "$OUT/train_throughput.json" "$OUT/step_vs_hf.json"
