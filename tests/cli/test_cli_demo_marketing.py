"""``tailorcast demo``'s marketing stage: segments, CLV, an audience, a campaign with a
control group, simulated weeks after the send date, and the measured lift with its interval."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tailorcast.cli import demo_cmd
from tailorcast.marketing.campaigns import campaign_members, list_campaigns
from tailorcast.store import Store

app = typer.Typer()
demo_cmd.register(app)
app.command("noop", hidden=True)(lambda: None)  # keeps ``demo`` a named subcommand


@pytest.mark.slow
def test_demo_measures_the_planted_campaign_effect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TAILORCAST_")}
    # Keys known in advance: the same pseudonyms, so the same control group, on every run.
    env["TAILORCAST_PSEUDONYM_KEY"] = base64.b64encode(bytes(range(32))).decode()
    env["TAILORCAST_ENCRYPTION_KEY"] = base64.b64encode(bytes(range(32, 64))).decode()
    args = ["demo", "--store", str(tmp_path / "demo"), "--insecure-dev", "--json"]
    size = ["--customers", "1000", "--items", "100", "--days", "60", "--budget", "4"]
    run = CliRunner().invoke(app, [*args, *size], env=env)
    assert run.exit_code == 0, run.output
    out = json.loads(run.stdout)["marketing"]
    assert sum(out["segments"].values()) > 0 and out["clv"]["customers"] > 0
    campaign = out["campaign"]
    assert campaign["treated"] > 0 and campaign["control"] > 0
    assert campaign["members"] == out["audience"]["size"] >= 50
    simulation, measured = out["simulation"], out["measurement"]
    assert simulation["accepted"] == simulation["events"] > 0
    offer = measured["offer_conversion"]
    # the planted effect is found: a positive lift whose interval holds the planted one
    assert offer["low"] <= simulation["true_offer_conversion_lift"] <= offer["high"]
    assert offer["difference"] > 0 and simulation["true_offer_conversion_lift"] > 0
    assert measured["conversion"]["high"] > 0 and simulation["true_conversion_lift"] > 0
    assert measured["complete"] and "normal approximation" in measured["method"]
    with Store.open(tmp_path / "demo", read_only=True) as store:
        assert list_campaigns(store)["name"].tolist() == [campaign["name"]]
        arms = campaign_members(store, campaign["name"])["arm"].value_counts()
        assert arms["control"] == campaign["control"]
