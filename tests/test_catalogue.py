"""Issue 23, items 2 and 3: a catalogue that says what it knows (status, confidence, dated sources),
`batchrun models`, and prices with their long-context bands."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from runner import api, estimate
from runner.models import catalog
from tests.conftest import REPO, ProjectDir

MODELS = json.loads((REPO / "runner" / "data" / "models.json").read_text())
PRICES = json.loads((REPO / "runner" / "data" / "pricing.json").read_text())
FRESH_DAYS = 90


def _sources(entry: dict) -> list[dict]:  # type: ignore[type-arg]
    return [*entry["sources"], *entry.get("regions_sources", ())]


@pytest.mark.parametrize("table", ["models", "rules", "prices"])
def test_every_source_names_what_it_is_and_when(table: str) -> None:
    entries = {"models": MODELS["models"], "prices": {k: v for k, v in PRICES.items()
                                                     if not k.startswith("_")},
               "rules": {r["id"]: r for r in MODELS["request_rules"]}}[table]
    for name, entry in entries.items():
        assert entry["sources"], name
        for source in _sources(entry):
            assert set(source) <= {"title", "url", "date", "kind", "via"}, (name, source)
            assert source.get("title") or source.get("url"), name
            assert source["kind"] in catalog.SOURCE_KINDS, (name, source)
            date.fromisoformat(source["date"])
        assert entry["confidence"] in ("confirmed", "secondary"), name


def test_a_current_entry_has_a_source_newer_than_90_days() -> None:
    """Fails as the catalogue ages: refresh it (docs/vertex-facts.md says how) before release."""
    oldest = date.today() - timedelta(days=FRESH_DAYS)
    for name, entry in MODELS["models"].items():
        if entry["status"] == "current":
            newest = max(date.fromisoformat(s["date"]) for s in entry["sources"])
            assert newest >= oldest, f"{name} is current on a source of {newest}: re-check it"


@pytest.mark.parametrize("table", ["models", "rules", "prices"])
def test_confirmed_never_rests_on_a_third_party(table: str) -> None:
    entries = {"models": MODELS["models"], "prices": {k: v for k, v in PRICES.items()
                                                     if not k.startswith("_")},
               "rules": {r["id"]: r for r in MODELS["request_rules"]}}[table]
    for name, entry in entries.items():
        if entry["confidence"] == "confirmed":
            kinds = {s["kind"] for s in entry["sources"]}
            assert kinds <= set(catalog.FIRST_PARTY), f"{name} is confirmed by {kinds}"
            # a first-party page only quoted by someone else does not confirm on its own
            assert any("via" not in s for s in entry["sources"]), f"{name}: read none itself"


def test_no_retirement_floor_in_the_past_is_left_unresolved() -> None:
    for name, entry in MODELS["models"].items():
        retires = entry.get("retires")
        if retires:
            assert not retires.startswith("not before"), name
        if entry["status"] == "current" and retires:
            assert date.fromisoformat(retires) > date(2026, 12, 2), name


def test_status_words_are_the_catalogue_s_own() -> None:
    for name, entry in MODELS["models"].items():
        assert entry["status"] in catalog.STATUSES, name


def test_an_embeddings_manifest_is_told_no_current_embeddings_model_is_known(
        project_dir: ProjectDir) -> None:
    project_dir.write("texts.csv", "id,text\na,hello\n")
    project_dir.write("embed.yaml", """\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {name: embed}
        spec:
          model: intfloat/multilingual-e5-small-maas
          source: {file: texts.csv, id: id}
          prompt: {input: "{{ text }}"}
          destination: {file: out/embed.jsonl}
        """)
    warnings = [w for w in api.load_project(cwd=project_dir.root).warnings
                if w.path == "spec.model" and "embed.yaml" in (w.file or "")]
    (warning,) = warnings
    assert "deprecated" in warning.summary
    assert "batchrun knows no current embeddings model" in warning.hint
    assert "2026-09" in warning.summary  # the status's source and date


def test_a_model_gone_from_the_batch_page_warns_it_is_unconfirmed(
        project_dir: ProjectDir) -> None:
    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace(
        "anthropic/claude-haiku-4-5@20251001", "meta/llama-3.1-8b-instruct-maas").replace(
        "system: Classify the ticket.\n", ""))
    (warning,) = [w for w in api.load_project(cwd=project_dir.root).warnings
                  if w.path == "spec.model"]
    assert warning.summary.startswith('model "meta/llama-3.1-8b-instruct-maas" is not confirmed '
                                      "to run batch jobs")


# --- batchrun models --------------------------------------------------------------------------

def test_models_text_and_json_golden(run, golden) -> None:  # type: ignore[no-untyped-def]
    golden("models.txt", run("models"))
    golden("models_embeddings_us-central1.txt",
           run("models", "--task", "embeddings", "--region", "us-central1"))
    out = run("models", "--json")
    golden("models.json", out)
    doc = json.loads(out)
    assert doc["version"] == 1
    assert {m["id"] for m in doc["models"]} == set(MODELS["models"])


def test_models_filters_by_region(run) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(run("models", "--json", "--region", "us-east5", "--task", "chat"))
    assert doc["models"]
    for m in doc["models"]:
        assert "us-east5" in m["regions"] and m["task"] == "chat"


# --- prices and bands -------------------------------------------------------------------------

def _ref(name: str):  # type: ignore[no-untyped-def]
    model = catalog.parse_model(name)
    assert model is not None
    return model


def test_opus_5_is_priced_at_half_of_anthropic_s_list(project_dir: ProjectDir) -> None:
    price = estimate.price_for(_ref("anthropic/claude-opus-5"), {})
    assert price is not None
    # 5/25 list, 50% for batch, 10% over global for a regional or multi-region endpoint
    assert (price.input, price.output) == pytest.approx((2.75, 13.75))
    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace(
        "anthropic/claude-haiku-4-5@20251001", "anthropic/claude-opus-5"))
    plan = api.plan(api.load_project(cwd=project_dir.root))
    est = plan.manifests[0].estimate
    assert est.output_tokens == 64 * 5
    assert est.cost == pytest.approx((est.input_tokens * 2.75 + est.output_tokens * 13.75) / 1e6)


def test_a_long_row_is_priced_in_the_upper_band(project_dir: ProjectDir) -> None:
    long_body = "x" * 440_000  # ~110K tokens: over Haiku 5.5's 100K band
    project_dir.write("tickets.csv", f"ticket_id,subject,body\nT1,Short,Hello\nT2,Long,{long_body}\n")
    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace(
        "anthropic/claude-haiku-4-5@20251001", "anthropic/claude-haiku-5-5"))
    est = api.plan(api.load_project(cwd=project_dir.root)).manifests[0].estimate
    price = estimate.price_for(_ref("anthropic/claude-haiku-5-5"), {})
    assert price is not None
    short_in = estimate.approx_tokens(len("Classify the ticket.") + len("Short: Hello"))
    long_in = est.input_tokens - short_in
    assert long_in > 100_000
    low, high = price.band(short_in), price.band(long_in)
    assert (high.input, high.output) == pytest.approx((low.input * 5, low.output * 5))
    assert est.cost == pytest.approx(
        (short_in * low.input + 64 * low.output + long_in * high.input + 64 * high.output) / 1e6)


def test_status_prices_each_answered_row_in_its_band() -> None:
    price = estimate.price_for(_ref("anthropic/claude-haiku-5-5"), {})
    assert price is not None
    small = price.row_cost(1_000, 100)
    big = price.row_cost(150_000, 100)
    assert big == pytest.approx((150_000 * price.input * 5 + 100 * price.output * 5) / 1e6)
    assert small == pytest.approx((1_000 * price.input + 100 * price.output) / 1e6)
    cached = price.row_cost(1_000, 100, cache_read=10_000)
    assert cached == pytest.approx(small + 10_000 * price.cache_read / 1e6)


def test_an_override_in_batchrun_yaml_is_a_flat_price() -> None:
    price = estimate.price_for(_ref("anthropic/claude-haiku-5-5"),
                               {"anthropic/claude-haiku-5-5": {"input": 1, "output": 2}})
    assert price is not None
    assert price.row_cost(500_000, 0) == pytest.approx(0.5)


def test_status_costs_each_answered_row_in_its_own_band(project_dir: ProjectDir) -> None:
    """`batchrun status`'s cost: a long answered row in the upper band, a short one in the base."""
    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace(
        "anthropic/claude-haiku-4-5@20251001", "anthropic/claude-haiku-5-5"))
    mine = {"status": "succeeded", "output": "ok", "spec_hash": "s", "request_hash": "r"}
    rows = [{"ticket_id": "T1", "custom_id": "T1", **mine,
             "usage": {"input_tokens": 150_000, "output_tokens": 100}},
            {"ticket_id": "T2", "custom_id": "T2", **mine,
             "usage": {"input_tokens": 1_000, "output_tokens": 100}}]
    project_dir.write("out/triage.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    (used,) = api.usage(api.load_project(cwd=project_dir.root))
    price = estimate.price_for(_ref("anthropic/claude-haiku-5-5"), {})
    assert price is not None
    assert (used.input_tokens, used.output_tokens) == (151_000, 200)
    assert used.cost == pytest.approx(price.row_cost(150_000, 100) + price.row_cost(1_000, 100))
    assert used.cost > price.cost(151_000, 200) * 4  # not all at the base rate
