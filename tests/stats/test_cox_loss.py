"""The Cox loss (Efron and Breslow ties) against scikit-survival's Cox model and by hand; the
risk bank against the plain loss on the union of batch and bank; the survival task's use of it."""

import numpy as np
import pandas as pd
import pytest
import torch

from nsclc_engine.stats.survival import RiskBank, cox_loss
from nsclc_engine.train.tasks import SurvivalTask


def tied_cohort(n=40, seed=3):
    """Two covariates; death and censoring times rounded up to thirds, so deaths tie a lot."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    death = np.ceil(rng.exponential(np.exp(-x @ np.array([0.8, -0.5]))) * 3)
    censoring = np.ceil(rng.exponential(2.0, size=n) * 3)
    return x, np.minimum(death, censoring), death <= censoring


def newton_fit(x, time, event, ties):
    """Coefficients minimising ``cox_loss(x @ beta)``: Newton steps with autograd's Hessian."""
    x, time, event = torch.tensor(x), torch.tensor(time), torch.tensor(event)

    def loss(beta):
        return cox_loss(x @ beta, time, event, ties)

    beta = torch.zeros(x.shape[1], dtype=torch.float64)
    for _ in range(50):
        gradient = torch.autograd.functional.jacobian(loss, beta)
        step = torch.linalg.solve(torch.autograd.functional.hessian(loss, beta), gradient)
        beta = beta - step
        if step.abs().max() < 1e-12:
            break
    return beta.numpy()


def test_minimising_the_loss_recovers_scikit_survival_coefficients_for_both_ties():
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    x, time, event = tied_cohort()
    assert np.unique(time[event], return_counts=True)[1].max() >= 5  # ties matter here
    y = Surv.from_arrays(event, time)
    fitted = {}
    for ties in ("efron", "breslow"):
        oracle = CoxPHSurvivalAnalysis(ties=ties, alpha=0).fit(x, y).coef_
        fitted[ties] = newton_fit(x, time, event, ties)
        np.testing.assert_allclose(fitted[ties], oracle, atol=1e-6)
    # a loss that ignored ``ties`` would fit one of the two
    assert np.abs(fitted["efron"] - fitted["breslow"]).max() > 0.05


def test_default_ties_are_efron():
    x, time, event = tied_cohort()
    risk = torch.tensor(x @ np.array([0.3, -0.2]))
    time, event = torch.tensor(time), torch.tensor(event)
    assert cox_loss(risk, time, event).item() == cox_loss(risk, time, event, "efron").item()
    assert cox_loss(risk, time, event).item() != cox_loss(risk, time, event, "breslow").item()


@pytest.mark.parametrize("order", [[0, 1, 2, 3, 4], [4, 3, 1, 2, 0], [2, 0, 4, 1, 3]])
def test_loss_by_hand_with_tied_deaths_in_any_patient_order(order):
    # deaths of patients 0 and 1 at day 2, patient 2 censored at 3, death of 3 and censoring
    # of 4 at day 5
    r = np.array([0.4, -0.3, 0.2, 0.7, -0.1])
    time = np.array([2.0, 2.0, 3.0, 5.0, 5.0])
    event = np.array([1, 1, 0, 1, 0])
    e = np.exp(r)
    all_at_risk, tied_at_2, at_risk_at_5 = e.sum(), e[0] + e[1], e[3] + e[4]
    # Efron: the second of two tied deaths sees the risk set less half of the tied deaths
    efron = (
        -(
            r[0]
            + r[1]
            - np.log(all_at_risk)
            - np.log(all_at_risk - 0.5 * tied_at_2)
            + r[3]
            - np.log(at_risk_at_5)
        )
        / 3
    )
    breslow = -(r[0] + r[1] - 2 * np.log(all_at_risk) + r[3] - np.log(at_risk_at_5)) / 3
    args = [torch.tensor(a[order]) for a in (r, time, event)]
    assert cox_loss(*args).item() == pytest.approx(efron, rel=1e-12)
    assert cox_loss(*args, ties="breslow").item() == pytest.approx(breslow, rel=1e-12)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_no_event_gives_zero_loss_and_zero_gradient(ties):
    risk = torch.tensor([0.5, -0.2, 0.1], requires_grad=True)
    loss = cox_loss(risk, torch.tensor([1.0, 2.0, 2.0]), torch.zeros(3, dtype=torch.long), ties)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(risk.grad, torch.zeros(3))


