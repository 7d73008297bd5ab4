"""The pipeline on one change at a time: identity, reconcile, echoes, conflicts, deletes, tags, the outbox.

Most tests run on MemoryState and on the store's transaction (SQLite and PostgreSQL), which must behave alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import IdentityError
from bridge.fields import FieldType
from bridge.model import Change
from bridge.ownership import Shadow
from bridge.pipeline import MemoryState, Outcome, Pipeline
from bridge.settings import Config
from bridge.state import State
from sync_support import open_store

T = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def config(**extra: Any) -> Config:
    fields = {
        "tier": {
            "type": "select",
            "kind": "account",
            "options": ["gold", "silver"],
            "owner": "crm",
            "sync_to": ["desk", "pylon"],
            "remote": {"crm": "Tier__c"},
        },
        "renewal": {"type": "date", "kind": "account", "owner": "crm", "sync_to": ["desk"]},
        "note": {
            "type": "text",
            "kind": "account",
            "owner": "crm",
            "on_conflict": "report",
            "sync_to": ["desk"],
        },
        "area": {
            "type": "multi_select",
            "kind": "ticket",
            "options": ["Billing", "API"],
            "owner": "bridge",
            "sync_to": ["desk"],
        },
    }
    fields.update(extra.pop("fields", {}))
    connectors = {
        s: {"plugin": "memory", "kinds": ["account", "contact", "ticket"]} for s in ("crm", "desk", "pylon")
    }
    return Config(
        connectors=connectors,
        fields=fields,
        tags=[{"match": "billing/*", "set": {"area": "Billing"}}],
        **extra,
    )


def change(system: str, ext: str, at_min: int = 0, kind: str = "account", **kw: Any) -> Change:
    return Change(system, kind, ext, T + timedelta(minutes=at_min), **kw)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A factory of State contexts: each ``with state() as s`` is one transaction (memory: no-op)."""
    if request.param == "memory":
        mem = MemoryState()

        @contextmanager
        def memory() -> Iterator[State]:
            yield mem

        yield memory
        return
    with open_store(request.param, tmp_path) as st:

        @contextmanager
        def session() -> Iterator[State]:
            with st.session() as tx:
                yield tx

        yield session


def run(state: Any, pipeline: Pipeline, c: Change, now: datetime = T) -> Outcome:
    with state() as s:
        return pipeline.process(s, c, now)


def shadow(state: Any, rid: str, name: str, system: str) -> Shadow:
    with state() as s:
        return Shadow.load(s.shadow(rid, name, system))


# ---------------------------------------------------------------- identity


def test_a_new_record_is_written_to_every_receiver_with_its_rule(state: Any) -> None:
    p = Pipeline(config())
    out = run(state, p, change("crm", "001", fields={"Tier__c": "Gold", "renewal": "2026-09-01"}))
    assert out.created
    assert out.record.value("tier") == "gold" and out.record.value("renewal") == date(2026, 9, 1)
    writes = {w.system: w.fields for w in out.writes}
    assert writes == {"desk": {"tier": "gold", "renewal": "2026-09-01"}, "pylon": {"tier": "gold"}}
    assert {(pw.system, pw.field, pw.old, pw.new, pw.rule) for pw in out.plan} == {
        ("desk", "tier", None, "gold", "owner"),
        ("desk", "renewal", None, "2026-09-01", "owner"),
        ("pylon", "tier", None, "gold", "owner"),
    }
    assert all(w.external_id is None for w in out.writes)  # not linked there yet: the push creates it


