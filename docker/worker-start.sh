#!/bin/sh
# Start a Prefect process worker for convbench (the images' default command).
#   PREFECT_API_URL          the Prefect API, e.g. http://prefect-server:4200/api (required)
#   PREFECT_WORK_POOL        the work pool to poll (created as a process pool if missing)
#   CONVBENCH_RUNNER         the worker's name, also recorded with every MLflow run (default: host)
#   CONVBENCH_WORKER_LIMIT   flow runs at once (default 1: a training run uses the whole machine)
#   CONVBENCH_REPOSITORY     the git repository flow runs clone and push to (optional): it becomes
#                            the origin of the image's checkout, which is where the flows look
#                            for it. A local path that does not exist yet (e.g. on a volume all
#                            workers share) is first made a bare clone of the image's checkout.
# Extra arguments are passed on to `prefect worker start`.
set -eu

if [ -z "${PREFECT_API_URL:-}" ]; then
    echo "convbench-worker: set PREFECT_API_URL to the Prefect server's API" \
        "(e.g. http://prefect-server:4200/api)" >&2
    exit 2
fi
pool="${PREFECT_WORK_POOL:-convbench-local}"
# The image's checkout: the project the locked environment installs (editable).
app="${CONVBENCH_APP_DIR:-/home/convbench/app}"

repo="${CONVBENCH_REPOSITORY:-}"
if [ -n "$repo" ]; then
    if [ ! -d "$app/.git" ]; then
        echo "convbench-worker: $app is not a git checkout; cannot use CONVBENCH_REPOSITORY" >&2
        exit 2
    fi
    case "$repo" in
        /*)
            if [ ! -e "$repo/HEAD" ]; then
                # Seed it; with several workers starting at once, the first rename wins.
                tmp="$repo.seed-$$"
                git clone --quiet --bare "$app" "$tmp"
                mv -T "$tmp" "$repo" 2>/dev/null || rm -rf "$tmp"
            fi
            if [ ! -e "$repo/HEAD" ]; then
                echo "convbench-worker: could not make $repo a git repository" >&2
                exit 2
            fi
            ;;
    esac
    git -C "$app" remote set-url origin "$repo" 2>/dev/null ||
        git -C "$app" remote add origin "$repo"
fi

name="${CONVBENCH_RUNNER:-$(hostname)}"
export CONVBENCH_RUNNER="$name"

exec prefect worker start \
    --pool "$pool" \
    --type process \
    --name "$name" \
    --limit "${CONVBENCH_WORKER_LIMIT:-1}" \
    --with-healthcheck \
    "$@"
