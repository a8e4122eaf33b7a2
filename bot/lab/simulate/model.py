"""The traffic model: a payment platform's metrics minute by minute, with injected scenarios.

Everything is vectorised over (time, slice) with numpy. Counts are drawn, never computed
from a formula: Poisson arrivals on a rate that carries daily and weekly seasonality in each
country's local time, a slow random drift, and gamma noise (so counts are overdispersed as
real ones are); outcomes are binomial on rates that themselves wobble from minute to minute
(beta-binomial-like). Scenarios change rates, volumes and queues; they never write numbers.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr

from paytriage.lab.simulate.scenarios import Scenario
from paytriage.lab.simulate.spec import EVENT_TYPES, REASONS, SimulationSpec, country_profile

AUTH_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
LAG_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

# Baseline technical error rate of each PSP and the median latency of its API.
_PSP_ERROR = {"adyen": 0.003, "stripe": 0.004, "braintree": 0.006, "worldpay": 0.008}
_PSP_LATENCY = {"adyen": 0.28, "stripe": 0.33, "braintree": 0.42, "worldpay": 0.55}
_PSP_WEIGHT = {"adyen": 0.32, "stripe": 0.3, "braintree": 0.14, "worldpay": 0.14}
_PAYPAL_PSPS = {"adyen", "braintree", "checkout"}
_METHOD_SHARE = {"card": 0.62, "apple_pay": 0.14, "google_pay": 0.09, "paypal": 0.15}
_METHOD_DECLINE = {"card": 1.0, "apple_pay": 0.45, "google_pay": 0.5, "paypal": 0.6}
_REASON_MIX = np.array([0.34, 0.24, 0.08, 0.07, 0.08, 0.1, 0.03, 0.06])
# What extra declines look like in each scenario that causes them.
_ISSUER_MIX = np.array([0.05, 0.5, 0.0, 0.15, 0.0, 0.0, 0.3, 0.0])
_METHOD_MIX = np.array([0.0, 0.05, 0.0, 0.0, 0.15, 0.8, 0.0, 0.0])
_WEEKDAY = np.array([1.0, 1.0, 1.0, 1.02, 1.08, 0.9, 0.84])  # Monday first


@dataclass
class Sample:
    """One series: the sample name (with its suffix), labels and a value per time step."""

    name: str
    labels: dict[str, str]
    values: np.ndarray  # NaN where the series has no sample


@dataclass
class Family:
    name: str  # OpenMetrics family name (a counter's without _total)
    type: str  # counter | gauge | histogram
    help: str
    samples: list[Sample] = field(default_factory=list)


@dataclass
class Slices:
    """The routed (country, psp, method) combinations: not every PSP serves every market."""

    country: list[str]
    psp: list[str]
    method: list[str]
    weight: np.ndarray  # share of the country's volume

    def mask(self, dims: dict[str, str]) -> np.ndarray:
        m = np.ones(len(self.country), dtype=bool)
        for key, value in dims.items():
            col = getattr(self, key)
            m &= np.array([v == value for v in col])
        return m


@dataclass
class Traffic:
    """What happened, per time step: the metrics' raw counts, reused by the log generator."""

    times: np.ndarray  # unix seconds
    slices: Slices
    attempts: np.ndarray  # (T, S)
    declined: np.ndarray  # (T, S)
    errors: np.ndarray  # (T, S)
    outage_errors: np.ndarray  # (T, S) the part of errors a PSP outage or blip caused
    declines_by_reason: np.ndarray  # (T, S, R)
    capture_failed: dict[str, np.ndarray]
    webhook_failed: dict[str, np.ndarray]
    backlog: dict[str, np.ndarray]  # queue depth per psp
    backlog_age: dict[str, np.ndarray]
    refunds_stuck: dict[str, np.ndarray]
    refunds_over_sla: dict[str, np.ndarray]
    counter_resets: list[dict[str, object]]
    routing: dict[str, dict[str, float]]