@pytest.mark.parametrize(
    ("kind", "attrs_a", "attrs_b", "same"),
    [
        ("contact", {"email": "Ann@Example.com "}, {"email": "ann@example.com"}, True),
        ("contact", {"email": "ann@example.com"}, {"email": "bob@example.com"}, False),
        ("account", {"domain": "https://www.acme.io/x"}, {"domain": "acme.io"}, True),
        ("account", {"name": "Acme, Inc."}, {"name": "ACME"}, True),  # name when there is no domain
        ("account", {"domain": "acme.io", "name": "Acme"}, {"domain": "other.io", "name": "Acme"}, False),
        ("ticket", {"email": "ann@example.com"}, {"email": "ann@example.com"}, False),  # tickets: links only
    ],
)
def test_identity_matches_by_configured_keys(
    state: Any, kind: str, attrs_a: dict[str, Any], attrs_b: dict[str, Any], same: bool
) -> None:
    p = Pipeline(config())
    a = run(state, p, change("crm", "c1", kind=kind, attrs=attrs_a))
    b = run(state, p, change("desk", "d1", kind=kind, attrs=attrs_b))
    assert (a.record.id == b.record.id) is same
    assert b.created is not same
    again = run(state, p, change("desk", "d1", 5, kind=kind, attrs={"email": "changed@example.com"}))
    assert again.record.id == b.record.id and not again.created  # the stored link wins over keys


def test_identity_keys_are_configurable(state: Any) -> None:
    p = Pipeline(config(identity={"contact": ["phone"]}))
    a = run(state, p, change("crm", "c1", kind="contact", attrs={"email": "a@x.io", "phone": "555"}))
    b = run(state, p, change("desk", "d1", kind="contact", attrs={"email": "a@x.io", "phone": "556"}))
    c = run(state, p, change("pylon", "p1", kind="contact", attrs={"phone": "555"}))
    assert a.record.id != b.record.id and c.record.id == a.record.id


def test_an_ambiguous_match_writes_nothing_and_names_the_candidates(state: Any) -> None:
    p = Pipeline(config())
    one = run(state, p, change("crm", "c1", kind="contact", attrs={"email": "x@y.io"}))
    two = run(state, p, change("crm", "c2", kind="contact", attrs={"email": "z@y.io"}))
    with state() as s:  # two records carrying one email (a vendor-side merge, say)
        s.set_keys(two.record.id, "contact", {"email": "x@y.io"})
    with state() as s:
        with pytest.raises(IdentityError) as err:
            p.process(
                s, change("desk", "d1", kind="contact", attrs={"email": "X@y.io"}, fields={"tier": "gold"}), T
            )
        assert sorted(err.value.candidates) == sorted([one.record.id, two.record.id])
        assert s.record_id_for("desk", "contact", "d1") is None
        assert one.record.id in str(err.value) and two.record.id in str(err.value)


def test_a_ticket_status_outside_the_five_is_refused_before_anything_is_written(state: Any) -> None:
    p = Pipeline(config())
    with state() as s:
        with pytest.raises(ValueError, match="status 'weird' is not one of open, pending, on_hold, resolved"):
            p.process(s, change("desk", "T-1", kind="ticket", attrs={"status": "weird"}), T)
        assert s.record_id_for("desk", "ticket", "T-1") is None


def test_a_match_already_linked_in_the_same_system_is_refused(state: Any) -> None:
    p = Pipeline(config())
    run(state, p, change("crm", "c1", kind="contact", attrs={"email": "x@y.io"}))
    with state() as s, pytest.raises(IdentityError, match="already linked to crm c1"):
        p.process(s, change("crm", "c2", kind="contact", attrs={"email": "x@y.io"}), T)


def test_a_record_bridge_created_is_recognised_by_its_bridge_id(state: Any) -> None:
    p = Pipeline(config())
    first = run(state, p, change("crm", "001", fields={"Tier__c": "gold"}))
    back = run(
        state, p, change("desk", "D-9", 1, fields={"tier": "gold"}, attrs={"bridge_id": first.record.id})
    )
    assert back.record.id == first.record.id and not back.created
    assert "bridge_id" not in back.record.attrs
    assert back.writes == []


# ---------------------------------------------------------------- echoes and three-way


def test_our_own_write_coming_back_is_an_echo_not_a_change(state: Any) -> None:
    p = Pipeline(config())
    first = run(state, p, change("crm", "001", fields={"Tier__c": "gold"}))
    rid = first.record.id
    assert shadow(state, rid, "tier", "desk").projected() == (True, "gold")
    echo = run(state, p, change("desk", "D1", 1, fields={"tier": "Gold"}, attrs={"bridge_id": rid}))
    assert echo.echoes == 1 and echo.writes == [] and echo.conflicts == []
    assert shadow(state, rid, "tier", "desk") == Shadow(True, "gold")
    again = run(state, p, change("desk", "D1", 2, fields={"tier": "gold", "note": "hi"}))
    assert again.echoes == 0 and again.writes == []  # unchanged now


