"""Time-to-event metrics and the Cox loss: pure NumPy (the loss: PyTorch), censoring kept.

Conventions: ``time`` in days, ``event`` 1 = death observed, 0 = censored; ``risk``: higher =
earlier death. scikit-survival is the oracle in the tests.

* :func:`harrell_c_index` and :func:`bootstrap_c_index`: concordance as quadratic forms over a
  pair matrix, so a bootstrap resample is a weighting (2000 x 1000 patients in well under 2 s).
* :func:`kaplan_meier` (Greenwood variance, numbers at risk) and :func:`logrank_test`.
* :func:`cox_loss`: negative Cox partial log-likelihood (Efron or Breslow ties) for a network's
  risks; :class:`RiskBank` widens its risk sets beyond a mini-batch.
* :func:`risk_groups`: a cut-off fitted on validation risks, KM curves and log-rank on test.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from nsclc_engine.stats.bootstrap import bootstrap_weights


def check_survival(
    time: ArrayLike, event: ArrayLike, values: ArrayLike | None = None, name: str = "risk"
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``time`` float64 (> 0), ``event`` bool, ``values`` float64: 1-d, one length, finite."""
    time = np.asarray(time, dtype=np.float64)
    event = np.asarray(event)
    if not np.isin(event, (0, 1)).all():
        raise ValueError("event must hold only 0 (censored) and 1 (death observed)")
    event = event.astype(bool)
    arrays = [time, event] + ([] if values is None else [np.asarray(values, dtype=np.float64)])
    if any(a.ndim != 1 or a.shape != time.shape for a in arrays):
        raise ValueError(
            f"time, event and {name} must be 1-d arrays of one length; got "
            + ", ".join(str(a.shape) for a in arrays)
        )
    if not np.isfinite(time).all() or (time < 0).any():
        raise ValueError("time must be finite and non-negative")
    if values is not None and not np.isfinite(arrays[2]).all():
        raise ValueError(f"{name} must be finite")
    return time, event, arrays[2] if values is not None else None


