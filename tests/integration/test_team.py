"""The team setup, end to end, on servers this test starts on free localhost ports.

What a new user does from the README: start the MLflow server, the Prefect server and
workers (`make ui`), deploy (`make deploy`), trigger runs from the Prefect CLI, watch
their tasks, compare the runs in MLflow, and classify a new image with the registered
champion. The fan-out goes to two workers of the GPU pool (stand-ins on this CPU), with
a bare git repository as the shared origin and a local-folder DVC remote.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from convbench.ops import services
from tests.conftest import SHARED_DATASETS, needs_mirror
from tests.project import git_text, prefect_query, run, task_states, team_setup

pytestmark = [needs_mirror, pytest.mark.slow]

GATE = "registry.min_test_accuracy.mnist=0.5"  # the ci profile's tiny models pass it


@dataclass(frozen=True)
class Team:
    stack: services.Stack
    workspace: Path
    origin: Path
    remote: Path
    env: dict[str, str]  # a shell of the user's, pointed at the servers


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    tmp = tmp_path_factory.mktemp("team")
    setup = team_setup(tmp)
    stack, workspace, origin, env = setup.stack, setup.workspace, setup.origin, setup.env
    with pytest.MonkeyPatch.context() as patch:
        for key, value in setup.worker_env.items():
            patch.setenv(key, value)
        workers = [
            ("local-1", services.LOCAL_POOL, None),
            ("gpu-1", services.GPU_POOL, 1),
            ("gpu-2", services.GPU_POOL, 1),
        ]
        try:
            services.up(stack, workers)
            yield Team(stack, workspace, origin, setup.remote, {**env, **stack.client_env()})
        finally:
            services.stop(stack.state)


def prefect(team: Team, *args: str) -> str:
    return run([str(Path(sys.executable).parent / "prefect"), *args], team.workspace, team.env)


def run_deployment(team: Team, name: str, **parameters: object) -> str:
    """`prefect deployment run NAME --param k=v ... --watch`, as a user types it."""
    args = [arg for k, v in parameters.items() for arg in ("--param", f"{k}={json.dumps(v)}")]
    watch = ["--watch", "--watch-interval", "3", "--watch-timeout", "900"]
    return prefect(team, "deployment", "run", name, *args, *watch)


@pytest.mark.timeout(1800)  # a worker that dies must not hang the suite
def test_servers_deploy_run_watch_compare_predict(team: Team) -> None:
    stack = team.stack
    for url in (stack.mlflow_url, stack.prefect_url):  # the two UIs answer
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200 and b"<html" in page.read().lower()

    services.deploy(stack)
    quick = json.loads(
        prefect(team, "deployment", "inspect", "convbench-experiment/quick", "-o", "json")
    )
    assert quick["parameters"]["profile"] == "quick"
    assert quick["work_pool_name"] == services.LOCAL_POOL
    assert [(s["schedule"]["cron"], s["active"]) for s in quick["schedules"]] == [
        ("0 2 * * *", False)
    ]

    # 1. The experiment flow as a deployment, on the local worker, in the user's checkout.
    output = run_deployment(
        team,
        "convbench-experiment/ci",
        project_dir=str(team.workspace),
        variants=["random_forest"],
        overrides=[GATE],
    )
    assert "Completed" in output, output[-3000:]
    states = task_states(team.env)
    assert {"download@mnist", "train@mnist-random_forest", "compare", "register@mnist"} <= set(
        states
    )
    assert states["train@mnist-random_forest"] == "COMPLETED"
    client = MlflowClient(stack.mlflow_url)
    mnist = client.get_experiment_by_name("convbench/mnist")
    first = client.search_runs([mnist.experiment_id])
    assert [r.data.tags["convbench.runner"] for r in first] == ["local-1"]
    champion = client.get_model_version_by_alias("convbench-mnist", "champion")
    assert champion.tags["convbench.run"] == "mnist-random_forest"

    # 2. The fan-out: one flow run per (dataset, variant) on the GPU pool's two workers;
    # the repository and the DVC remote come from the workers' environment.
    output = run_deployment(
        team,
        "convbench-fanout/gpu",
        profile="ci",
        datasets=["mnist"],
        variants=["mlp", "lenet5", "random_forest"],
        overrides=[GATE],
    )
    assert "Completed" in output, output[-3000:]
    branch = git_text(
        team.origin, "for-each-ref", "--format=%(refname:short)", "refs/heads/convbench/"
    )
    branch = branch.split()
    assert len(branch) == 1, branch
    csv = _git_file_text(team.origin, branch[0], "reports/compare/comparison.csv")
    table = pd.read_csv(io.StringIO(csv)).set_index("run")
    units = ["mnist-mlp", "mnist-mlp-raw", "mnist-lenet5", "mnist-random_forest"]
    assert (table.loc[units, "status"] == "ok").all(), table.loc[units, "status"]
    assert set(table.loc[units, "runner"]) == {"gpu-1", "gpu-2"}  # both workers trained
    assert set(table.index) == set(_configured_runs(team.workspace))  # every run listed
    assert table.loc["mnist-cnn", "status"] == "not run"  # not selected: shown, not dropped
    # Other datasets' runs were not selected either: said so, not "data unavailable".
    others = [run for run in table.index if not run.startswith("mnist-")]
    assert others and (table.loc[others, "status"] == "not run: not selected").all()
    assert not table.loc[others, "how_to_provide"].notna().any()
    # Where runners clone from and share data through never shows among flow parameters.
    parameters = flow_run_parameters(team.env)
    assert {"convbench-fanout", "convbench-unit"} <= {flow for flow, _ in parameters}
    for flow, given in parameters:
        assert not {"tracking_uri", "dvc_remote", "repository"} & set(given), flow
        assert str(team.origin) not in json.dumps(given), flow

    fanned = client.search_runs([mnist.experiment_id], "tags.`convbench.runner` LIKE 'gpu-%'")
    assert {r.data.tags["convbench.run"] for r in fanned} == set(units)
    for tracked in fanned:  # each MLflow run names its DVC experiment and commit
        assert tracked.data.tags["dvc_exp_name"].endswith(tracked.data.tags["convbench.run"])
        assert tracked.data.tags["git_commit"] != "unknown"
    exps = git_text(team.origin, "for-each-ref", "--format=%(refname)", "refs/exps/").split()
    assert len(exps) == len(units)
    assert any((team.remote / "files").rglob("*")), "nothing pushed to the DVC remote"

    # 3. A new image, classified by the registered champion.
    decision = json.loads(_git_file_text(team.origin, branch[0], "reports/registry/mnist.json"))
    assert decision["run"] is not None and decision["reason"]
    images, labels = _mnist_test_images(5)
    paths = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = team.workspace.parent / f"digit-{i}.png"
        Image.fromarray(image).save(path)
        paths.append((path, int(label)))
    output = run(
        [str(Path(sys.executable).parent / "convbench"), "predict", "--dataset", "mnist"]
        + [str(p) for p, _ in paths],
        team.workspace,
        team.env,
    )
    lines = {line.split(":")[0]: line for line in output.splitlines() if ": " in line}
    right = sum(f": {label}. With a score of " in lines[str(p)] for p, label in paths)
    assert right >= 3, output  # the ci profile's champion: 1,000 images, one epoch or 10 trees


def flow_run_parameters(env: dict[str, str]) -> list[tuple[str, dict[str, object]]]:
    """(flow name, parameters) of every flow run the server knows."""
    given = prefect_query(
        env,
        "runs = await client.read_flow_runs(limit=200)\n"
        "flows = {f.id: f.name for f in await client.read_flows(limit=200)}\n"
        "result = [[flows[r.flow_id], r.parameters] for r in runs]",
    )
    return [(flow, parameters) for flow, parameters in given]


def _git_file_text(repo: Path, rev: str, path: str) -> str:
    return git_text(repo, "show", f"{rev}:{path}")


def _configured_runs(workspace: Path) -> list[str]:
    from convbench.settings import load_settings

    return list(load_settings(workspace / "params.yaml").run_specs())


def _mnist_test_images(count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first MNIST test images (never trained on), from the mirror's idx files."""
    with gzip.open(SHARED_DATASETS / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(SHARED_DATASETS / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images[:count], labels[:count]