def test_last_writer_wins_does_not_take_a_stale_value_as_news(state: Any) -> None:
    fields = {
        "score": {
            "type": "number",
            "kind": "account",
            "owner": "crm",
            "policy": "last_writer_wins",
            "sync_to": ["crm", "desk"],
        }
    }
    p = Pipeline(config(fields=fields))
    rid = run(state, p, change("crm", "001", 0, fields={"score": 1})).record.id
    run(state, p, change("desk", "D1", 1, fields={"score": 1}, attrs={"bridge_id": rid}))  # echo: desk has 1
    out = run(state, p, change("crm", "001", 2, fields={"score": 2}))
    assert [w.fields for w in out.writes] == [{"score": 2}]  # on its way to desk
    # desk's record changes for another reason before our write lands: its score is still the old 1
    late = run(state, p, change("desk", "D1", 30, fields={"score": 1, "note": "x"}))
    assert late.record.value("score") == 2 and late.writes == [] and late.conflicts == []


# ---------------------------------------------------------------- conflicts


def test_a_non_owner_edit_is_a_conflict_reverted_and_never_propagated(state: Any) -> None:
    p = Pipeline(config())
    rid = run(state, p, change("crm", "001", fields={"Tier__c": "gold"})).record.id
    run(state, p, change("desk", "D1", 1, fields={"tier": "gold"}, attrs={"bridge_id": rid}))
    run(state, p, change("pylon", "P1", 1, fields={"tier": "gold"}, attrs={"bridge_id": rid}))
    out = run(state, p, change("desk", "D1", 2, fields={"tier": "silver"}))
    assert out.record.value("tier") == "gold"
    assert [(c.system, c.field, c.value, c.owner_value, c.rule, c.reverted) for c in out.conflicts] == [
        ("desk", "tier", "silver", "gold", "owner_wins", True)
    ]
    assert [(w.system, w.fields) for w in out.writes] == [("desk", {"tier": "gold"})]  # pylon is not told
    assert [pw.rule for pw in out.plan] == ["owner_wins: revert"]
    with state() as s:
        audit = [a for a in _audit(s, rid) if a["kind"] == "conflict"]
    assert [(a["field"], a["before"], a["after"], a["origin"], a["response"]) for a in audit] == [
        ("tier", "gold", "silver", "desk", "reverted")
    ]


def test_a_conflict_left_per_config_is_reported_and_stays_left(state: Any) -> None:
    p = Pipeline(config())
    rid = run(state, p, change("crm", "001", fields={"note": "owner says"})).record.id
    run(state, p, change("desk", "D1", 1, fields={"note": "owner says"}, attrs={"bridge_id": rid}))
    out = run(state, p, change("desk", "D1", 2, fields={"note": "desk says"}))
    assert [(c.field, c.reverted) for c in out.conflicts] == [("note", False)] and out.writes == []
    later = run(state, p, change("desk", "D1", 3, fields={"note": "desk says", "tier": None}))
    assert later.writes == [] and later.conflicts == []  # left means left, until the owner changes it
    owner = run(state, p, change("crm", "001", 4, fields={"note": "owner again"}))
    assert [(w.system, w.fields) for w in owner.writes] == [("desk", {"note": "owner again"})]


def test_a_conflict_from_a_system_outside_sync_to_is_not_reverted(state: Any) -> None:
    p = Pipeline(config())
    rid = run(state, p, change("crm", "001", fields={"renewal": "2026-01-01"})).record.id
    out = run(state, p, change("pylon", "P1", 1, fields={"renewal": "2027-01-01"}, attrs={"bridge_id": rid}))
    assert [(c.system, c.reverted) for c in out.conflicts] == [("pylon", False)]
    assert all(w.system != "pylon" or "renewal" not in w.fields for w in out.writes)


