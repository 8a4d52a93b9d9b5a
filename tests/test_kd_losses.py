"""White-box KD losses against slow, explicit per-token computations on small tensors."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, kl_divergence

from symkd.errors import UserError
from symkd.students.losses import LOSSES, TAID, get_loss, loss_names, mix, parse_loss_spec, shift_for_causal_lm

B, T, V = 2, 5, 11
LABELS = torch.tensor([[3, 1, -100, 4, 2], [-100, 0, 7, -100, -100]])  # 5 kept positions
ALL = ["forward_kl", "reverse_kl", "skew_forward_kl", "skew_reverse_kl", "jsd", "taid"]


def build(name: str, **options):
    return get_loss(name, total_steps=100, **options)


def logits(seed: int, scale: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, V, generator=g) * scale


def kept_rows(x: torch.Tensor, labels: torch.Tensor = LABELS) -> list[torch.Tensor]:
    return [x[b, i].double() for b in range(x.shape[0]) for i in range(x.shape[1]) if labels[b, i] != -100]


# -- slow references: one token at a time, float64, textbook formulas ----------------------
def kl(p: torch.Tensor, q: torch.Tensor) -> float:
    return float(sum(pi * math.log(pi / qi) for pi, qi in zip(p.tolist(), q.tolist()) if pi > 0))


def reference(name: str, s: torch.Tensor, t: torch.Tensor, temperature: float = 1.0, **opt) -> float:
    values = []
    for zs, zt in zip(kept_rows(s), kept_rows(t)):
        zs, zt = zs / temperature, zt / temperature
        p, q = torch.softmax(zt, -1), torch.softmax(zs, -1)
        if name == "forward_kl":  # KL(teacher || student) via torch.distributions
            v = float(kl_divergence(Categorical(logits=zt), Categorical(logits=zs)))
        elif name == "reverse_kl":
            v = float(kl_divergence(Categorical(logits=zs), Categorical(logits=zt)))
        elif name == "skew_forward_kl":
            a = opt["alpha"]
            v = kl(p, a * p + (1 - a) * q)
        elif name == "skew_reverse_kl":
            a = opt["alpha"]
            v = kl(q, a * q + (1 - a) * p)
        elif name == "jsd":
            b = opt["beta"]
            m = b * p + (1 - b) * q
            v = b * kl(p, m) + (1 - b) * kl(q, m)
        elif name == "taid":
            tt = opt["t_interp"]
            v = kl(torch.softmax((1 - tt) * zs + tt * zt, -1), q)
        else:
            raise AssertionError(name)
        values.append(v)
    return sum(values) / len(values)


CASES = [
    ("forward_kl", {}, {}),
    ("reverse_kl", {}, {}),
    ("skew_forward_kl", {"alpha": 0.1}, {"alpha": 0.1}),
    ("skew_forward_kl", {"alpha": 0.6}, {"alpha": 0.6}),
    ("skew_reverse_kl", {"alpha": 0.1}, {"alpha": 0.1}),
    ("skew_reverse_kl", {"alpha": 0.6}, {"alpha": 0.6}),
    ("jsd", {"beta": 0.1}, {"beta": 0.1}),
    ("jsd", {"beta": 0.5}, {"beta": 0.5}),
    ("jsd", {"beta": 0.9}, {"beta": 0.9}),
    ("taid", {}, {"t_interp": 0.4}),
]


@pytest.mark.parametrize("temperature", [1.0, 2.5])
@pytest.mark.parametrize("name,options,ref", CASES)
def test_loss_equals_direct_computation(name, options, ref, temperature):
    s, t = logits(1), logits(2)
    got = build(name, temperature=temperature, **options)(s, t, LABELS)
    assert got.dtype == torch.float32 and got.dim() == 0
    assert got.item() == pytest.approx(reference(name, s, t, temperature, **ref), rel=1e-5, abs=1e-7)
    assert got.item() > 1e-3  # the inputs differ: a vacuous 0 would not pass


@pytest.mark.parametrize("name", ALL)
def test_identical_distributions_give_zero(name):
    s = logits(3)
    assert build(name)(s, s.clone(), LABELS).item() == pytest.approx(0.0, abs=1e-6)


def test_jsd_symmetric_at_half_and_mirrored_otherwise():
    s, t = logits(4), logits(5)
    half = build("jsd", beta=0.5)
    assert half(s, t, LABELS).item() == pytest.approx(half(t, s, LABELS).item(), rel=1e-6)
    # JSD_b(p || q) = JSD_(1-b)(q || p): the mixture is the same distribution
    assert build("jsd", beta=0.2)(s, t, LABELS).item() == pytest.approx(
        build("jsd", beta=0.8)(t, s, LABELS).item(), rel=1e-5
    )
    assert build("jsd", beta=0.2)(s, t, LABELS).item() != pytest.approx(build("jsd", beta=0.2)(t, s, LABELS).item())


def test_limits_of_skew_and_jsd():
    s, t = logits(6), logits(7)
    fkl, rkl = build("forward_kl")(s, t, LABELS).item(), build("reverse_kl")(s, t, LABELS).item()
    # alpha = 0: the mixture is the other distribution -> plain KL; alpha = 1: KL(p || p) = 0
    assert build("skew_forward_kl", alpha=0.0)(s, t, LABELS).item() == pytest.approx(fkl, rel=1e-6)
    assert build("skew_reverse_kl", alpha=0.0)(s, t, LABELS).item() == pytest.approx(rkl, rel=1e-6)
    assert build("skew_forward_kl", alpha=1.0)(s, t, LABELS).item() == pytest.approx(0.0, abs=1e-7)
    assert build("skew_reverse_kl", alpha=1.0)(s, t, LABELS).item() == pytest.approx(0.0, abs=1e-7)
    # the skewed mixture keeps alpha·p: each token is bounded by log(1/alpha)
    far = logits(8, scale=30.0)
    assert build("skew_forward_kl", alpha=0.1)(far, t, LABELS).item() <= math.log(10) + 1e-5
    assert build("reverse_kl")(far, t, LABELS).item() > math.log(10)  # unskewed is not bounded
    # generalized JSD: beta -> 0 behaves like beta·FKL, beta -> 1 like (1-beta)·RKL; 0 / 1 mean FKL / RKL
    eps = 1e-4
    assert build("jsd", beta=eps)(s, t, LABELS).item() / eps == pytest.approx(fkl, rel=2e-2)
    assert build("jsd", beta=1 - eps)(s, t, LABELS).item() / eps == pytest.approx(rkl, rel=2e-2)
    assert build("jsd", beta=0.0)(s, t, LABELS).item() == pytest.approx(fkl, rel=1e-6)
    assert build("jsd", beta=1.0)(s, t, LABELS).item() == pytest.approx(rkl, rel=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_masked_positions_do_not_change_the_value(name):
    s, t = logits(9), logits(10)
    loss = build(name)
    before = loss(s, t, LABELS).item()
    s2, t2 = s.clone(), t.clone()
    ignored = LABELS == -100
    s2[ignored] = float("nan")  # anything at ignored positions, even NaN / -inf rows
    t2[ignored] = float("-inf")
    assert loss(s2, t2, LABELS).item() == pytest.approx(before, rel=1e-6)
    assert loss(s, t, mask=~ignored).item() == pytest.approx(before, rel=1e-6)
    assert loss(s, t, LABELS, mask=torch.ones(B, T)).item() == pytest.approx(before, rel=1e-6)
    # and the kept positions do matter
    s3 = s.clone()
    s3[0, 0] += torch.linspace(0, 5, V)
    assert loss(s3, t, LABELS).item() != pytest.approx(before, rel=1e-4)


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_the_student_only(name):
    s = logits(11).requires_grad_(True)
    t = logits(12).requires_grad_(True)
    build(name)(s, t, LABELS).backward()
    assert t.grad is None
    assert s.grad is not None and torch.isfinite(s.grad).all()
    assert s.grad[~(LABELS == -100)].abs().sum() > 0
    assert (s.grad[LABELS == -100] == 0).all()


def test_gradient_of_forward_kl_and_taid_is_q_minus_target():
    s = logits(13).requires_grad_(True)
    t = logits(14)
    n = int((LABELS != -100).sum())
    build("forward_kl")(s, t, LABELS).backward()
    keep = LABELS != -100
    q, p = torch.softmax(s.detach(), -1), torch.softmax(t, -1)
    torch.testing.assert_close(s.grad[keep], (q - p)[keep] / n, rtol=1e-5, atol=1e-7)
    # TAID's target p_t uses stopgrad(student): d/dz_s KL(p_t || q) = q - p_t
    s.grad = None
    build("taid")(s, t, LABELS).backward()
    p_t = torch.softmax(0.6 * s.detach() + 0.4 * t, -1)
    torch.testing.assert_close(s.grad[keep], (q - p_t)[keep] / n, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ALL)
def test_shared_minus_inf_entries_are_exact_and_nan_free(name):
    s, t = logits(15), logits(16)
    blocked = torch.zeros(V, dtype=torch.bool)
    blocked[[2, 9]] = True
    s_inf = s.masked_fill(blocked, float("-inf")).requires_grad_(True)
    t_inf = t.masked_fill(blocked, float("-inf"))
    value = build(name)(s_inf, t_inf, LABELS)
    value.backward()
    # same as dropping the masked vocabulary entries altogether
    expected = build(name)(s[..., ~blocked], t[..., ~blocked], LABELS)
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.isfinite(s_inf.grad).all() and (s_inf.grad[..., blocked] == 0).all()
    # one-sided -inf: the term is left out (DistiLLM convention): finite value and gradients
    one_sided = s.clone().requires_grad_(True)
    v2 = build(name)(one_sided, t_inf, LABELS)
    v2.backward()
    assert math.isfinite(v2.item()) and torch.isfinite(one_sided.grad).all()


@pytest.mark.parametrize("name", ALL)
def test_huge_logits_stay_finite(name):
    s = (logits(17) * 1e4).requires_grad_(True)
    t = logits(18) * 1e4
    t[0, 0, 0] = 3e38
    value = build(name)(s, t, LABELS)
    value.backward()
    assert math.isfinite(value.item()) and torch.isfinite(s.grad).all()


@pytest.mark.parametrize("name", ALL)
def test_bf16_inputs_are_computed_in_float32(name):
    s, t = logits(19).bfloat16().requires_grad_(True), logits(20).bfloat16()
    value = build(name)(s, t, LABELS)
    assert value.dtype == torch.float32
    opts = {"forward_kl": {}, "reverse_kl": {}, "skew_forward_kl": {"alpha": 0.1}, "skew_reverse_kl": {"alpha": 0.1}}
    opts.update({"jsd": {"beta": 0.5}, "taid": {"t_interp": 0.4}})
    assert value.item() == pytest.approx(reference(name, s.detach().float(), t.float(), **opts[name]), rel=1e-5)
    value.backward()
    assert s.grad.dtype == torch.bfloat16 and torch.isfinite(s.grad.float()).all()


def test_no_kept_tokens_gives_zero_with_a_graph():
    s = logits(21).requires_grad_(True)
    value = build("forward_kl")(s, logits(22), torch.full((B, T), -100))
    value.backward()
    assert value.item() == 0.0 and (s.grad == 0).all()


def test_vocabulary_and_shape_mismatches_are_user_errors():
    loss = build("forward_kl")
    msg = "student and teacher vocabularies differ: 49152 vs 32000 — white-box KD needs a shared tokenizer"
    with pytest.raises(UserError, match=msg):
        loss(torch.zeros(1, 2, 49152), torch.zeros(1, 2, 32000))
    with pytest.raises(UserError, match="differ in shape"):
        loss(torch.zeros(1, 3, V), torch.zeros(1, 2, V))
    with pytest.raises(UserError, match="labels shape"):
        loss(torch.zeros(1, 3, V), torch.zeros(1, 3, V), torch.zeros(1, 2, dtype=torch.long))


def test_registry_names_aliases_specs_and_errors():
    assert loss_names() == ALL
    for name in LOSSES:
        assert build(name).name == name
    assert build("FKL").name == "forward_kl" and build("Skew-Reverse-KL").name == "skew_reverse_kl"
    assert parse_loss_spec("skew-forward-kl:alpha=0.2") == ("skew_forward_kl", {"alpha": 0.2})
    assert get_loss("jsd:beta=0.3").beta == 0.3
    assert build("skew_forward_kl").alpha == 0.1 and build("skew_reverse_kl").alpha == 0.1
    with pytest.raises(UserError, match=r"unknown KD loss 'kld'; known: forward_kl, reverse_kl, .*taid"):
        get_loss("kld")
    with pytest.raises(UserError, match=r"'jsd' has no option 'alpha'; options: beta, temperature"):
        get_loss("jsd", alpha=0.1)
    with pytest.raises(UserError, match="needs the number of training steps"):
        get_loss("taid")
    with pytest.raises(UserError, match=r"alpha must be in \[0, 1\]"):
        get_loss("skew_forward_kl", alpha=1.5)
    with pytest.raises(UserError, match="temperature must be a positive"):
        get_loss("forward_kl", temperature=0)
    with pytest.raises(UserError, match="expected key=value"):
        get_loss("jsd:beta")


def test_mix_and_causal_shift():
    ce, kd = torch.tensor(2.0), torch.tensor(6.0)
    assert mix(ce, kd, 0.25).item() == pytest.approx(0.75 * 2.0 + 0.25 * 6.0)
    assert mix(ce, kd, 0.0).item() == 2.0 and mix(ce, kd, 1.0).item() == 6.0
    with pytest.raises(UserError, match="kd_weight"):
        mix(ce, kd, 1.2)
    s, t, y = shift_for_causal_lm(logits(1), logits(2), LABELS)
    assert s.shape == (B, T - 1, V) and t.shape == (B, T - 1, V) and torch.equal(y, LABELS[:, 1:])


# -- TAID schedule -----------------------------------------------------------------------------
def test_taid_update_follows_the_formula():
    taid = TAID(total_steps=1_000_000)
    assert taid.t == 0.4
    taid.after_step(torch.tensor(2.0), step=0)  # first call only records the objective
    assert taid.t == 0.4
    taid.after_step(1.0, step=1)
    # delta = (2-1)/2 = 0.5; m = 0.01·0.5 = 0.005; dt = 5e-4·sigmoid(0.005)·(1-0.4)
    m = 0.005
    dt = 5e-4 * (1 / (1 + math.exp(-m))) * 0.6
    assert taid.t == pytest.approx(0.4 + dt, rel=1e-12)  # the linear floor (0.4000006) is lower
    taid.after_step(1.5, step=2)
    # delta = (1-1.5)/1 = -0.5; m = 0.99·0.005 - 0.005 = -0.00005
    m2 = 0.99 * m + 0.01 * (-0.5)
    assert taid.t == pytest.approx(0.4 + dt + 5e-4 / (1 + math.exp(-m2)) * (1 - 0.4 - dt), rel=1e-12)
    # with few total steps the linear floor wins: t_lin = 0.4 + 0.6·5/10
    short = TAID(total_steps=10)
    short.after_step(2.0, 0)
    short.after_step(1.0, 5)
    assert short.t == pytest.approx(0.7)


def test_taid_t_is_monotone_bounded_and_reaches_t_end():
    g = torch.Generator().manual_seed(0)
    for t_end in (1.0, 0.9):
        taid, linear = TAID(total_steps=200, t_end=t_end), TAID(total_steps=200, t_end=t_end, adaptive=False)
        seen = [taid.t]
        for step, value in enumerate((torch.rand(300, generator=g) * 3).tolist()):
            taid.after_step(value, step)
            linear.after_step(value, step)
            seen.append(taid.t)
            assert taid.t >= linear.t - 1e-12
        assert seen[0] == 0.4
        assert all(b >= a for a, b in zip(seen, seen[1:]))
        assert max(seen) <= t_end <= 1.0
        assert seen[-1] == t_end and linear.t == t_end
        assert seen[50] > 0.4


def test_taid_ignores_non_finite_losses_and_round_trips_its_state():
    taid = TAID(total_steps=1_000_000)
    taid.after_step(2.0, 0)
    taid.after_step(float("nan"), 1)
    taid.after_step(1.0, 2)
    t_now = taid.t
    assert math.isfinite(t_now) and t_now > 0.4
    clone = TAID(total_steps=1_000_000)
    clone.load_state_dict(taid.state_dict())
    assert clone.t == t_now
    clone.after_step(0.5, 3)
    taid.after_step(0.5, 3)
    assert clone.t == taid.t
    with pytest.raises(UserError, match="t_start"):
        TAID(total_steps=10, t_start=1.0)
    with pytest.raises(UserError, match="total_steps"):
        TAID(total_steps=0)


def test_taid_loss_at_t_one_is_forward_kl():
    s, t = logits(23), logits(24)
    taid = TAID(total_steps=4)
    start = taid(s, t, LABELS).item()
    assert start == pytest.approx(reference("taid", s, t, t_interp=0.4), rel=1e-5)
    taid.after_step(start, 0)
    taid.after_step(start, 4)  # the linear floor reaches t_end = 1
    assert taid.t == 1.0
    assert taid(s, t, LABELS).item() == pytest.approx(build("forward_kl")(s, t, LABELS).item(), rel=1e-6)
