"""Application logs and change events that match the simulated traffic.

Log lines are derived from the same counts as the metrics (every technical error, a sample
of declines and approvals, the webhook and refund workers' complaints), so a log search in
an incident window agrees with the metrics. Like real logs, some messages leak card numbers,
CVVs, e-mail addresses and API tokens; those are generated at run time (Luhn-valid numbers,
random tokens) and listed in the labels file so redaction tests can look for every one.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from paytriage.lab.simulate.model import Traffic
from paytriage.lab.simulate.scenarios import Scenario
from paytriage.lab.simulate.spec import REASONS, SimulationSpec

MAX_ERRORS_PER_SLICE_STEP = 40  # beyond this, error lines are sampled (as log pipelines do)
DECLINE_SAMPLE = 0.05
APPROVAL_SAMPLE = 0.004
SECRET_SHARE = 0.03  # of error lines leak something

_NORMAL_ERRORS = (
    ("psp_timeout", 0.34, 504),
    ("psp_5xx", 0.26, 502),
    ("network_error", 0.14, 503),
    ("idempotency_conflict", 0.1, 409),
    ("db_deadlock", 0.06, 500),
    ("rate_limited", 0.1, 429),
)
_OUTAGE_ERRORS = (("psp_timeout", 0.58, 504), ("psp_5xx", 0.42, 502))
_SERVICES = (
    "checkout-api",
    "payment-orchestrator",
    "webhook-ingest",
    "refund-worker",
    "risk-engine",
    "ledger",
)
_AUTHORS = ("a.kowalski", "m.tanaka", "s.okafor", "j.martin", "l.fischer", "r.silva", "deploy-bot")
_FIRST = ("jane", "omar", "li", "sofia", "kwame", "anna", "diego", "yuki", "priya", "tom")
_ROUTINE_CHANGES = (
    "raise connection pool size to 80",
    "enable retry jitter for PSP calls",
    "flag saved_cards_v2 rolled to 25%",
    "lower risk score threshold for returning buyers",
)
_DOMAINS = ("example.com", "mail.example.org", "shop.example.net", "example.co.uk")


@dataclass
class Planted:
    card_numbers: list[str] = field(default_factory=list)
    cvvs: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "card_numbers": self.card_numbers,
            "cvvs": self.cvvs,
            "emails": self.emails,
            "tokens": self.tokens,
        }


def luhn_complete(prefix_digits: str) -> str:
    """Append the Luhn check digit."""
    total = 0
    for i, ch in enumerate(reversed(prefix_digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return prefix_digits + str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return len(digits) >= 12 and total % 10 == 0


class _Gen:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.planted = Planted()

    def hexid(self, n: int) -> str:
        return "".join(self.rng.choice(list("0123456789abcdef"), size=n))

    def alnum(self, n: int) -> str:
        return "".join(self.rng.choice(list(string.ascii_letters + string.digits), size=n))

    def payment_id(self) -> str:
        return "pay_" + self.alnum(14)

    def merchant_id(self) -> str:
        return f"m_{int(self.rng.integers(1000, 1400))}"

    def pan(self) -> str:
        brand = int(self.rng.integers(0, 3))
        if brand == 0:  # Visa-like, 16 digits
            body = "4" + "".join(str(d) for d in self.rng.integers(0, 10, 14))
        elif brand == 1:  # Mastercard-like
            body = f"5{int(self.rng.integers(1, 6))}" + "".join(
                str(d) for d in self.rng.integers(0, 10, 13)
            )
        else:  # Amex-like, 15 digits
            body = f"3{int(self.rng.choice([4, 7]))}" + "".join(
                str(d) for d in self.rng.integers(0, 10, 12)
            )
        number = luhn_complete(body)
        self.planted.card_numbers.append(number)
        style = int(self.rng.integers(0, 3))
        if style == 0:
            return number
        sep = " " if style == 1 else "-"
        return sep.join(number[i : i + 4] for i in range(0, len(number), 4))

    def email(self) -> str:
        first = str(self.rng.choice(_FIRST))
        addr = f"{first}.{self.alnum(5).lower()}@{self.rng.choice(_DOMAINS)}"
        self.planted.emails.append(addr)
        return addr

    def token(self) -> str:
        kind = int(self.rng.integers(0, 3))
        if kind == 0:
            tok = "sk_live_" + self.alnum(24)
        elif kind == 1:
            tok = "eyJhbGciOiJIUzI1NiJ9." + self.alnum(36) + "." + self.alnum(22)
        else:
            tok = "whsec_" + self.alnum(32)
        self.planted.tokens.append(tok)
        return tok

    def cvv(self) -> str:
        v = "".join(str(d) for d in self.rng.integers(0, 10, 3))
        self.planted.cvvs.append(v)
        return v

    def leak(self) -> str:
        """A fragment of the kind careless logging adds to a message."""
        k = int(self.rng.integers(0, 4))
        if k == 0:
            return f' request={{"card":{{"number":"{self.pan()}","cvc":"{self.cvv()}"}}}}'
        if k == 1:
            return f" customer={self.email()}"
        if k == 2:
            return f" Authorization: Bearer {self.token()}"
        month, year = int(self.rng.integers(1, 10)), int(self.rng.integers(27, 30))
        return f" card {self.pan()} exp 0{month}/{year}"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def generate_logs(spec: SimulationSpec, traffic: Traffic) -> tuple[list[dict[str, Any]], Planted]:
    rng = np.random.default_rng([spec.seed, 20])
    g = _Gen(rng)
    docs: list[dict[str, Any]] = []
    step_s = spec.step_seconds
    sl = traffic.slices
    times = traffic.times

    def stamp(t: int) -> str:
        return _iso(float(times[t] + rng.random() * step_s))

    def doc(t: int, service: str, level: str, message: str, **fields: Any) -> None:
        d: dict[str, Any] = {"@timestamp": stamp(t), "service": service, "level": level}
        d["message"] = message
        d["trace_id"] = g.hexid(16)
        d.update({k: v for k, v in fields.items() if v is not None})
        docs.append(d)

    codes = np.array([c for c, _, _ in _NORMAL_ERRORS])
    code_p = np.array([p for _, p, _ in _NORMAL_ERRORS])
    status = {c: s for c, _, s in (*_NORMAL_ERRORS, *_OUTAGE_ERRORS)}
    out_codes = np.array([c for c, _, _ in _OUTAGE_ERRORS])
    out_p = np.array([p for _, p, _ in _OUTAGE_ERRORS])
    n, n_slices = traffic.attempts.shape
    for t in range(n):
        for j in range(n_slices):
            psp, country, method = sl.psp[j], sl.country[j], sl.method[j]
            n_out = int(traffic.outage_errors[t, j])
            n_err = int(traffic.errors[t, j]) - n_out
            for count, pool, probs in ((n_err, codes, code_p), (n_out, out_codes, out_p)):
                for _ in range(min(count, MAX_ERRORS_PER_SLICE_STEP)):
                    code = str(rng.choice(pool, p=probs))
                    _auth_error(g, doc, t, psp, country, method, code, status[code])
            n_dec = int(rng.binomial(int(traffic.declined[t, j]), DECLINE_SAMPLE))
            if n_dec:
                reasons = traffic.declines_by_reason[t, j].astype(np.float64)
                if reasons.sum() > 0:
                    for r in rng.choice(len(REASONS), size=n_dec, p=reasons / reasons.sum()):
                        reason = REASONS[int(r)]
                        doc(
                            t,
                            "payment-orchestrator",
                            "WARN",
                            f"payment {g.payment_id()} declined by issuer: reason={reason} "
                            f"psp={psp} country={country}",
                            psp=psp,
                            country=country,
                            method=method,
                            decline_reason=reason,
                            http_status=402,
                            merchant_id=g.merchant_id(),
                        )
            approved = traffic.attempts[t, j] - traffic.declined[t, j] - traffic.errors[t, j]
            for _ in range(int(rng.binomial(int(max(approved, 0)), APPROVAL_SAMPLE))):
                ms = round(float(rng.lognormal(np.log(320), 0.5)), 1)
                pid = g.payment_id()
                doc(
                    t,
                    "payment-orchestrator",
                    "INFO",
                    f"payment {pid} authorized via {psp} in {ms}ms",
                    psp=psp,
                    country=country,
                    method=method,
                    http_status=200,
                    latency_ms=ms,
                    payment_id=pid,
                    merchant_id=g.merchant_id(),
                )
        _per_psp_logs(spec, traffic, g, doc, t)
        _background(g, doc, t, step_s)
    for s in spec.scenarios:
        _scenario_logs(s, traffic, g, doc)
    docs.sort(key=lambda d: d["@timestamp"])
    return docs, g.planted


def _auth_error(
    g: _Gen, doc: Any, t: int, psp: str, country: str, method: str, code: str, status: int
) -> None:
    rng = g.rng
    pid = g.payment_id()
    ms = round(
        float(rng.uniform(9000, 30000) if code == "psp_timeout" else rng.uniform(40, 900)), 1
    )
    templates = {
        "psp_timeout": f"timeout after {ms:.0f}ms calling {psp} /payments for payment {pid}",
        "psp_5xx": f"{psp} returned HTTP {int(rng.choice([500, 502, 503]))} for payment {pid}",
        "network_error": f"connection reset by peer while calling {psp} for payment {pid}",
        "idempotency_conflict": f"idempotency key conflict for payment {pid}: request differs",
        "db_deadlock": f"deadlock detected while updating payment {pid}; transaction rolled back",
        "rate_limited": f"{psp} rate limited the request for payment {pid} (retry after 2s)",
    }
    message = "authorization failed: " + templates[code]
    if rng.random() < SECRET_SHARE:
        message += g.leak()
    doc(
        t,
        "payment-orchestrator",
        "ERROR",
        message,
        psp=psp,
        country=country,
        method=method,
        error_code=code,
        http_status=status,
        latency_ms=ms,
        payment_id=pid,
        merchant_id=g.merchant_id(),
    )


def _per_psp_logs(spec: SimulationSpec, traffic: Traffic, g: _Gen, doc: Any, t: int) -> None:
    rng = g.rng
    for p in spec.psps:
        for _ in range(min(int(traffic.capture_failed[p][t]), MAX_ERRORS_PER_SLICE_STEP)):
            why = str(rng.choice(["authorization_expired", "amount_mismatch", "psp_5xx"]))
            pid = g.payment_id()
            doc(
                t,
                "payment-orchestrator",
                "ERROR",
                f"capture failed for payment {pid} at {p}: {why}",
                psp=p,
                error_code=f"capture_{why}",
                http_status=422 if why != "psp_5xx" else 502,
                payment_id=pid,
                merchant_id=g.merchant_id(),
            )
        for _ in range(min(int(traffic.webhook_failed[p][t]), MAX_ERRORS_PER_SLICE_STEP)):
            backlogged = traffic.backlog[p][t] > 100
            code = (
                str(rng.choice(["db_deadlock", "lock_timeout"], p=[0.7, 0.3]))
                if backlogged
                else str(rng.choice(["signature_invalid", "db_deadlock", "unknown_payment"]))
            )
            et = str(rng.choice(["payment.succeeded", "payment.failed", "refund.succeeded"]))
            doc(
                t,
                "webhook-ingest",
                "ERROR",
                f"failed to process {et} webhook evt_{g.alnum(16)} from {p}: {code}",
                psp=p,
                event_type=et,
                error_code=code,
                http_status=500 if code != "signature_invalid" else 401,
            )
        depth = traffic.backlog[p][t]
        if depth > 100:
            doc(
                t,
                "webhook-ingest",
                "WARN",
                f"webhook queue for {p} is {int(depth)} deep, oldest "
                f"{int(traffic.backlog_age[p][t])}s",
                psp=p,
            )
        if traffic.refunds_stuck[p][t] >= 1 and rng.random() < 0.6:
            rid = "re_" + g.alnum(14)
            doc(
                t,
                "refund-worker",
                "ERROR",
                f"refund {rid} at {p} still PENDING after retry; batch worker made no progress",
                psp=p,
                error_code="refund_stuck",
                refund_id=rid,
            )


def _background(g: _Gen, doc: Any, t: int, step_s: float) -> None:
    rng = g.rng
    for _ in range(int(rng.poisson(2.0 * step_s / 60))):
        svc = str(rng.choice(_SERVICES))
        kind = int(rng.integers(0, 5))
        if kind == 0:
            doc(t, svc, "INFO", f"health check ok in {int(rng.integers(2, 40))}ms")
        elif kind == 1:
            doc(t, svc, "DEBUG", f"cache refreshed: {int(rng.integers(100, 5000))} entries")
        elif kind == 2:
            doc(
                t,
                svc,
                "WARN",
                f"slow query {int(rng.integers(500, 3000))}ms on table payments",
                latency_ms=float(rng.integers(500, 3000)),
            )
        elif kind == 3:
            msg = (
                f"user session renewed for {g.email()}"
                if rng.random() < 0.2
                else ("user session renewed")
            )
            doc(t, "checkout-api", "INFO", msg)
        else:
            doc(
                t,
                "ledger",
                "INFO",
                f"settlement batch {int(rng.integers(10000, 99999))} posted",
            )


def _scenario_logs(s: Scenario, traffic: Traffic, g: _Gen, doc: Any) -> None:
    """Complaints only a scenario produces (the metrics-driven lines are already there)."""
    rng = g.rng
    times = traffic.times
    idx = np.flatnonzero((times >= s.start.timestamp()) & (times < s.end.timestamp()))
    if s.kind == "traffic_drop":
        country = s.dims.get("country")
        for t in idx:
            for _ in range(int(rng.poisson(1.5))):
                doc(
                    int(t),
                    "checkout-api",
                    "ERROR",
                    "client error reported: TypeError: cannot read properties of undefined "
                    "(reading 'paymentMethods') in checkout.js",
                    country=country,
                    error_code="client_script_error",
                    http_status=200,
                )
    elif s.kind == "method_failure":
        method = s.dims.get("method")
        for t in idx:
            for _ in range(int(rng.poisson(3))):
                doc(
                    int(t),
                    "checkout-api",
                    "ERROR",
                    f"{method} session validation failed: merchant certificate rejected",
                    method=method,
                    country=s.dims.get("country"),
                    error_code="wallet_session_invalid",
                    http_status=400,
                )


def generate_changes(spec: SimulationSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Deploys, config and feature-flag changes: routine ones on weekdays, plus the ones that
    precede some scenarios. Returns (documents, the scenario-linked ones for the labels)."""
    rng = np.random.default_rng([spec.seed, 30])
    versions = {s: [2, int(rng.integers(0, 30)), 0] for s in _SERVICES}
    docs: list[dict[str, Any]] = []
    linked: list[dict[str, Any]] = []

    def change(
        at: datetime, service: str, kind: str, description: str, author: str | None = None
    ) -> dict[str, Any]:
        version = ""
        if kind == "deploy":
            v = versions[service]
            v[2] += 1
            version = f"{v[0]}.{v[1]}.{v[2]}"
        return {
            "@timestamp": _iso(at.timestamp()),
            "service": service,
            "kind": kind,
            "version": version,
            "author": author or str(rng.choice(_AUTHORS)),
            "description": description,
        }

    def deploy(at: datetime, service: str, description: str) -> dict[str, Any]:
        return change(at, service, "deploy", description)

    day = spec.start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day < spec.end:
        if day.weekday() < 5:
            for _ in range(int(rng.poisson(7))):
                at = day + timedelta(minutes=int(rng.integers(8 * 60, 18 * 60)))
                if spec.start <= at < spec.end:
                    svc = str(rng.choice(_SERVICES))
                    docs.append(
                        deploy(at, svc, f"release {svc}: routine fixes and dependency bumps")
                    )
            for _ in range(int(rng.poisson(2))):
                at = day + timedelta(minutes=int(rng.integers(9 * 60, 17 * 60)))
                if spec.start <= at < spec.end:
                    service = str(rng.choice(_SERVICES))
                    kind = str(rng.choice(["config", "feature_flag"]))
                    what = str(rng.choice(_ROUTINE_CHANGES))
                    docs.append(change(at, service, kind, what))
        day += timedelta(days=1)
    for s in spec.scenarios:
        before = timedelta(minutes=int(rng.integers(3, 12)))
        at = max(spec.start, s.start - before)
        ev: dict[str, Any] | None = None
        if s.kind == "method_failure":
            ev = deploy(at, "checkout-api", f"upgrade wallet SDK for {s.dims.get('method')}")
        elif s.kind == "webhook_backlog":
            ev = deploy(at, "webhook-ingest", "switch payment state updates to batched writes")
        elif s.kind == "refund_stall":
            ev = deploy(at, "refund-worker", "new refund batching scheduler")
        elif s.kind == "capture_failures":
            psp = s.dims.get("psp")
            ev = change(
                at,
                "payment-orchestrator",
                "config",
                f"capture delay for {psp} raised from 24h to 7d",
            )
        elif s.kind == "traffic_drop":
            where = s.dims.get("country") or s.dims.get("psp")
            ev = change(
                at, "checkout-api", "feature_flag", f"flag new_checkout_flow enabled for {where}"
            )
        elif s.kind == "psp_outage":
            psp = str(s.dims.get("psp"))
            at = min(s.end, s.start + timedelta(minutes=int(rng.integers(5, 10))))
            ev = change(
                at,
                "psp-status",
                "psp_status",
                f"{psp} status page: investigating elevated API error rates",
                author=psp,
            )
        if ev is not None:
            docs.append(ev)
            linked.append({"scenario": s.label, **ev})
    docs.sort(key=lambda d: d["@timestamp"])
    return docs, linked