def test_a_value_the_type_refuses_is_reported_and_audited(state: Any) -> None:
    p = Pipeline(config())
    out = run(state, p, change("crm", "001", fields={"Tier__c": "platinum"}))
    assert "tier" not in out.record.fields and out.writes == []
    assert len(out.problems) == 1 and "crm account 001" in out.problems[0] and "platinum" in out.problems[0]


# ---------------------------------------------------------------- tags, deletes, initial sync


def test_tags_set_bridge_owned_fields_which_go_to_their_receivers(state: Any) -> None:
    p = Pipeline(config())
    out = run(state, p, change("desk", "T1", kind="ticket", tags=["billing/refund"], attrs={"subject": "x"}))
    assert out.record.value("area") == ["Billing"]
    assert [(w.system, w.fields) for w in out.writes] == [("desk", {"area": ["Billing"]})]
    assert [pw.rule for pw in out.plan] == ["tag billing/refund"]
    again = run(
        state, p, change("desk", "T1", 1, kind="ticket", tags=["billing/refund"], fields={"area": "Billing"})
    )
    assert again.writes == [] and again.echoes == 1


@pytest.mark.parametrize("policy", ["ignore", "flag", "archive"])
def test_deletes_per_kind(state: Any, policy: str) -> None:
    p = Pipeline(config(deletes={"account": policy}))
    rid = run(state, p, change("crm", "001", fields={"Tier__c": "gold"})).record.id
    run(state, p, change("desk", "D1", 1, fields={"tier": "gold"}, attrs={"bridge_id": rid}))
    gone = run(state, p, change("desk", "D1", 2, deleted=True, fields={"tier": None}))
    assert gone.deleted == policy and gone.writes == [] and gone.conflicts == []
    assert gone.record.value("tier") == "gold"  # a delete's blank fields are no edit
    after = run(state, p, change("crm", "001", 3, fields={"Tier__c": "silver"}))
    receivers = sorted(w.system for w in after.writes)
    assert receivers == {"ignore": ["desk", "pylon"], "flag": ["pylon"], "archive": []}[policy]
    assert ("deleted_in" in after.record.attrs) is (policy != "ignore")
    with state() as s:
        assert [a["rule"] for a in _audit(s, rid) if a["kind"] == "delete"] == [f"deletes.account = {policy}"]
    back = run(state, p, change("desk", "D1", 4, fields={"tier": "gold"}))  # the system has it again
    assert "deleted_in" not in back.record.attrs and "archived" not in back.record.attrs


def test_a_new_receiver_gets_values_it_never_had_and_no_blanks(state: Any) -> None:
    p = Pipeline(config())
    rid = run(state, p, change("crm", "001", fields={"Tier__c": "gold", "note": None})).record.id
    with state() as s:
        assert s.shadow(rid, "note", "desk") == (False, None)  # blank, never known: nothing sent
    out = run(state, p, change("desk", "D1", 1, attrs={"bridge_id": rid}))
    assert out.writes == []  # desk was already sent tier; nothing else to tell


def test_dates_loaded_from_the_store_are_typed_again(state: Any) -> None:
    p = Pipeline(config())
    rid = run(state, p, change("crm", "001", fields={"renewal": "2026-09-01"})).record.id
    out = run(state, p, change("crm", "001", 1, fields={"renewal": 1788264000000}))  # epoch ms, same day
    assert out.record.id == rid and out.writes == [] and out.record.value("renewal") == date(2026, 9, 1)


def _audit(s: Any, rid: str) -> list[dict[str, Any]]:
    if isinstance(s, MemoryState):
        return [a for a in s.audits if a["record_id"] == rid]
    rows: list[dict[str, Any]] = s.audit_for(rid)
    return rows


# ---------------------------------------------------------------- account context for rules


