"""The customer's words, and only theirs, are classified, scored and read as ``ticket.text``.

Computed sentiment and classifier tags come from the ticket as created (subject, body) and each customer
message; an agent's, a bot's or a system's message and an edit leave them as they were, and a sentiment an
event gives stands. ``ticket.text`` is subject, body and the newest customer message, whatever agents wrote
since.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from bridge.classify import sentiment
from bridge.model import CUSTOMER_MESSAGE, Change, Record
from bridge.pipeline import MemoryState, Pipeline
from bridge.replay import Replay
from bridge.rules.conditions import Context
from bridge.settings import Config

AGENT = "alice@example.com"
ENTERPRISE = {"id": "A-1", "tier": "enterprise"}
CALM = ("Export question", "How do I export my data to CSV?")
FURIOUS = ("Charged twice", "This is unacceptable, I am furious, terrible service")
APOLOGY = "Sorry! The export is broken during yesterday's outage, terrible timing. I issued a refund for it."

SENTIMENT_CONFIG: dict[str, Any] = {
    "classify": {"keywords": {"billing/refund": ["refund", "charged twice"]}},
    "teams": {"team-leads": {"members": [AGENT]}},
    "agents": [{"email": AGENT}],
    "rules": [
        {
            "name": "enterprise-negative-sentiment",
            "set": "escalation",
            "when": {"all": [{"field": "account.tier", "eq": "enterprise"},
                             {"field": "ticket.sentiment", "lte": -35}]},
            "then": [{"escalate": "team-leads"}, {"set": {"priority": "urgent"}}],
        }
    ],
}
LAWYER_CONFIG: dict[str, Any] = {
    "teams": {"legal": {"members": [AGENT]}},
    "agents": [{"email": AGENT}],
    "rules": [
        {
            "name": "lawyer-urgent",
            "set": "escalation",
            "when": {"all": [{"field": "ticket.text", "contains": "lawyer"},
                             {"field": "ticket.priority", "eq": "urgent"}]},
            "then": [{"escalate": "legal"}],
        }
    ],
}


def event(kind: str, at: str, **body: Any) -> str:
    return json.dumps({"type": kind, "at": at, **body})


def created(tid: str, at: str, subject: str, body: str, **ticket: Any) -> str:
    base = {"id": tid, "subject": subject, "body": body, "status": "open", "priority": "normal", "tags": []}
    return event("ticket.created", at, ticket={**base, **ticket})


def message(tid: str, at: str, author: str | None, body: str, **extra: Any) -> str:
    who = {} if author is None else {"author": author}
    if author == "agent":
        who["agent"] = AGENT
    return event("ticket.message", at, ticket_id=tid, body=body, **who, **extra)


def updated(tid: str, at: str, **changes: Any) -> str:
    return event("ticket.updated", at, ticket_id=tid, changes=changes)


def t(hm: str) -> str:
    return f"2026-11-02T{hm}:00Z"


def run(config: dict[str, Any], lines: list[str]) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Decisions (routing left out) and final states by ticket id of one replay."""
    rp = Replay(Config(**config))
    out = list(rp.run(lines))
    # (a message of an author who is neither customer nor agent is reported, and applied)
    assert [p for p in rp.problems if "is neither customer nor agent" not in p] == []
    decisions = [d for d in out if not d.get("final") and d["rule"] != "routing"]
    return decisions, {d["ticket_id"]: d for d in out if d.get("final")}