def test_unknown_ties_are_rejected():
    with pytest.raises(ValueError, match="'exact'"):
        cox_loss(torch.zeros(2), torch.ones(2), torch.ones(2), ties="exact")


def random_batch(rng, patient_ids, requires_grad=False):
    n = len(patient_ids)
    risk = torch.tensor(rng.normal(size=n), requires_grad=requires_grad)
    time = torch.tensor(rng.integers(1, 10, size=n).astype(float))
    event = torch.tensor(rng.integers(0, 2, size=n))
    return risk, time, event, list(patient_ids)


def test_bank_loss_is_the_loss_of_batch_and_bank_without_repeated_patients():
    rng = np.random.default_rng(0)
    bank = RiskBank(capacity=8)
    for start in range(0, 12, 4):
        bank.loss(*random_batch(rng, [f"p{i}" for i in range(start, start + 4)]))
    assert bank.patient_ids == [f"p{i}" for i in range(4, 12)]
    # p5 and p9 are banked and in the batch: only their batch risks count
    risk, time, event, ids = random_batch(rng, ["p5", "p9", "p20", "p21"], requires_grad=True)
    banked = [i for i, p in enumerate(bank.patient_ids) if p not in ids]
    expected_risk = torch.cat([risk, bank.risk[banked]])
    expected = cox_loss(
        expected_risk, torch.cat([time, bank.time[banked]]), torch.cat([event, bank.event[banked]])
    )
    (expected_gradient,) = torch.autograd.grad(expected, risk)
    loss = bank.loss(risk, time, event, ids)
    loss.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    torch.testing.assert_close(risk.grad, expected_gradient)
    assert not bank.risk.requires_grad
    # re-seen patients move to the newest end; the two oldest of the ten are dropped
    assert bank.patient_ids == ["p7", "p8", "p10", "p11", *ids]
    assert len(set(bank.patient_ids)) == len(bank)


def test_gradient_reaches_the_batch_only():
    rng = np.random.default_rng(1)
    bank = RiskBank(capacity=32)
    earlier = random_batch(rng, ["a", "b", "c", "d"], requires_grad=True)
    bank.push(*earlier)
    risk, time, event, ids = random_batch(rng, ["e", "f", "g", "h"], requires_grad=True)
    event[:] = 1
    bank.loss(risk, time, event, ids).backward()
    assert earlier[0].grad is None
    assert risk.grad.abs().sum() > 0


def test_bank_is_fifo_within_its_capacity_and_resets():
    rng = np.random.default_rng(2)
    bank = RiskBank(capacity=5)
    bank.push(*random_batch(rng, ["a", "b"]))
    bank.push(*random_batch(rng, ["c", "d"]))
    risk, time, event, ids = random_batch(rng, ["e", "f"])
    bank.push(risk, time, event, ids)
    assert bank.patient_ids == ["b", "c", "d", "e", "f"]
    assert len(bank.risk) == len(bank.time) == len(bank.event) == 5
    torch.testing.assert_close(bank.risk[-2:], risk)
    torch.testing.assert_close(bank.time[-2:], time)
    assert bank.event[-2:].tolist() == event.bool().tolist()
    bank.push(*random_batch(rng, ["c"]))  # a re-seen patient moves to the newest end
    assert bank.patient_ids == ["b", "d", "e", "f", "c"]
    bank.reset()
    assert len(bank) == 0 and len(bank.risk) == 0


def test_capacity_zero_is_the_plain_batch_loss():
    rng = np.random.default_rng(3)
    bank = RiskBank(capacity=0)
    for _ in range(3):
        batch = random_batch(rng, ["a", "b", "c", "d"])
        assert bank.loss(*batch).item() == cox_loss(*batch[:3]).item()
    assert len(bank) == 0
    with pytest.raises(ValueError, match="-1"):
        RiskBank(capacity=-1)


