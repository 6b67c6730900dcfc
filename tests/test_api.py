"""The public API: the README's library example runs as written; construction mistakes are
ConfigErrors in library terms; user loaders and models train through scpl.train."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

import scpl

README = Path(__file__).resolve().parents[1] / "README.md"


def _library_example() -> str:
    text = README.read_text()
    section = text.split("### Use it as a library", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_library_example_runs(capsys):
    exec(compile(_library_example(), "README.md", "exec"), {"__name__": "readme"})
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("1 {")


def test_examples_use_only_the_public_api():
    code = _library_example()
    imports = re.findall(r"^(?:from|import) (\S+)", code, re.M)
    assert {i.split(".")[0] for i in imports} <= {"torch", "scpl"}
    assert not [i for i in imports if i.startswith("scpl.")]


def _tiny_model(**kw) -> scpl.StagedModel:
    torch.manual_seed(0)
    stages = [nn.Sequential(nn.Flatten(), nn.Linear(8, 16), nn.ReLU()), nn.Linear(16, 16)]
    return scpl.StagedModel(stages, nn.Linear(16, 3), **kw)


def test_shapes_and_classes_are_inferred():
    m = _tiny_model(input_shape=(2, 4))
    assert m.stage_shapes == [(16,), (16,)] and m.num_classes == 3
    lazy = _tiny_model()
    assert not lazy.shapes_known
    with scpl.pipeline(lazy, executor="sequential", head="linear") as pipe:
        pipe.step(torch.randn(8, 2, 4), torch.randint(0, 3, (8,)))
        assert lazy.stage_shapes == [(16,), (16,)]
        assert set(pipe.metrics()) == {
            "stage0/supcon",
            "stage1/ce",
            "stage1/supcon",
        }


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="bp", schedule="scpl"), "'gpipe' or 'nmp'"),
        (dict(method="scpl", schedule="gpipe"), "'scpl' or 'scpl-gpipe'"),
        (dict(method="scpl", micro_batches=2, schedule="scpl"), "no micro-batches"),
        (dict(method="nope"), "unknown method 'nope'"),
        (dict(executor="threads"), "unknown executor 'threads'"),
        (dict(devices=["cpu", "cpu", "cpu"]), "3 devices for 2 stages"),
        (dict(devices=["cuda:7"]), "does not exist"),
        (dict(optimizer=3), "optimizer must be a function"),
        (dict(hed="mlp"), "unknown option"),
    ],
)
def test_wrong_combinations_raise_config_errors(kwargs, match):
    with pytest.raises(scpl.ConfigError, match=match):
        scpl.pipeline(_tiny_model(input_shape=(8,)), **kwargs)


def test_not_a_staged_model_is_a_config_error():
    with pytest.raises(scpl.ConfigError, match="StagedModel"):
        scpl.pipeline(nn.Linear(2, 2))


def test_cosine_without_total_steps_is_refused():
    with pytest.raises(scpl.ConfigError, match="total_steps"):
        scpl.OptimConfig(schedule="cosine")
    assert scpl.OptimConfig().schedule == "constant"


def test_any_torch_optimizer_and_scheduler_per_stage():
    m = _tiny_model(input_shape=(8,))
    with scpl.pipeline(
        m,
        executor="sequential",
        head="linear",
        optimizer=lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5),
    ) as pipe:
        runners = pipe.executor.runners
        assert all(isinstance(r.optimizer, torch.optim.SGD) for r in runners)
        pipe.step(torch.randn(8, 8), torch.randint(0, 3, (8,)))
        pipe.step(torch.randn(8, 8), torch.randint(0, 3, (8,)))
        assert pipe.lr() == pytest.approx(0.025)
        # Each stage owns its optimizer: no parameter is shared between two of them.
        ids = [id(p) for r in runners for g in r.optimizer.param_groups for p in g["params"]]
        assert len(ids) == len(set(ids))


def test_local_pipeline_equals_sequential_reference():
    x, y = torch.randn(4, 16, 8), torch.randint(0, 3, (4, 16))
    states = []
    for executor in ("sequential", "local"):
        with scpl.pipeline(_tiny_model(input_shape=(8,)), executor=executor, head="mlp") as pipe:
            for i in range(4):
                pipe.step(x[i], y[i])
            states.append(pipe.unit_states())
    for a, b in zip(*states, strict=True):
        for k in a:
            assert torch.equal(a[k], b[k]), k


def test_predict_is_the_inference_path_and_keeps_the_training_mode():
    m = _tiny_model(input_shape=(8,))
    x = torch.randn(5, 8)
    with scpl.pipeline(m, executor="local", head="linear") as pipe:
        logits = pipe.predict(x)
        assert all(r.unit.training for r in pipe.executor.runners)
    assert logits.shape == (5, 3)
    assert torch.equal(logits, m.eval()(x))


def test_split_cuts_a_sequential_network():
    net = nn.Sequential(*[nn.Linear(4, 4) for _ in range(5)])
    assert [len(s) if isinstance(s, nn.Sequential) else 1 for s in scpl.split(net, 2)] == [3, 2]
    assert len(scpl.split(net, [1, 1, 3])) == 3
    with pytest.raises(scpl.ConfigError):
        scpl.split(net, [2, 2])
    with pytest.raises(scpl.ConfigError):
        scpl.split(net, 9)


def test_close_stops_worker_threads():
    import threading

    before = threading.active_count()
    with scpl.pipeline(_tiny_model(input_shape=(8,)), executor="local", head="linear") as pipe:
        pipe.step(torch.randn(8, 8), torch.randint(0, 3, (8,)))
        assert threading.active_count() > before
    assert threading.active_count() == before


def test_train_on_user_loaders_and_model(tmp_path):
    g = torch.Generator().manual_seed(0)
    xs, ys = torch.randn(96, 8, generator=g), torch.randint(0, 3, (96,), generator=g)
    ds = torch.utils.data.TensorDataset(xs, ys)
    loader = torch.utils.data.DataLoader(ds, batch_size=16)
    cfg = scpl.make_config(
        "smoke",
        {"out": str(tmp_path / "run"), "stages": 2, "executor": "sequential", "head": "linear"},
    )
    summary = scpl.train(
        cfg,
        echo=lambda *a: None,
        train_loader=loader,
        val_loader=loader,
        test_loader=loader,
        model=_tiny_model(),
    )
    assert summary["steps"] == 2 * min(6, cfg.max_steps) and 0.0 <= summary["test_acc"] <= 1.0
    assert summary["num_test"] == 96 and (tmp_path / "run" / "summary.json").exists()


def test_method_run_defaults_apply_unless_a_method_config_is_given():
    model = _tiny_model(input_shape=(2, 4))
    with scpl.pipeline(model, executor="sequential") as pipe:
        assert (pipe.method.cfg.head, pipe.method.cfg.proj_dim) == ("mlp-pool", 128)
    with scpl.pipeline(model, executor="sequential", proj_dim=64) as pipe:
        assert (pipe.method.cfg.head, pipe.method.cfg.proj_dim) == ("mlp-pool", 64)
    paper = scpl.MethodConfig()  # the paper's head: taken as given
    with scpl.pipeline(model, executor="sequential", method_config=paper) as pipe:
        assert (pipe.method.cfg.head, pipe.method.cfg.proj_dim) == ("mlp", 1024)