def brief(decisions: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    return [(d["at"], d["ticket_id"], d["decision"], d["rule"]) for d in decisions]


# ---------------------------------------------------------------- sentiment and tags: the customer's words


def test_an_agent_apology_neither_scores_nor_tags_nor_escalates_a_calm_ticket() -> None:
    decisions, finals = run(SENTIMENT_CONFIG, [
        created("T1", t("09:00"), *CALM, tags=["how-to/export"], account=ENTERPRISE),
        message("T1", t("09:10"), "agent", APOLOGY),
    ])
    assert decisions == []
    final = finals["T1"]
    assert final["sentiment"] == sentiment(" ".join(CALM)) == 0
    assert final["tags"] == ["how-to/export"]  # no billing/refund from the agent's "refund"
    assert (final["priority"], final["escalations"]) == ("normal", [])


def test_a_polite_agent_reply_leaves_a_furious_customer_s_sentiment() -> None:
    _, finals = run(SENTIMENT_CONFIG, [
        created("T2", t("10:00"), *FURIOUS, account={"id": "A-2", "tier": "growth"}),
        message("T2", t("10:10"), "agent", "Thanks for your patience, happy to help, great question"),
    ])
    assert finals["T2"]["sentiment"] == sentiment(" ".join(FURIOUS)) < -35


@pytest.mark.parametrize("author", ["system", "bot", None])
def test_a_message_of_another_author_is_not_the_customer_s(author: str | None) -> None:
    decisions, finals = run(SENTIMENT_CONFIG, [
        created("T4", t("09:00"), *CALM, account=ENTERPRISE),
        message("T4", t("09:01"), author, "Automated notice: outage, failed, terrible, unacceptable refund"),
    ])
    assert decisions == []
    assert (finals["T4"]["sentiment"], finals["T4"]["tags"], finals["T4"]["priority"]) == (0, [], "normal")


def test_renaming_the_subject_keeps_the_computed_sentiment() -> None:
    angry = "This is unacceptable, terrible, I am furious"
    decisions, finals = run(SENTIMENT_CONFIG, [
        created("T3", t("09:00"), "Order", "Where is my order", account=ENTERPRISE),
        message("T3", t("09:05"), "customer", angry),
        updated("T3", t("09:06"), subject="Order 4711"),
    ])
    assert finals["T3"]["sentiment"] == sentiment(angry) < -35
    assert brief(decisions) == [
        (t("09:05"), "T3", "escalate", "enterprise-negative-sentiment"),
        (t("09:05"), "T3", "set_field", "enterprise-negative-sentiment"),
    ]


def test_a_rename_does_not_make_a_rule_overrule_the_human_who_lowered_the_priority() -> None:
    # the sentiment never stopped being negative: the rule keeps holding and does not fire again
    decisions, finals = run(SENTIMENT_CONFIG, [
        created("T3", t("09:00"), "Order", "Where is my order", account=ENTERPRISE),
        message("T3", t("09:05"), "customer", "This is unacceptable, terrible, I am furious"),
        updated("T3", t("09:06"), subject="Order 4711"),
        updated("T3", t("09:07"), priority="normal"),
        message("T3", t("09:08"), "customer", "Still waiting, unacceptable, terrible"),
    ])
    assert [d["at"] for d in decisions] == [t("09:05"), t("09:05")]
    assert finals["T3"]["priority"] == "normal"
    assert finals["T3"]["sentiment"] == sentiment("Still waiting, unacceptable, terrible")


def test_an_edit_of_the_body_neither_scores_nor_tags() -> None:
    decisions, finals = run(SENTIMENT_CONFIG, [
        created("T5", t("09:00"), *CALM, account=ENTERPRISE),
        updated("T5", t("09:05"), body="Terrible, unacceptable: I want a refund"),
    ])
    assert decisions == []
    assert (finals["T5"]["sentiment"], finals["T5"]["tags"]) == (0, [])


def test_a_customer_message_is_scored_and_classified() -> None:
    angry = "I was charged twice, unacceptable, I want a refund"
    decisions, finals = run(SENTIMENT_CONFIG, [
        created("T6", t("09:00"), *CALM, account=ENTERPRISE),
        message("T6", t("09:05"), "agent", "Happy to help, great question"),
        message("T6", t("09:10"), "customer", angry),
    ])
    assert finals["T6"]["sentiment"] == sentiment(angry) < -35
    assert finals["T6"]["tags"] == ["billing/refund"]
    assert [d["decision"] for d in decisions] == ["tag", "escalate", "set_field"]


@pytest.mark.parametrize("author", ["agent", "customer", "system"])
def test_a_sentiment_an_event_gives_stands_whoever_wrote_it(author: str) -> None:
    lines = [
        created("T7", t("09:00"), *CALM),
        message("T7", t("09:05"), author, "Thanks, great", sentiment=-80),
        message("T7", t("09:10"), "agent", "Glad to help"),
        updated("T7", t("09:15"), subject="Thanks, perfect"),
    ]
    _, finals = run(SENTIMENT_CONFIG, lines)
    assert finals["T7"]["sentiment"] == -80  # given, so not computed over by what came after it
    lines.append(message("T7", t("09:20"), "customer", "Thanks, perfect, love it"))
    _, finals = run(SENTIMENT_CONFIG, lines)
    assert finals["T7"]["sentiment"] == sentiment("Thanks, perfect, love it") > 0  # newer words, none given


def test_a_sentiment_given_at_creation_does_not_silence_a_later_complaint() -> None:
    angry = "This is terrible, awful and unacceptable, I am furious"
    decisions, finals = run(SENTIMENT_CONFIG, [
        created("T8", t("09:00"), *CALM, account=ENTERPRISE, sentiment=20),
        message("T8", t("09:10"), "customer", angry),
    ])
    assert finals["T8"]["sentiment"] == sentiment(angry) < -35
    assert "escalate" in [d["decision"] for d in decisions]


# ---------------------------------------------------------------- ticket.text: the newest customer message


def test_ticket_text_keeps_the_customer_s_message_after_an_agent_replies() -> None:
    decisions, _ = run(LAWYER_CONFIG, [
        created("T1", t("09:00"), "Invoice", "Wrong invoice"),
        message("T1", t("09:10"), "customer", "Fix this or I call my lawyer"),
        message("T1", t("09:20"), "agent", "Sorry, looking into it"),
        updated("T1", t("09:30"), priority="urgent"),
    ])
    assert brief(decisions) == [(t("09:30"), "T1", "escalate", "lawyer-urgent")]


def test_ticket_text_reads_the_newest_customer_message_only() -> None:
    decisions, _ = run(LAWYER_CONFIG, [
        created("T1", t("09:00"), "Invoice", "Wrong invoice"),
        message("T1", t("09:10"), "customer", "Fix this or I call my lawyer"),
        message("T1", t("09:15"), "customer", "Never mind, it is fixed"),
        message("T1", t("09:20"), "agent", "Glad it works"),
        updated("T1", t("09:30"), priority="urgent"),
    ])
    assert decisions == []


@pytest.mark.parametrize("author", ["agent", "system"])
def test_ticket_text_leaves_out_what_others_wrote(author: str) -> None:
    decisions, _ = run(LAWYER_CONFIG, [
        created("T1", t("09:00"), "Invoice", "Wrong invoice"),
        message("T1", t("09:10"), author, "Our lawyer reviewed the invoice"),
        updated("T1", t("09:30"), priority="urgent"),
    ])
    assert decisions == []


def test_an_agent_reply_does_not_change_ticket_text() -> None:
    config: dict[str, Any] = {
        "agents": [{"email": AGENT}],
        "rules": [{"name": "text-changed", "when": {"field": "ticket.text", "changed": True},
                   "then": [{"notify": {"to": "ops"}}]}],
    }
    decisions, _ = run(config, [
        created("T1", t("09:00"), "Invoice", "Wrong invoice"),
        message("T1", t("09:10"), "customer", "Any news?"),
        message("T1", t("09:20"), "agent", "Looking into it"),
    ])
    assert brief(decisions) == [(t("09:10"), "T1", "notify", "text-changed")]  # the customer's message only


def test_the_daemon_s_pipeline_keeps_the_customer_s_message_apart() -> None:
    # ``bridge run`` takes changes through the same pipeline: a message with no author said is the customer's
    pipeline, state = Pipeline(Config()), MemoryState()
    at = datetime.fromisoformat("2026-11-02T09:00:00+00:00")
    for attrs in ({"subject": "Invoice", "body": "Wrong"}, {"message": "I call my lawyer"},
                  {"message": "On it", "last_author": "agent"}):
        record = pipeline.process(state, Change("desk", "ticket", "1", at, attrs=attrs), at).record
    assert (record.attrs["message"], record.attrs["last_author"]) == ("On it", "agent")  # as before
    assert record.attrs[CUSTOMER_MESSAGE] == "I call my lawyer"
    assert Context(record).text == "Invoice \n Wrong \n I call my lawyer"  # (each part on a line of its own)


@pytest.mark.parametrize(
    ("attrs", "text"),
    [
        ({"message": "lawyer", "last_author": "customer"}, "s \n lawyer"),
        ({"message": "lawyer"}, "s \n lawyer"),
        ({"message": "lawyer", "last_author": "agent"}, "s"),
        ({"message": "lawyer", "last_author": "system"}, "s"),
    ],
)
def test_a_record_without_the_customer_s_message_apart_reads_its_message_by_author(
    attrs: dict[str, str], text: str
) -> None:
    # a record stored before the customer's message was kept apart
    assert Context(Record("r1", "ticket", attrs={"subject": "s", **attrs})).text == text