def intensity(times: np.ndarray, s: Scenario, ramp_s: float = 120.0) -> np.ndarray:
    """0..1 strength of a scenario at each time: ramps up and heals over ``ramp_s``."""
    t0, t1 = s.start.timestamp(), s.end.timestamp()
    ramp = min(ramp_s, (t1 - t0) / 4) if s.kind != "blip" else 1.0
    up = np.clip((times - t0) / ramp + 1e-9, 0, 1)
    down = np.clip((t1 - times) / ramp, 0, 1)
    out = np.minimum(up, down)
    out[(times < t0) | (times >= t1)] = 0.0
    return out


def _daily(local_hours: np.ndarray) -> np.ndarray:
    """Relative volume by local hour: a night trough, a lunch peak and a bigger evening one."""
    h = np.mod(local_hours, 24.0)

    def bump(center: float, width: float) -> np.ndarray:
        d = np.minimum(np.abs(h - center), 24 - np.abs(h - center))
        return np.exp(-((d / width) ** 2))

    return 0.1 + 0.3 * bump(9.5, 2.0) + 0.55 * bump(13.0, 2.8) + 0.6 * bump(20.5, 2.2)


def seasonality(times: np.ndarray, utc_offset: float) -> np.ndarray:
    local = times + utc_offset * 3600.0
    hours = (local % 86400.0) / 3600.0
    weekday = ((local // 86400.0).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    return _daily(hours) * _WEEKDAY[weekday]


def _ar_drift(rng: np.random.Generator, n: int, k: int, step_s: float, sd: float) -> np.ndarray:
    """Slow multiplicative wander (log-AR(1), one-hour memory), shape (n, k)."""
    phi = math.exp(-step_s / 3600.0)
    eps = rng.normal(0.0, sd * math.sqrt(1 - phi * phi), size=(n, k))
    out = np.empty((n, k))
    out[0] = rng.normal(0.0, sd, size=k)
    for i in range(1, n):
        out[i] = phi * out[i - 1] + eps[i]
    return np.exp(out)


def route(spec: SimulationSpec, rng: np.random.Generator) -> Slices:
    """Which PSPs serve each country (with shares) and which methods go through which PSP."""
    psps = list(spec.psps)
    base = np.array([_PSP_WEIGHT.get(p, 0.1) for p in psps])
    chosen: dict[str, list[int]] = {}
    for c in spec.countries:
        take = rng.random(len(psps)) < 0.75
        if take.sum() < min(2, len(psps)):
            take[np.argsort(-base * rng.random(len(psps)))[: min(2, len(psps))]] = True
        chosen[c] = [i for i in range(len(psps)) if take[i]]
    for i in range(len(psps)):  # every PSP serves somewhere
        if not any(i in idx for idx in chosen.values()):
            chosen[spec.countries[i % len(spec.countries)]].append(i)
    country, psp, method, weight = [], [], [], []
    for c in spec.countries:
        idx = sorted(chosen[c])
        share = base[idx] * rng.lognormal(0.0, 0.35, size=len(idx))
        share /= share.sum()
        mshare = np.array([_METHOD_SHARE.get(m, 0.05) for m in spec.methods])
        mshare *= rng.lognormal(0.0, 0.2, size=len(mshare))
        mshare /= mshare.sum()
        for mi, m in enumerate(spec.methods):
            ok = [k for k, i in enumerate(idx) if m != "paypal" or psps[i] in _PAYPAL_PSPS]
            if not ok:  # nobody takes PayPal here: its buyers pay by card
                continue
            sub = share[ok] / share[ok].sum()
            for k, s in zip(ok, sub, strict=True):
                country.append(c)
                psp.append(psps[idx[k]])
                method.append(m)
                weight.append(mshare[mi] * s)
    w = np.array(weight)
    for c in spec.countries:  # renormalise: a dropped method's share moves to the rest
        sel = np.array([x == c for x in country])
        w[sel] /= w[sel].sum()
    return Slices(country, psp, method, w)


def _bucket_probs(median: np.ndarray, sigma: np.ndarray, bounds: tuple[float, ...]) -> np.ndarray:
    """P(value <= bound) for a log-normal, per row; shape (n, len(bounds))."""
    b = np.log(np.array(bounds))[None, :]
    return np.asarray(ndtr((b - np.log(median)[:, None]) / sigma[:, None]))


def _histogram(
    rng: np.random.Generator,
    counts: np.ndarray,
    cdf: np.ndarray,
    reps: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw per-step bucket counts; return (cumulative-by-le counts (n, B+1), sums (n,))."""
    edges = np.concatenate([cdf, np.ones((cdf.shape[0], 1))], axis=1)
    p = np.diff(np.concatenate([np.zeros((cdf.shape[0], 1)), edges], axis=1), axis=1)
    p = np.clip(p, 0, None)
    p /= p.sum(axis=1, keepdims=True)
    per_bin = rng.multinomial(counts.astype(np.int64), p)
    sums = (per_bin * reps[None, :]).sum(axis=1) * rng.lognormal(0, 0.05, size=len(counts))
    return np.cumsum(per_bin, axis=1), sums


def _reps(bounds: tuple[float, ...], top: float) -> np.ndarray:
    lo = np.array((bounds[0] / 2, *bounds))
    hi = np.array((*bounds, top))
    return np.sqrt(lo * hi)


def generate_traffic(spec: SimulationSpec) -> tuple[list[Family], Traffic]:
    """Draw every metric of docs/telemetry.md for the spec. Deterministic for a given seed."""

    def rng_for(part: int) -> np.random.Generator:
        # One stream per component: adding a scenario does not reshuffle normal traffic.
        return np.random.default_rng([spec.seed, part])

    step_s = spec.step_seconds
    n = spec.points
    times = spec.start.timestamp() + np.arange(n) * step_s
    slices = route(spec, rng_for(1))
    n_slices = len(slices.country)
    countries = list(spec.countries)
    c_idx = np.array([countries.index(c) for c in slices.country])
    psps = list(spec.psps)
    p_idx = np.array([psps.index(p) for p in slices.psp])

    # --- volume -----------------------------------------------------------------------
    rng = rng_for(2)
    season = np.stack([seasonality(times, country_profile(c).utc_offset) for c in countries], 1)
    peak = np.array([country_profile(c).peak_per_min for c in countries]) * spec.volume_scale
    drift = _ar_drift(rng, n, len(countries), step_s, 0.06)
    country_rate = season * drift * peak[None, :] * (step_s / 60.0)
    lam = country_rate[:, c_idx] * slices.weight[None, :]
    lam = lam * rng.gamma(40.0, 1 / 40.0, size=lam.shape)
    vol_mult = np.ones_like(lam)
    scen_intensity = {id(s): intensity(times, s) for s in spec.scenarios}
    for s in spec.scenarios:
        e = scen_intensity[id(s)][:, None] * slices.mask(dict(s.dims))[None, :]
        if s.kind == "traffic_drop":
            vol_mult *= 1 - np.clip(0.85 * s.magnitude, 0, 0.98) * e
        elif s.kind == "flash_sale":
            vol_mult *= 1 + 2.0 * s.magnitude * e
    attempts = rng.poisson(lam * vol_mult).astype(np.float64)

    # --- outcomes ---------------------------------------------------------------------
    rng = rng_for(3)
    hours_factor = np.stack(
        [_daily(times / 3600.0 + country_profile(c).utc_offset) for c in countries], 1
    )
    night = 1 + 0.25 * (1 - hours_factor / hours_factor.max())  # more declines at night
    psp_decline = rng.lognormal(0, 0.1, size=len(psps))
    base_decline = (
        np.array([country_profile(c).card_decline_rate for c in slices.country])
        * np.array([_METHOD_DECLINE.get(m, 0.7) for m in slices.method])
        * psp_decline[p_idx]
    )
    p_decl = np.clip(
        base_decline[None, :] * night[:, c_idx] * rng.lognormal(0, 0.08, size=(n, n_slices)),
        0,
        0.95,
    )
    declined_base = rng.binomial(attempts.astype(np.int64), p_decl)
    by_reason = rng.multinomial(declined_base, _REASON_MIX)
    declined = declined_base.astype(np.float64)
    for s in spec.scenarios:
        mix = {"issuer_decline_spike": _ISSUER_MIX, "method_failure": _METHOD_MIX}.get(s.kind)
        if mix is None:
            continue
        add = 0.18 if s.kind == "issuer_decline_spike" else 0.3
        e = scen_intensity[id(s)][:, None] * slices.mask(dict(s.dims))[None, :]
        p_add = np.clip(add * s.magnitude * e, 0, 0.9)
        extra = rng.binomial((attempts - declined).astype(np.int64), p_add)
        by_reason += rng.multinomial(extra, mix)
        declined += extra
    psp_err = np.array([_PSP_ERROR.get(p, 0.005) for p in psps])
    err_drift = _ar_drift(rng, n, len(psps), step_s, 0.15)
    p_err = psp_err[None, p_idx] * err_drift[:, p_idx] * rng.lognormal(0, 0.1, (n, n_slices))
    out_add = np.zeros((n, n_slices))
    for s in spec.scenarios:
        e = scen_intensity[id(s)][:, None] * slices.mask(dict(s.dims))[None, :]
        if s.kind == "psp_outage":
            out_add += 0.35 * s.magnitude * e
        elif s.kind == "blip":
            out_add += 0.25 * s.magnitude * e
        elif s.kind == "method_failure":
            p_err = p_err + 0.06 * s.magnitude * e
    remaining = (attempts - declined).astype(np.int64)
    errors_base = rng.binomial(remaining, np.clip(p_err, 0, 0.9))
    outage_errors = rng.binomial(remaining - errors_base, np.clip(out_add, 0, 0.95))
    errors = (errors_base + outage_errors).astype(np.float64)
    approved = attempts - declined - errors

    families: list[Family] = []
    auth = Family(
        "payment_authorizations",
        "counter",
        "Authorization attempts by outcome (approved, declined by the issuer, technical error).",
    )
    dec = Family("payment_declines", "counter", "Declined authorization attempts by reason.")
    for j in range(n_slices):
        base_labels = {"psp": slices.psp[j], "method": slices.method[j]}
        base_labels["country"] = slices.country[j]
        for outcome, arr in (("approved", approved), ("declined", declined), ("error", errors)):
            labels = {**base_labels, "outcome": outcome}
            auth.samples.append(Sample("payment_authorizations_total", labels, arr[:, j]))
        for r, reason in enumerate(REASONS):
            labels = {**base_labels, "reason": reason}
            dec.samples.append(Sample("payment_declines_total", labels, by_reason[:, j, r]))
    families += [auth, dec]

    # --- per-PSP aggregates: latency, captures, webhooks, refunds ---------------------------
    rng = rng_for(4)
    psp_attempts = np.stack([attempts[:, p_idx == i].sum(1) for i in range(len(psps))], 1)
    psp_approved = np.stack([approved[:, p_idx == i].sum(1) for i in range(len(psps))], 1)
    psp_failed = np.stack([(declined + errors)[:, p_idx == i].sum(1) for i in range(len(psps))], 1)
    psp_outage = np.stack([outage_errors[:, p_idx == i].sum(1) for i in range(len(psps))], 1)

    lat = Family(
        "payment_authorization_duration_seconds",
        "histogram",
        "Latency of the authorization call to the PSP.",
    )
    lat_reps = _reps(AUTH_BUCKETS, 45.0)
    for i, p in enumerate(psps):
        slow_share = np.where(
            psp_attempts[:, i] > 0, psp_outage[:, i] / np.maximum(psp_attempts[:, i], 1), 0
        )
        med = np.full(n, _PSP_LATENCY.get(p, 0.4)) * np.exp(3.2 * np.clip(slow_share, 0, 1))
        sig = np.full(n, 0.6)
        cdf = _bucket_probs(med, sig, AUTH_BUCKETS)
        cum, sums = _histogram(rng, psp_attempts[:, i], cdf, lat_reps)
        _histogram_samples(lat, {"psp": p}, AUTH_BUCKETS, cum, sums, psp_attempts[:, i])
    families.append(lat)

    # captures
    rng = rng_for(5)
    cap = Family("payment_captures", "counter", "Capture attempts by outcome.")
    capture_failed: dict[str, np.ndarray] = {}
    for i, p in enumerate(psps):
        total = rng.poisson(0.93 * psp_approved[:, i]).astype(np.float64)
        pf = np.full(n, 0.0015) * rng.lognormal(0, 0.25, size=n)
        for s in spec.scenarios:
            if s.kind == "capture_failures" and s.dims.get("psp") == p:
                pf = pf + 0.04 * s.magnitude * scen_intensity[id(s)]
        failed = rng.binomial(total.astype(np.int64), np.clip(pf, 0, 0.9)).astype(np.float64)
        capture_failed[p] = failed
        cap.samples.append(
            Sample("payment_captures_total", {"psp": p, "outcome": "succeeded"}, total - failed)
        )
        cap.samples.append(
            Sample("payment_captures_total", {"psp": p, "outcome": "failed"}, failed)
        )
    families.append(cap)

    # refunds (needed before webhooks: refund.succeeded events follow completions)
    rng = rng_for(6)
    ref_req = Family("refunds_requested", "counter", "Refunds requested.")
    ref_done = Family("refunds_completed", "counter", "Refunds completed, against the 24 h SLA.")
    ref_over = Family("refunds_pending_over_sla", "gauge", "Refunds pending for more than 24 h.")
    refunds_done: dict[str, np.ndarray] = {}
    refunds_stuck: dict[str, np.ndarray] = {}
    refunds_over: dict[str, np.ndarray] = {}
    for i, p in enumerate(psps):
        expected = 0.015 * psp_approved[:, i]
        requested = rng.poisson(expected).astype(np.float64)
        smooth = np.convolve(expected, np.ones(30) / 30, mode="same") + 1e-9
        mult = np.ones(n)
        cross = np.zeros(n)
        for s in spec.scenarios:
            if s.kind == "refund_stall" and s.dims.get("psp") == p:
                e = scen_intensity[id(s)]
                mult *= 1 - np.clip(0.97 * s.magnitude, 0, 1) * e
                cross += 0.3 * s.magnitude * e * smooth
        on_time = rng.poisson(0.985 * smooth * mult).astype(np.float64)
        late = rng.poisson(0.012 * smooth * mult).astype(np.float64)
        stuck = np.zeros(n)
        over = np.zeros(n)
        crossed = rng.poisson(cross).astype(np.float64)
        s_q = o_q = 0.0
        drain = min(1.0, step_s / 1800.0)
        for t in range(n):
            lost = 0.997 * smooth[t] * (1 - mult[t])
            s_q += lost
            o_q = min(s_q, o_q + crossed[t])
            if mult[t] > 0.99 and s_q > 0:  # the worker is back: work off the backlog
                done = max(1.0, s_q * drain) if s_q >= 1 else s_q
                done_late = min(o_q, done * (o_q / s_q))
                late[t] += round(done_late)
                on_time[t] += round(done - done_late)
                s_q -= done
                o_q -= done_late
            stuck[t] = s_q
            over[t] = o_q
        base_over = rng.poisson(np.maximum(smooth * 3, 0.3)).astype(np.float64)
        gauge = base_over + np.round(over)
        refunds_done[p] = on_time + late
        refunds_stuck[p] = stuck
        refunds_over[p] = gauge
        ref_req.samples.append(Sample("refunds_requested_total", {"psp": p}, requested))
        ref_done.samples.append(
            Sample("refunds_completed_total", {"psp": p, "within_sla": "true"}, on_time)
        )
        ref_done.samples.append(
            Sample("refunds_completed_total", {"psp": p, "within_sla": "false"}, late)
        )
        ref_over.samples.append(Sample("refunds_pending_over_sla", {"psp": p}, gauge))

    # webhooks
    rng = rng_for(7)
    wh_recv = Family("webhook_events_received", "counter", "Webhook deliveries received.")
    wh_proc = Family("webhook_events_processed", "counter", "Webhook deliveries handled.")
    wh_lag = Family(
        "webhook_processing_lag_seconds",
        "histogram",
        "Time from the PSP creating the event to our state being updated.",
    )
    wh_age = Family(
        "webhook_backlog_oldest_age_seconds",
        "gauge",
        "Age of the oldest unprocessed webhook delivery (0 when the queue is empty).",
    )
    lag_reps = _reps(LAG_BUCKETS, 5400.0)
    webhook_failed: dict[str, np.ndarray] = {}
    backlog: dict[str, np.ndarray] = {}
    backlog_age: dict[str, np.ndarray] = {}
    retry_delay = max(1, round(300 / step_s))
    for i, p in enumerate(psps):
        base = {
            "payment.succeeded": 0.95 * psp_approved[:, i],
            "payment.failed": 0.5 * psp_failed[:, i],
            "refund.succeeded": refunds_done[p],
            "dispute.created": 0.0008 * psp_approved[:, i],
            "payout.paid": np.full(n, 2.0 * step_s / 3600.0),
        }
        cap_mult = np.ones(n)
        fail_p = np.full(n, 0.006) * rng.lognormal(0, 0.3, size=n)
        for s in spec.scenarios:
            if s.kind == "webhook_backlog" and s.dims.get("psp") == p:
                e = scen_intensity[id(s)]
                cap_mult *= 1 - np.clip(0.8 * s.magnitude, 0, 0.97) * e
                fail_p = fail_p + 0.12 * s.magnitude * e
        queue_total = np.zeros(n)
        age_total = np.zeros(n)
        for et in EVENT_TYPES:
            fresh = rng.poisson(base[et]).astype(np.float64)
            expected_rate = np.convolve(base[et], np.ones(15) / 15, mode="same") + 0.05
            received = fresh.copy()
            processed = np.zeros(n)
            failed = np.zeros(n)
            waits = np.zeros(n)  # mean age of what was processed in the step, seconds
            oldest = np.zeros(n)  # age of the oldest delivery still queued, seconds
            queue: deque[list[float]] = deque()  # FIFO of [arrival step, count]
            depth = 0.0
            for t in range(n):
                if received[t]:
                    queue.append([float(t), float(received[t])])
                    depth += received[t]
                normal_cap = 1.25 * expected_rate[t] + 3
                if cap_mult[t] < 0.999:
                    budget = math.floor(normal_cap * cap_mult[t])
                elif depth <= normal_cap:
                    budget = depth  # a healthy consumer keeps up with everything
                else:
                    budget = math.floor(3 * normal_cap)  # catching up after trouble
                done = age_sum = 0.0
                while queue and done < budget:
                    head = queue[0]
                    take = min(head[1], budget - done)
                    done += take
                    age_sum += take * (t - head[0]) * step_s
                    head[1] -= take
                    if head[1] <= 0:
                        queue.popleft()
                depth -= done
                processed[t] = done
                waits[t] = age_sum / done if done else 0.0
                oldest[t] = (t - queue[0][0] + 1) * step_s if queue else 0.0
                f = float(rng.binomial(int(done), min(fail_p[t], 0.9)))
                failed[t] = f
                if f and t + retry_delay < n:  # the PSP redelivers what we failed
                    received[t + retry_delay] += f
            webhook_failed[p] = webhook_failed.get(p, np.zeros(n)) + failed
            queue_total += np.maximum(0.0, np.cumsum(received - processed))
            age_total = np.maximum(age_total, oldest)
            wh_recv.samples.append(
                Sample("webhook_events_received_total", {"psp": p, "event_type": et}, received)
            )
            for outcome, arr in (("ok", processed - failed), ("failed", failed)):
                labels = {"psp": p, "event_type": et, "outcome": outcome}
                wh_proc.samples.append(Sample("webhook_events_processed_total", labels, arr))
            med = 2.5 + waits
            sig = np.where(waits > 5, 0.35, 0.9)
            cdf = _bucket_probs(med, sig, LAG_BUCKETS)
            cum, sums = _histogram(rng, processed, cdf, lag_reps)
            _histogram_samples(
                wh_lag, {"psp": p, "event_type": et}, LAG_BUCKETS, cum, sums, processed
            )
        idle = np.where(rng.random(n) < 0.3, rng.exponential(3.0, size=n), 0.0)
        age = np.where(age_total > 0, age_total + idle, idle)
        wh_age.samples.append(
            Sample("webhook_backlog_oldest_age_seconds", {"psp": p}, np.round(age, 1))
        )
        backlog[p] = queue_total
        backlog_age[p] = age
    families += [wh_recv, wh_proc, wh_lag, wh_age, ref_req, ref_done, ref_over]

    # --- cumulate counters, with one restart of a process that resets its counters -----
    resets = _cumulate(families, times, psps, spec, rng_for(8))
    routing: dict[str, dict[str, float]] = {}
    for j in range(n_slices):
        routing.setdefault(slices.country[j], {}).setdefault(slices.psp[j], 0.0)
        routing[slices.country[j]][slices.psp[j]] += float(slices.weight[j])
    routing = {c: {p: round(v, 4) for p, v in d.items()} for c, d in routing.items()}

    traffic = Traffic(
        times=times,
        slices=slices,
        attempts=attempts,
        declined=declined,
        errors=errors,
        outage_errors=outage_errors.astype(np.float64),
        declines_by_reason=by_reason,
        capture_failed=capture_failed,
        webhook_failed=webhook_failed,
        backlog=backlog,
        backlog_age=backlog_age,
        refunds_stuck=refunds_stuck,
        refunds_over_sla=refunds_over,
        counter_resets=resets,
        routing=routing,
    )
    _apply_scrape_gaps(families, times, spec.scenarios)
    return families, traffic


def _histogram_samples(
    fam: Family,
    labels: dict[str, str],
    bounds: tuple[float, ...],
    cum: np.ndarray,
    sums: np.ndarray,
    counts: np.ndarray,
) -> None:
    for b, le in enumerate((*bounds, math.inf)):
        le_text = "+Inf" if math.isinf(le) else _fmt_le(le)
        fam.samples.append(Sample(f"{fam.name}_bucket", {**labels, "le": le_text}, cum[:, b]))
    fam.samples.append(Sample(f"{fam.name}_count", dict(labels), counts.astype(np.float64)))
    fam.samples.append(Sample(f"{fam.name}_sum", dict(labels), np.round(sums, 3)))


def _fmt_le(v: float) -> str:
    return f"{v:.1f}" if v == int(v) else repr(v)


def _cumulate(
    families: list[Family],
    times: np.ndarray,
    psps: list[str],
    spec: SimulationSpec,
    rng: np.random.Generator,
) -> list[dict[str, object]]:
    """Turn per-step counts into cumulative counters; histogram buckets, counts and sums too.

    One PSP's authorization and decline counters restart from zero once in windows of 2 h or more (a
    pod restart), as real counters do; ``rate()`` must cope.
    """
    resets: list[dict[str, object]] = []
    reset_at: int | None = None
    reset_psp = ""
    n = len(times)
    if (times[-1] - times[0]) >= 7200 and n > 10:
        quiet = np.ones(n, dtype=bool)
        for s in spec.scenarios:
            quiet &= ~((times >= s.start.timestamp() - 1800) & (times < s.end.timestamp() + 1800))
        candidates = np.flatnonzero(quiet[n // 4 : 3 * n // 4]) + n // 4
        if len(candidates):
            reset_at = int(rng.choice(candidates))
            reset_psp = str(rng.choice(psps))
            resets.append(
                {
                    "metric": "payment_authorizations_total",
                    "psp": reset_psp,
                    "at": _iso(times[reset_at]),
                }
            )
    for fam in families:
        if fam.type == "gauge":
            continue
        for smp in fam.samples:
            cum = np.cumsum(smp.values)
            if (
                reset_at is not None
                and smp.name in ("payment_authorizations_total", "payment_declines_total")
                and smp.labels["psp"] == reset_psp
            ):
                cum[reset_at:] -= cum[reset_at - 1]
            smp.values = cum
    return resets


def _apply_scrape_gaps(
    families: list[Family], times: np.ndarray, scenarios: tuple[Scenario, ...]
) -> None:
    for s in scenarios:
        if s.kind != "scrape_gap":
            continue
        gap = (times >= s.start.timestamp()) & (times < s.end.timestamp())
        for fam in families:
            for smp in fam.samples:
                if all(smp.labels.get(k) == v for k, v in s.dims.items()):
                    smp.values = smp.values.astype(np.float64)
                    smp.values[gap] = np.nan


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(float(ts), UTC).isoformat().replace("+00:00", "Z")
