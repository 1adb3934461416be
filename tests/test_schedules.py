"""BudgetLR: the schedule over max(step / max_steps, elapsed / max_time), so a wall-time-bounded run decays fully."""
import io
import math

import pytest
import torch

from conftest import compose_cfg
from srexp.errors import ConfigError
from srexp.training.schedules import BudgetLR, parse_duration


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def make(clock=None, **kw):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return opt, BudgetLR(opt, clock=clock or FakeClock(), **kw)


def lr(opt) -> float:
    return opt.param_groups[0]["lr"]


def test_parse_duration_forms():
    assert parse_duration("00:00:10:00") == 600
    assert parse_duration("01:02:03:04") == 86400 + 7200 + 180 + 4
    assert parse_duration({"minutes": 2, "seconds": 5}) == 125
    assert parse_duration(30) == 30 and parse_duration(None) is None
    with pytest.raises(ConfigError, match="trainer.max_time='10 minutes' is not a duration"):
        parse_duration("10 minutes")


def test_step_budget_cosine_ends_at_final_ratio():
    opt, s = make(max_steps=100, shape="cosine", final_ratio=0.01)
    assert lr(opt) == pytest.approx(1.0)
    for _ in range(50):
        opt.step()
        s.step()
    assert lr(opt) == pytest.approx(0.01 + 0.99 * 0.5)  # half way: cos(π/2) = 0
    for _ in range(60):
        s.step()
    assert lr(opt) == pytest.approx(0.01)  # clipped at p = 1, not rising again


def test_time_budget_drives_progress_when_it_runs_out_first():
    clock = FakeClock()
    opt, s = make(clock, max_steps=1000, max_time="00:00:01:00", shape="linear", final_ratio=0.0)
    s.step()  # step 1 of 1000: p_steps = 0.001
    clock.t += 30  # half the minute gone: p_time = 0.5 dominates
    s.step()
    assert s.progress(2) == pytest.approx(0.5)
    assert lr(opt) == pytest.approx(0.5)
    clock.t += 60
    s.step()
    assert lr(opt) == pytest.approx(0.0)
    # time alone (max_steps = -1: Lightning's "no limit")
    clock2 = FakeClock()
    opt2, s2 = make(clock2, max_steps=-1, max_time={"seconds": 10}, shape="step", milestones=[0.5], gamma=0.1)
    clock2.t += 4
    s2.step()
    assert lr(opt2) == pytest.approx(1.0)
    clock2.t += 2
    s2.step()
    assert lr(opt2) == pytest.approx(0.1)


def test_step_shape_and_warmup():
    opt, s = make(max_steps=100, shape="step", milestones=[0.25, 0.5, 0.75], gamma=0.1)
    seen = []
    for _ in range(100):
        seen.append(lr(opt))
        s.step()
    assert seen[0] == pytest.approx(1) and seen[30] == pytest.approx(0.1) and seen[60] == pytest.approx(0.01)
    assert seen[99] == pytest.approx(0.001)
    opt, s = make(max_steps=100, shape="constant", warmup=0.1)
    assert lr(opt) == 0.0
    for _ in range(5):
        s.step()
    assert lr(opt) == pytest.approx(0.5)
    for _ in range(10):
        s.step()
    assert lr(opt) == pytest.approx(1.0)


def test_no_budget_or_bad_shape_is_one_line_config_error():
    with pytest.raises(ConfigError, match="needs a budget"):
        make(max_steps=-1, max_time=None)
    with pytest.raises(ConfigError, match=r"shape=wiggle is unknown \(valid: cosine, linear, step, constant\)"):
        make(max_steps=10, shape="wiggle")


def test_state_dict_keeps_the_clock_and_loads_weights_only():
    clock = FakeClock()
    opt, s = make(clock, max_time=100, shape="linear", final_ratio=0.0)
    clock.t += 40
    s.step()
    buf = io.BytesIO()
    torch.save(s.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)  # no functions, no ListConfig in the checkpoint
    assert state["elapsed"] == pytest.approx(40)
    clock2 = FakeClock()
    clock2.t = 5000.0  # a new process: another monotonic origin
    opt2, s2 = make(clock2, max_time=100, shape="linear", final_ratio=0.0)
    s2.load_state_dict(state)
    assert s2.elapsed() == pytest.approx(40)
    clock2.t += 10
    s2.step()
    assert lr(opt2) == pytest.approx(0.5)


def test_budget_scheduler_is_a_task_scheduler_option():
    cfg = compose_cfg("train", ["task/scheduler=budget", "trainer.max_time=00:00:05:00", "trainer.max_steps=-1"])
    from hydra.utils import instantiate

    factory = instantiate(cfg.task.scheduler)
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = factory(optimizer=opt)
    assert isinstance(sched, BudgetLR) and sched.max_time == 300 and sched.max_steps is None
    assert math.isclose(lr(opt), 1e-3)
    default = compose_cfg("train", [])
    assert default.task.scheduler._target_.endswith("CosineAnnealingLR")