def test_a_ticket_gets_its_accounts_crm_context_by_the_requesters_domain(state: Any) -> None:
    p = Pipeline(config())
    run(
        state,
        p,
        change("crm", "A1", attrs={"name": "Acme", "domain": "acme.example"}, fields={"Tier__c": "gold"}),
    )
    ticket = change("desk", "T1", 1, kind="ticket", attrs={"requester": {"email": "ana@ACME.example"}})
    out = run(state, p, ticket)
    assert out.record.attrs["account"]["tier"] == "gold"
    assert out.record.attrs["account"]["name"] == "Acme"
    # what the ticket's own system says of its account stands
    own = change(
        "desk",
        "T2",
        2,
        kind="ticket",
        attrs={"requester": {"email": "li@acme.example"}, "account": {"tier": "silver"}},
    )
    assert run(state, p, own).record.attrs["account"]["tier"] == "silver"


def test_a_tickets_next_change_reads_its_account_as_the_crm_holds_it_now(state: Any) -> None:
    # the CRM downgrades the account after the ticket opened: the ticket's next change reads the new tier
    # and name (a rule on ARR must not fire on the old value), while what the ticket's own system said of its
    # account (a region) still stands, across changes that say nothing of it
    p = Pipeline(config())
    crm = {"name": "Acme", "domain": "acme.example"}
    run(state, p, change("crm", "A1", attrs=crm, fields={"Tier__c": "gold"}))
    ticket = change("desk", "T1", 1, kind="ticket",
                    attrs={"requester": {"email": "ana@acme.example"}, "account": {"region": "emea"}})
    assert run(state, p, ticket).record.attrs["account"]["tier"] == "gold"
    run(state, p, change("crm", "A1", 2, attrs={**crm, "name": "Acme GmbH"}, fields={"Tier__c": "silver"}))
    out = run(state, p, change("desk", "T1", 3, kind="ticket", attrs={"priority": "high"}))
    account = out.record.attrs["account"]
    assert (account["tier"], account["name"], account["region"]) == ("silver", "Acme GmbH", "emea")
    # the ticket's own system says otherwise of the tier: that stands over the CRM
    out = run(state, p, change("desk", "T1", 4, kind="ticket", attrs={"account": {"tier": "Gold"}}))
    assert out.record.attrs["account"]["tier"] == "gold" and "region" not in out.record.attrs["account"]


def test_a_tickets_own_account_values_are_coerced_as_a_crm_sync_would(state: Any) -> None:
    # a helpdesk that knows the account says "Enterprise" and "120,000": the rules read the option and the
    # number, as replay gives them and as the CRM's own record would be taken (a value that fits nothing is
    # reported and dropped)
    fields = {"tier": {"type": "select", "options": ["enterprise", "growth"], "kind": "account"},
              "arr": {"type": "number", "kind": "account"}}
    p = Pipeline(Config(fields=fields))
    out = run(state, p, change("desk", "T1", 1, kind="ticket", attrs={
        "account": {"id": "A-1", "tier": "Enterprise", "fields": {"arr": "120,000"}}}))
    assert out.record.attrs["account"]["tier"] == "enterprise"
    assert out.record.attrs["account"]["fields"]["arr"] == 120000
    out = run(state, p, change("desk", "T1", 2, kind="ticket", attrs={"account": {"tier": "platinum"}}))
    assert "tier" not in out.record.attrs["account"]
    assert [p.split(": ")[0] for p in out.problems] == ["desk ticket T1"] and "platinum" in out.problems[0]


def test_no_account_context_when_the_domain_is_unknown_or_ambiguous(state: Any) -> None:
    p = Pipeline(config())
    out = run(state, p, change("desk", "T1", kind="ticket", attrs={"requester": {"email": "a@acme.example"}}))
    assert "account" not in out.record.attrs
    with state() as s:  # two accounts claim the domain (a vendor merge): no guessing
        for _ in range(2):
            s.set_keys(s.create_record("account"), "account", {"domain": "acme.example"})
    out = run(
        state, p, change("desk", "T2", 1, kind="ticket", attrs={"requester": {"email": "b@acme.example"}})
    )
    assert "account" not in out.record.attrs


