"""The end-to-end demo: a generated shop, ingested and cleaned, with its data-health report,
then (from the CLI) a trained recommender and, here, the marketing stage: segments, lifetime
value, an audience, a campaign with a control group and its measured lift on simulated weeks
after the send date.

Later stages add themselves here as they land, so ``tailorcast demo`` always shows the whole
product on one machine.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tailorcast.errors import UserError
from tailorcast.ingest.config import IngestConfig
from tailorcast.store import DB_FILE, Store

if TYPE_CHECKING:
    from tailorcast.datasets import DemoShop

__all__ = [
    "DEMO_CONFIG",
    "DemoResult",
    "MarketingDemo",
    "prepare_demo_store",
    "run_marketing_demo",
]

#: How the demo cleans its shop: every cleaning step on, imputation per column.
DEMO_CONFIG: dict[str, Any] = {
    "cleaning": {"outliers": "cap"},
    "users": {"impute": {"age": "median", "city": "mode"}},
    "items": {"impute": {"price": "knn", "brand": {"strategy": "constant", "value": "unknown"}}},
}


@dataclass
class DemoResult:
    store: Path
    files: dict[str, str]
    summaries: list[Any] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)


def prepare_demo_store(folder: Path) -> None:
    """Start the demo from a clean store; refuse to wipe a store that is not a demo store."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"store path {folder} exists and is not a folder")
    db = folder / DB_FILE
    if not db.exists():
        return
    with Store.open(folder, read_only=True) as store:
        is_demo = store.meta("demo") == "true"
    if not is_demo:
        raise UserError(
            f"{folder} holds a store that is not a demo store; pass another --store for the demo"
        )
    shutil.rmtree(folder)


def demo_config() -> IngestConfig:
    return IngestConfig.model_validate(DEMO_CONFIG)


@dataclass
class MarketingDemo:
    """What the demo's marketing stage did: segments, CLV, audience, campaign, the simulated
    weeks after the send date, and the measured lift (``None`` parts were skipped, with the
    reason in ``notes``)."""

    segments: dict[str, int] = field(default_factory=dict)
    clv: dict[str, Any] = field(default_factory=dict)
    audience: dict[str, Any] = field(default_factory=dict)
    campaign: dict[str, Any] = field(default_factory=dict)
    simulation: dict[str, Any] = field(default_factory=dict)
    measurement: Any = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "segments": self.segments,
            "clv": self.clv,
            "audience": self.audience,
            "campaign": self.campaign,
            "simulation": self.simulation,
            "measurement": None if self.measurement is None else self.measurement.to_dict(),
            "notes": self.notes,
        }


def run_marketing_demo(
    folder: Path,
    shop: DemoShop,
    *,
    seed: int = 42,
    weeks: int = 4,
    holdout: float = 0.3,
    audience_share: float = 0.4,
    response_rate: float = 0.9,
) -> MarketingDemo:
    """RFM segments, CLV, a value-weighted audience for the most-viewed category, a campaign
    with a control group, ``weeks`` of simulated shop life after the send date (treated
    members respond to relevant offers), ingested like any other events, and the measured
    lift. A shop too small for a step skips it with a note instead of failing the demo."""
    from tailorcast.artifacts import load_artifact
    from tailorcast.cli.ingest_cmd import run_ingest
    from tailorcast.datasets.campaign_response import simulate_campaign_response
    from tailorcast.marketing.audiences import AudienceTarget, build_audience
    from tailorcast.marketing.campaigns import (
        campaign_members,
        campaign_offers,
        create_campaign,
        measure_campaign,
    )
    from tailorcast.marketing.clv import fit_clv
    from tailorcast.marketing.rfm import rfm_segments
    from tailorcast.store import open_store

    out = MarketingDemo()
    artifact = load_artifact(folder)
    store, keys = open_store(folder)
    assert keys is not None  # open_store with need_keys finds them or raises
    with store:
        rfm = rfm_segments(store)
        out.segments = {str(k): int(v) for k, v in rfm["segment"].value_counts().items()}
        try:
            clv = fit_clv(store, None).predict(90)
            out.clv = {
                "customers": len(clv),
                "horizon_days": 90,
                "expected_purchases": float(clv["expected_purchases"].sum()),
                "expected_spend": float(clv["expected_spend"].sum()),
                "mean_p_alive": float(clv["p_alive"].mean()),
            }
        except UserError as exc:
            out.notes.append(f"lifetime value skipped: {exc}")
        category = str(
            store.con.execute(
                "SELECT i.category FROM events e JOIN items i USING (item_id) "
                "WHERE e.event_type = 'view' AND i.category IS NOT NULL "
                "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
            ).fetchall()[0][0]
        )
        target = AudienceTarget(category=category)
        latest = pd.Timestamp(
            store.con.execute('SELECT max("timestamp") FROM events').fetchall()[0][0]
        )
        send = latest.normalize() + pd.Timedelta(days=1)
        weighted = bool(out.clv)
        try:
            try:
                audience = build_audience(
                    store, target, model=artifact.model, value_weighted=weighted
                )
            except UserError as exc:  # e.g. too few buyers to train a propensity model
                out.notes.append(f"audience not value-weighted: {exc}")
                weighted = False
                audience = build_audience(store, target, model=artifact.model)
            size = max(50, int(len(audience) * audience_share))
            audience = replace(audience, members=audience.members.head(size))
            out.audience = audience.summary()
            name = f"demo-{category}"
            summary = create_campaign(
                store,
                name,
                audience,
                model=artifact.model,
                model_version=artifact.version,
                holdout=holdout,
                seed=seed,
                send_date=send,
            )
        except UserError as exc:
            out.notes.append(f"campaign skipped: {exc}")
            return out
        out.campaign = summary.to_dict()
        members = campaign_members(store, name)
        offers = campaign_offers(store, name)
        shop_ids = dict(
            zip(
                members["user_id"], store.reidentify(members["user_id"].tolist(), keys), strict=True
            )
        )
    simulated = simulate_campaign_response(
        shop,
        members.assign(
            user_id=members["user_id"].map(shop_ids), treated=members["arm"] == "treated"
        ),
        offers.assign(user_id=offers["user_id"].map(shop_ids)),
        send_date=send,
        weeks=weeks,
        response_rate=response_rate,
        seed=seed,
    )
    after = simulated.write(folder / "demo-data" / "events-after-send.csv")
    ingested = run_ingest(folder, demo_config(), events=after, show_progress=False)
    out.simulation = {
        "weeks": weeks,
        "events": len(simulated.events),
        "accepted": sum(s.accepted for s in ingested),
        "responders": int((simulated.members["responds"] & simulated.members["treated"]).sum()),
        "true_conversion_lift": simulated.true_conversion_lift,
        "true_revenue_lift": simulated.true_revenue_lift,
        "true_offer_conversion_lift": simulated.true_offer_conversion_lift,
    }
    store, _ = open_store(folder, read_only=True, need_keys=False)
    with store:
        out.measurement = measure_campaign(store, name, window_days=weeks * 7)
    return out