def concordance_pairs(
    time: ArrayLike, event: ArrayLike, risk: ArrayLike, strata: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(comparable, concordant)`` n x n: pair (i, j) is comparable when patient ``i`` died
    while ``j`` was still known alive: ``event[i]`` and either ``time[i] < time[j]``, or the
    same time with ``j`` censored then (censoring after the death on the same day, as lifelines
    and scikit-survival count it); concordant scores 1 when ``risk[i] > risk[j]``, 0.5 when
    tied. Two deaths at the same time are not comparable.

    ``strata`` (one label per patient, e.g. the k-fold model that scored it): only pairs
    within one stratum are comparable. Risks of different Cox models have no common location,
    so pooled k-fold test risks are compared within each fold only."""
    time, event, risk = check_survival(time, event, risk)
    later = time[:, None] < time[None, :]
    censored_same_time = (time[:, None] == time[None, :]) & ~event[None, :]
    comparable = (later | censored_same_time) & event[:, None]
    if strata is not None:
        strata = np.asarray(strata)
        if strata.shape != time.shape:
            raise ValueError(f"strata has shape {strata.shape}; expected one per patient")
        comparable &= strata[:, None] == strata[None, :]
    difference = risk[:, None] - risk[None, :]
    concordant = comparable * ((difference > 0) + 0.5 * (difference == 0))
    return comparable.astype(np.float64), concordant


def harrell_c_index(
    time: ArrayLike, event: ArrayLike, risk: ArrayLike, strata: ArrayLike | None = None
) -> float:
    """Harrell's concordance index (``strata``: pairs within a stratum only, see
    :func:`concordance_pairs`); raises when no pair is comparable."""
    comparable, concordant = concordance_pairs(time, event, risk, strata)
    total = comparable.sum()
    if total == 0:
        raise ValueError("no comparable pair: every patient is censored or all times are equal")
    return float(concordant.sum() / total)


def resampled_ratios(
    numerator: np.ndarray, denominator: np.ndarray, n_resamples: int, seed: int
) -> np.ndarray:
    """``w' N w / w' D w`` for each bootstrap weighting ``w`` of :func:`bootstrap_weights`
    (pair-count matrices ``N`` and ``D``); NaN or inf where a resample has no pair in ``D``."""
    values = []
    for counts in bootstrap_weights(len(denominator), n_resamples, seed):
        weights = counts.astype(np.float64)
        top = np.einsum("bi,bi->b", weights @ numerator, weights)
        bottom = np.einsum("bi,bi->b", weights @ denominator, weights)
        with np.errstate(divide="ignore", invalid="ignore"):
            values.append(top / bottom)
    return np.concatenate(values)


def resampled_c_index(
    time: ArrayLike,
    event: ArrayLike,
    risk: ArrayLike,
    n_resamples: int,
    seed: int,
    strata: ArrayLike | None = None,
) -> np.ndarray:
    """Harrell's C of each patient-level bootstrap resample (NaN where a resample has no
    comparable pair). Two risks of the same patients resampled with one seed are paired."""
    comparable, concordant = concordance_pairs(time, event, risk, strata)
    return resampled_ratios(concordant, comparable, n_resamples, seed)


def bootstrap_c_index(
    time: ArrayLike,
    event: ArrayLike,
    risk: ArrayLike,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    strata: ArrayLike | None = None,
) -> dict:
    """Harrell's C with a patient-level percentile bootstrap CI (``strata``: the
    fold-stratified C of pooled k-fold predictions, pairs within a fold only).

    A resample draws patient ``i`` ``w_i`` times; its concordant and comparable pair counts
    are ``w' A w`` and ``w' C w`` (two copies of one patient are never comparable: equal
    times). Resamples without a comparable pair are counted (``n_undefined``) and left out.
    """
    comparable, concordant = concordance_pairs(time, event, risk, strata)
    values = resampled_ratios(concordant, comparable, n_resamples, seed)
    defined = values[np.isfinite(values)]
    alpha = (1 - level) / 2
    low, high = np.quantile(defined, [alpha, 1 - alpha]) if len(defined) else (np.nan, np.nan)
    if comparable.sum() == 0:
        raise ValueError("no comparable pair: every patient is censored or all times are equal")
    return {
        "c_index": float(concordant.sum() / comparable.sum()),
        "ci_low": float(low),
        "ci_high": float(high),
        "n_resamples": n_resamples,
        "n_undefined": int(len(values) - len(defined)),
    }


def paired_c_index_difference(
    time: ArrayLike,
    event: ArrayLike,
    risk_a: ArrayLike,
    risk_b: ArrayLike,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    strata: ArrayLike | None = None,
) -> dict:
    """Harrell's C of ``risk_a`` minus that of ``risk_b`` on the same patients, with a paired
    bootstrap CI (each resample weights both models' pairs alike) and a two-sided bootstrap
    p-value for "no difference" (twice the smaller share of resamples on either side of 0, at
    least 1 / resamples). ``strata``: pairs within a stratum only."""
    comparable, concordant_a = concordance_pairs(time, event, risk_a, strata)
    _, concordant_b = concordance_pairs(time, event, risk_b, strata)
    if comparable.sum() == 0:
        raise ValueError("no comparable pair: every patient is censored or all times are equal")
    difference = concordant_a - concordant_b
    values = resampled_ratios(difference, comparable, n_resamples, seed)
    defined = values[np.isfinite(values)]
    if not len(defined):
        raise ValueError("no bootstrap resample has a comparable pair")
    alpha = (1 - level) / 2
    low, high = np.quantile(defined, [alpha, 1 - alpha])
    tail = min(np.mean(defined <= 0), np.mean(defined >= 0))
    # a bootstrap p-value cannot be smaller than one resample in n_resamples
    p_value = min(1.0, max(2 * tail, 1 / len(defined)))
    return {
        "difference": float(difference.sum() / comparable.sum()),
        "ci_low": float(low),
        "ci_high": float(high),
        "p_value": float(p_value),
        "n": len(comparable),
        "n_resamples": n_resamples,
        "n_undefined": int(len(values) - len(defined)),
    }


def kaplan_meier(time: ArrayLike, event: ArrayLike) -> dict:
    """Kaplan-Meier estimate at each distinct time: ``time``, ``survival``, ``at_risk``,
    ``events``, ``censored`` and Greenwood's variance of the survival estimate."""
    time, event, _ = check_survival(time, event)
    distinct, inverse = np.unique(time, return_inverse=True)
    events = np.bincount(inverse, weights=event, minlength=len(distinct))
    leaving = np.bincount(inverse, minlength=len(distinct))
    at_risk = len(time) - np.r_[0, np.cumsum(leaving)[:-1]]
    factor = 1.0 - events / at_risk
    survival = np.cumprod(factor)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(at_risk > events, events / (at_risk * (at_risk - events)), 0.0)
    variance = survival**2 * np.cumsum(terms)
    return {
        "time": distinct,
        "survival": survival,
        "at_risk": at_risk.astype(int),
        "events": events.astype(int),
        "censored": (leaving - events).astype(int),
        "variance": variance,
    }


def at_risk_at(km: dict, times: ArrayLike) -> np.ndarray:
    """Numbers at risk just before each of ``times`` (the table under a KM plot)."""
    times = np.asarray(times, dtype=float)
    index = np.searchsorted(km["time"], times, side="left")
    after_last = km["at_risk"][-1] - km["events"][-1] - km["censored"][-1]
    return np.r_[km["at_risk"], after_last][index]


def logrank_test(time: ArrayLike, event: ArrayLike, group: ArrayLike) -> dict:
    """Log-rank test of equal survival across the groups in ``group`` (chi-square, k - 1 df)."""
    from scipy.stats import chi2

    time, event, _ = check_survival(time, event)
    group = np.asarray(group)
    labels = np.unique(group)
    if len(labels) < 2:
        raise ValueError("the log-rank test needs at least two groups")
    distinct = np.unique(time[event])
    observed_minus_expected = np.zeros(len(labels))
    covariance = np.zeros((len(labels), len(labels)))
    for t in distinct:
        at_risk = time >= t
        n = at_risk.sum()
        d = (event & (time == t)).sum()
        n_g = np.array([(at_risk & (group == g)).sum() for g in labels], dtype=np.float64)
        d_g = np.array([(event & (time == t) & (group == g)).sum() for g in labels])
        observed_minus_expected += d_g - d * n_g / n
        if n > 1:
            share = n_g / n
            covariance += d * (n - d) / (n - 1) * (np.diag(share) - np.outer(share, share))
    u, v = observed_minus_expected[:-1], covariance[:-1, :-1]
    statistic = float(u @ np.linalg.solve(v, u))
    return {
        "statistic": statistic,
        "df": len(labels) - 1,
        "p_value": float(chi2.sf(statistic, len(labels) - 1)),
        "groups": labels.tolist(),
        "observed_minus_expected": observed_minus_expected.tolist(),
    }


def cox_loss(risk, time, event, ties: str = "efron"):
    """Negative Cox partial log-likelihood per event of torch tensors; tied death times by
    Efron's approximation (default, as lifelines, scikit-survival and torchsurv) or Breslow's.

    ``risk`` [n] (log hazard ratios, higher = earlier death), ``time`` [n], ``event`` [n] (1 =
    death). Death ``i`` adds ``risk_i - log(sum_R exp(risk) - f_i sum_D exp(risk))``, ``R``
    the patients still at risk at ``time_i``, ``D`` the ``d`` deaths at ``time_i``, ``f_i`` 0
    (Breslow) or ``k / d`` for the ``k``-th (0-based) of those deaths (Efron). With no event in
    the batch the likelihood has no term: the loss is 0 with zero gradient (widen the risk sets
    with a :class:`RiskBank`, or evaluate on a whole split, to avoid such batches).
    """
    import torch

    if ties not in ("breslow", "efron"):
        raise ValueError(f"ties must be 'breslow' or 'efron'; got {ties!r}")
    time = time.to(risk.dtype)
    dead = event.to(torch.bool)
    n_events = dead.sum()
    if n_events == 0:
        return risk.sum() * 0.0
    death_time = time[dead]
    # row i: risks of R(t_i), -inf outside it (no matmul: autocast would run it in bf16)
    at_risk = time[None, :] >= death_time[:, None]
    log_denominator = torch.logsumexp(risk.expand_as(at_risk).masked_fill(~at_risk, -torch.inf), 1)
    if ties == "efron":
        tied = dead[None, :] & (time[None, :] == death_time[:, None])
        position = torch.arange(len(risk), device=risk.device)
        before = position[None, :] < position[dead][:, None]
        fraction = (tied & before).sum(1).to(risk.dtype) / tied.sum(1).to(risk.dtype)
        log_tied = torch.logsumexp(risk.expand_as(tied).masked_fill(~tied, -torch.inf), 1)
        # log(S_R - f S_D) = log S_R + log1p(-f S_D / S_R), with S_D <= S_R and f < 1
        log_denominator = log_denominator + torch.log1p(
            -fraction * torch.exp(log_tied - log_denominator)
        )
    return -(risk[dead] - log_denominator).sum() / n_events


class RiskBank:
    """The detached risks, times and events of the last ``capacity`` training patients (FIFO,
    each patient once) to widen the Cox risk sets of small batches beyond the batch.

    :meth:`loss` is :func:`cox_loss` over the batch (with gradient) and the bank's patients not
    in the batch (detached, from earlier model states); every death in that union adds its
    term, a banked one reaching the network through the batch patients in its risk set. Then
    the batch joins the bank. ``capacity`` 0: the plain batch loss.
    """

    def __init__(self, capacity: int, ties: str = "efron"):
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0; got {capacity}")
        self.capacity = capacity
        self.ties = ties
        self.reset()

    def reset(self) -> None:
        import torch

        self.risk = torch.zeros(0)
        self.time = torch.zeros(0)
        self.event = torch.zeros(0, dtype=torch.bool)
        self.patient_ids: list[str] = []

    def __len__(self) -> int:
        return len(self.patient_ids)

    def _not_in(self, patient_ids: list[str] | tuple[str, ...], device):
        import torch

        batch = set(patient_ids)
        return torch.tensor([p not in batch for p in self.patient_ids], device=device, dtype=bool)

    def loss(self, risk, time, event, patient_ids: list[str] | tuple[str, ...]):
        """Cox loss of ``risk`` [n] (``time``, ``event`` [n], one ``patient_ids`` each) with
        the banked patients added to the risk sets; then pushes the batch."""
        import torch

        patient_ids = list(patient_ids)
        if len(patient_ids) != len(risk):
            raise ValueError(f"{len(patient_ids)} patient_ids for {len(risk)} risks")
        keep = self._not_in(patient_ids, risk.device)
        loss = cox_loss(
            torch.cat([risk, self.risk.to(risk)[keep]]),
            torch.cat([time.to(risk), self.time.to(risk)[keep]]),
            torch.cat(
                [event.to(device=risk.device, dtype=torch.bool), self.event.to(risk.device)[keep]]
            ),
            ties=self.ties,
        )
        self.push(risk, time, event, patient_ids)
        return loss

    def state_dict(self) -> dict:
        """The bank's contents as plain Python values (lists, dtype names), for a checkpoint
        and for gathering across DDP ranks."""
        return {
            name: {"values": tensor.tolist(), "dtype": str(tensor.dtype).removeprefix("torch.")}
            for name, tensor in (("risk", self.risk), ("time", self.time), ("event", self.event))
        } | {"patient_ids": list(self.patient_ids)}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s contents (an empty dict: an empty bank)."""
        import torch

        self.reset()
        if state:
            self.risk, self.time, self.event = (
                torch.tensor(state[name]["values"], dtype=getattr(torch, state[name]["dtype"]))
                for name in ("risk", "time", "event")
            )
            self.patient_ids = list(state["patient_ids"])

    def push(self, risk, time, event, patient_ids: list[str] | tuple[str, ...]) -> None:
        """Adds a batch (detached, on its device and dtype), replacing older entries of its
        patients and dropping the oldest beyond ``capacity``."""
        import torch

        if self.capacity == 0:
            return
        patient_ids = list(patient_ids)
        keep = self._not_in(patient_ids, risk.device)
        batch = set(patient_ids)
        kept_ids = [p for p in self.patient_ids if p not in batch]
        start = max(0, len(kept_ids) + len(patient_ids) - self.capacity)
        self.risk = torch.cat([self.risk.to(risk)[keep], risk.detach()])[start:]
        self.time = torch.cat([self.time.to(risk)[keep], time.to(risk)])[start:]
        self.event = torch.cat(
            [self.event.to(risk.device)[keep], event.to(device=risk.device, dtype=torch.bool)]
        )[start:]
        self.patient_ids = (kept_ids + patient_ids)[start:]


def risk_groups(
    validation_risk: ArrayLike,
    test_time: ArrayLike,
    test_event: ArrayLike,
    test_risk: ArrayLike,
    quantile: float = 0.5,
) -> dict:
    """Split test patients at a cut-off fitted on validation risks (the ``quantile``; median by
    default) into low and high risk: Kaplan-Meier per group and the log-rank test."""
    cut = float(np.quantile(np.asarray(validation_risk, dtype=float), quantile))
    time, event, risk = check_survival(test_time, test_event, test_risk)
    return {"cut_off": cut, "quantile": quantile, **groups_at(time, event, risk > cut)}


def groups_at(time: ArrayLike, event: ArrayLike, high: ArrayLike) -> dict:
    """Kaplan-Meier of the low- and high-risk patients (``high`` a boolean per patient) and the
    log-rank test between them (``None`` when one group is empty)."""
    time, event, _ = check_survival(time, event)
    high = np.asarray(high, dtype=bool)
    groups = {}
    for name, members in (("low risk", ~high), ("high risk", high)):
        if members.any():
            groups[name] = kaplan_meier(time[members], event[members])
    logrank = None
    if high.any() and (~high).any():
        logrank = logrank_test(time, event, high.astype(int))
    return {"groups": groups, "logrank": logrank}