def test_a_lone_death_in_a_batch_of_four_gets_comparators_from_the_bank():
    # the only death is the last time of its batch: alone in its risk set, so the batch-only
    # loss is 0 with no gradient
    rng = np.random.default_rng(4)
    risk = torch.tensor([0.3, -0.1, 0.2, 0.5], dtype=torch.float64, requires_grad=True)
    time = torch.tensor([2.0, 3.0, 4.0, 8.0], dtype=torch.float64)
    event = torch.tensor([0, 0, 0, 1])
    (alone,) = torch.autograd.grad(cox_loss(risk, time, event), risk)
    assert torch.equal(alone, torch.zeros(4, dtype=torch.float64))

    bank = RiskBank(capacity=32)
    for start in range(0, 32, 4):
        bank.push(*random_batch(rng, [f"p{i}" for i in range(start, start + 4)]))
    assert len(bank) == 32 and (bank.time >= 8).any()
    bank.loss(risk, time, event, ["q0", "q1", "q2", "q3"]).backward()
    # the death now competes with banked patients who lived longer: raising its risk helps
    assert risk.grad[3] < 0


def test_bank_follows_the_risk_device_and_dtype():
    bank = RiskBank(capacity=4)
    bank.push(torch.zeros(2, dtype=torch.float64), torch.ones(2), torch.ones(2), ["a", "b"])
    risk = torch.zeros(2, dtype=torch.float32, requires_grad=True)
    loss = bank.loss(risk, torch.tensor([1.0, 2.0]), torch.tensor([1, 0]), ["c", "d"])
    assert loss.dtype == torch.float32 and bank.risk.dtype == torch.float32


def test_survival_task_grows_its_bank_and_without_one_is_the_plain_loss():
    times = {f"p{i}": float(1 + i % 5) for i in range(12)}
    outputs = torch.linspace(-1, 1, 12).reshape(12, 1).requires_grad_()
    targets = torch.tensor([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0])
    ids = list(times)

    task = SurvivalTask(times, "cpu", bank_size=6)
    for n_batches, banked in zip((1, 2, 3), (4, 6, 6), strict=True):
        batch = slice(4 * (n_batches - 1), 4 * n_batches)
        task.batch_loss(outputs[batch], targets[batch], ids[batch]).backward()
        assert len(task.bank) == banked
    assert task.bank.patient_ids == ids[6:]

    plain = SurvivalTask(times, "cpu")
    loss = plain.batch_loss(outputs[:4], targets[:4], ids[:4])
    expected = cox_loss(outputs[:4, 0], torch.tensor([times[p] for p in ids[:4]]), targets[:4])
    assert loss.item() == expected.item() and len(plain.bank) == 0


def test_survival_validation_loss_is_efron_over_the_whole_split():
    frame = pd.DataFrame(
        {
            "risk": [0.4, -0.3, 0.2, 0.7, -0.1],
            "time_days": [2.0, 2.0, 3.0, 5.0, 5.0],
            "event": [1, 1, 0, 1, 0],
        }
    )
    args = [torch.tensor(frame[c].to_numpy()) for c in frame]
    loss = SurvivalTask({}, "cpu").validation_loss(frame)
    assert loss == pytest.approx(cox_loss(*args, ties="efron").item(), rel=1e-12)
    assert loss != pytest.approx(cox_loss(*args, ties="breslow").item(), rel=1e-6)


def test_risk_bank_state_survives_a_checkpoint_exactly():
    import io

    from nsclc_engine.stats.survival import RiskBank

    bank = RiskBank(3)
    bank.push(
        torch.tensor([0.25, -1.5]), torch.tensor([30.0, 400.0]), torch.tensor([1, 0]), ["a", "b"]
    )
    bank.push(torch.tensor([2.0]), torch.tensor([90.0]), torch.tensor([1]), ["c"])
    buffer = io.BytesIO()
    torch.save(bank.state_dict(), buffer)
    buffer.seek(0)
    restored = RiskBank(3)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.patient_ids == ["a", "b", "c"]
    for name in ("risk", "time", "event"):
        assert torch.equal(getattr(restored, name), getattr(bank, name))
        assert getattr(restored, name).dtype == getattr(bank, name).dtype
    restored.load_state_dict({})  # no saved bank: an empty one
    assert len(restored) == 0
