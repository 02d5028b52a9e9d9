#!/usr/bin/env bash
# GPU check: convbench's MNIST networks under Keras 3 on JAX, float32 against
# mixed_bfloat16, on a runner with Python 3.12, JAX (CUDA), NumPy and h5py but neither
# Keras nor TensorFlow, and no internet.
#
#   bench/gpu_check.sh --prepare         # with PyPI access: the wheels (and mnist.npz) into .whl/
#   bash bench/gpu_check.sh [OPTIONS]    # on the runner, with .whl/ carried along;
#                                        # OPTIONS go to bench/gpu_check.py (--epochs, --limit, ...)
#
# Environment: PYTHON (the runner's interpreter, default python3), SITE (where the wheels
# are installed, default /tmp/site), CONVBENCH_MIRROR (a folder holding mnist.npz).
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=.whl
PYTHON=${PYTHON:-python3}
SITE=${SITE:-/tmp/site}
# Keras' own dependencies that a JAX install lacks; numpy, h5py and ml-dtypes come with JAX
# (a second ml-dtypes could mismatch JAX's compiled code). PyYAML reads params.yaml.
PACKAGES=(keras absl-py rich markdown-it-py mdurl pygments namex optree packaging
  typing-extensions pyyaml)

prepare() {
  # The versions of the project's lock file, so the check runs the Keras that `make run` does.
  local pins
  pins=$(python3 - "${PACKAGES[@]}" <<'EOF'
import sys
import tomllib

with open("uv.lock", "rb") as lock:
    locked = {p["name"]: p["version"] for p in tomllib.load(lock)["package"]}
print(" ".join(f"{name}=={locked[name]}" for name in sys.argv[1:]))
EOF
  )
  mkdir -p "$WHEELS"
  rm -f "$WHEELS"/*.whl  # a stale second version would clash in the target folder
  # shellcheck disable=SC2086  # $pins is a list of requirements
  python3 -m pip download -q --disable-pip-version-check --dest "$WHEELS" --no-deps \
    --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 $pins
  local mnist="${CONVBENCH_MIRROR:-}/mnist.npz"
  if [[ -n "${CONVBENCH_MIRROR:-}" && -f "$mnist" ]]; then
    install -m 0644 "$mnist" "$WHEELS/mnist.npz"  # the runner has no mirror: the data travels too
  else
    echo "no \$CONVBENCH_MIRROR/mnist.npz: the runner will need --mnist PATH or use synthetic data"
  fi
  ls -l "$WHEELS"
  du -sh "$WHEELS"
}

run() {
  shopt -s nullglob
  local wheels=("$WHEELS"/*.whl)
  if ((${#wheels[@]} == 0)); then
    echo "no wheels in $WHEELS/: run bench/gpu_check.sh --prepare where PyPI is reachable" >&2
    exit 2
  fi
  if "$PYTHON" -m pip --version >/dev/null 2>&1; then
    # --upgrade: a rerun replaces what an earlier one installed.
    PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install -q --disable-pip-version-check \
      --no-index --no-deps --no-compile --upgrade --target "$SITE" "${wheels[@]}"
  else
    # No pip on the runner: a wheel is a zip of the importable files, which is all we need.
    "$PYTHON" -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]' \
      "$SITE" "${wheels[@]}"
  fi
  export PYTHONPATH="$SITE:src${PYTHONPATH:+:$PYTHONPATH}"
  export KERAS_BACKEND=jax
  exec "$PYTHON" bench/gpu_check.py "$@"
}

if [[ "${1:-}" == "--prepare" ]]; then
  prepare
else
  run "$@"
fi