def test_a_blank_seen_first_is_filled_in_without_a_conflict_a_later_edit_is_one(state: Any) -> None:
    p = Pipeline(config())
    owner = run(state, p, change("crm", "A1", attrs={"domain": "acme.example"}, fields={"Tier__c": "gold"}))
    assert {"tier": "gold"} in [w.fields for w in owner.writes if w.system == "desk"]  # desk will be told
    first = run(state, p, change("desk", "D1", 1, attrs={"domain": "acme.example"}, fields={"tier": None}))
    assert first.conflicts == []
    later = run(
        state, p, change("desk", "D1", 2, attrs={"domain": "acme.example"}, fields={"tier": "silver"})
    )
    assert [(c.field, c.value, c.owner_value) for c in later.conflicts] == [("tier", "silver", "gold")]


def test_an_older_change_arriving_late_is_kept_but_not_applied(state: Any) -> None:
    p = Pipeline(config())
    run(state, p, change("crm", "A1", 10, attrs={"domain": "acme.example"}, fields={"Tier__c": "gold"}))
    late = run(
        state, p, change("crm", "A1", 5, attrs={"domain": "acme.example"}, fields={"Tier__c": "silver"})
    )
    assert late.stale and late.writes == []
    assert "not applied" in late.problems[0]
    with state() as s:
        rid = s.record_id_for("crm", "account", "A1")
        assert s.load(rid).value("tier") == "gold"
    # the same change again (a re-pull in the lookback window) is known as a repeat and taken as no change
    again = run(
        state, p, change("crm", "A1", 10, attrs={"domain": "acme.example"}, fields={"Tier__c": "gold"})
    )
    assert again.repeat and again.writes == [] and again.problems == []
    # another change at that very instant is a change
    other = run(
        state, p, change("crm", "A1", 10, attrs={"domain": "acme.example"}, fields={"Tier__c": "silver"})
    )
    assert not other.stale and other.record.value("tier") == "silver"


def test_a_tickets_priority_case_and_a_sentiment_off_the_scale_are_made_readable_for_the_rules() -> None:
    # what a connector lets through: "Urgent" is the priority urgent (a gte "high" rule ranks it); -500 and
    # "bad" are no sentiment: dropped and computed from the customer's words, each reported
    pipeline = Pipeline(Config())
    state = MemoryState()
    out = pipeline.process(state, Change("desk", "ticket", "T-1", T, attrs={
        "subject": "Thanks, great help", "priority": "Urgent", "sentiment": -500}), T)
    assert out.record.attrs["priority"] == "urgent" and out.record.attrs["sentiment"] > 0
    assert out.problems == ["desk ticket T-1: sentiment -500 is not a number from -100 to 100; dropped "
                            "(computed from the text instead)"]
    out = pipeline.process(state, Change("desk", "ticket", "T-1", T + timedelta(minutes=1), attrs={
        "priority": "P1", "sentiment": "bad"}), T)
    assert out.record.attrs["priority"] == "P1" and out.record.attrs["sentiment"] > 0  # kept as computed
    said = [p.split(": ", 1)[1].split(" is ")[0] for p in out.problems]
    assert said == ["priority 'P1'", "sentiment 'bad'"]


def test_a_change_delivered_again_after_the_revert_landed_is_no_second_conflict(state: Any) -> None:
    # the helpdesk's user sets a tier the CRM owns; bridge reverts it; the helpdesk then delivers the very
    # webhook of that edit again (same instant, same values)
    p = Pipeline(config())
    run(state, p, change("crm", "A1", 0, attrs={"domain": "acme.example"}, fields={"Tier__c": "gold"}))
    edit = change("desk", "D1", 10, attrs={"domain": "acme.example"}, fields={"tier": "silver"})
    first = run(state, p, edit)
    assert [(c.field, c.system) for c in first.conflicts] == [("tier", "desk")]
    rid = first.record.id
    with state() as s:  # the revert landed (what the pusher records)
        landed = Shadow.load(s.shadow(rid, "tier", "desk"))
        landed.confirm(FieldType("select", ("gold", "silver")), "gold")
        s.set_shadow(rid, "tier", "desk", landed.dump(), T)

    again = run(state, p, edit)

    assert again.repeat and again.conflicts == [] and again.writes == []
    with state() as s:
        assert s.load(rid).value("tier") == "gold"
