"""The store on its own: the compare-and-sets (calls and reply leases), appends that queue, and start-up recovery."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import text

from backend.errors import InvalidStateError, NotFoundError
from backend.storage.store import Store
from backend.storage.tables import (
    SETTLED_STATUSES,
    CallStatus,
    ConversationLease,
    FunctionCallRecord,
    MessageRole,
    utcnow,
)


def _running_call(store: Store, *, instance: str, confirmed_ago: timedelta = timedelta(0)) -> str:
    owner = store.user("ann")
    conversation = store.create_conversation(owner=owner)
    record = store.add_call(
        FunctionCallRecord(conversation_id=conversation.id, reply_id="r", turn_id="t", function_name="refund"),
        message_content="{}",
    )
    store.transition(
        record.id, expected=CallStatus.PROPOSED, to=CallStatus.RUNNING, runner=instance,
        confirmed_at=utcnow() - confirmed_ago,
    )
    return record.id


def test_a_restarting_replica_interrupts_only_its_own_and_orphaned_calls(database_url: str) -> None:
    store = Store(database_url, instance="replica-a")
    mine = _running_call(store, instance="replica-a")
    theirs = _running_call(store, instance="replica-b")
    orphaned = _running_call(store, instance="replica-c", confirmed_ago=timedelta(hours=2))

    interrupted = {r.id for r in store.interrupt_unfinished_calls()}

    assert interrupted == {mine, orphaned}
    assert store.call(theirs).status == CallStatus.RUNNING


def test_an_interrupted_call_says_whether_it_may_have_acted_and_gets_its_result_message(database_url: str) -> None:
    store = Store(database_url, instance="replica-a")
    running = _running_call(store, instance="replica-a")
    confirmed = _running_call(store, instance="replica-a")
    with store.engine.begin() as connection:  # confirmed, and stopped before its function started
        connection.execute(text("UPDATE function_calls SET status = 'confirmed' WHERE id = :id"), {"id": confirmed})

    store.interrupt_unfinished_calls()

    assert "may" not in (store.call(confirmed).error or "") and "did not run" in (store.call(confirmed).error or "")
    assert "Check its effect" in (store.call(running).error or "")
    for call_id in (running, confirmed):
        results = [m for m in store.messages(store.call(call_id).conversation_id) if m.role == "function_result"]
        assert [m.call_id for m in results] == [call_id]


def test_compare_and_set_lets_exactly_one_of_many_threads_through(database_url: str) -> None:
    store = Store(database_url)
    owner = store.user("ann")
    conversation = store.create_conversation(owner=owner)
    record = store.add_call(
        FunctionCallRecord(conversation_id=conversation.id, reply_id="r", turn_id="t", function_name="refund"),
        message_content="{}",
    )
    winners: list[str] = []
    losers: list[str] = []
    barrier = threading.Barrier(8)

    def confirm() -> None:
        barrier.wait()
        try:
            store.transition(record.id, expected=CallStatus.PROPOSED, to=CallStatus.CONFIRMED)
            winners.append("won")
        except InvalidStateError as error:
            losers.append(str(error))

    threads = [threading.Thread(target=confirm) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1 and len(losers) == 7
    with pytest.raises(NotFoundError):
        store.transition("no-such-call", expected=CallStatus.PROPOSED, to=CallStatus.CONFIRMED)


def test_concurrent_appends_get_distinct_positions(database_url: str) -> None:
    store = Store(database_url)
    conversation = store.create_conversation(owner=store.user("ann"))
    barrier = threading.Barrier(6)

    def append(index: int) -> None:
        barrier.wait()
        for turn in range(5):
            store.add_message(conversation_id=conversation.id, role=MessageRole.USER, content=f"{index}-{turn}")

    threads = [threading.Thread(target=append, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    positions = [m.position for m in store.messages(conversation.id)]
    assert positions == list(range(30))


def test_a_skipped_call_is_stored_as_settled_without_a_migration(database_url: str) -> None:
    store = Store(database_url)
    conversation = store.create_conversation(owner=store.user("ann"))
    record = store.add_call(
        FunctionCallRecord(conversation_id=conversation.id, reply_id="r", turn_id="t", function_name="refund"),
        message_content="{}",
    )

    store.transition(record.id, expected=CallStatus.PROPOSED, to=CallStatus.SKIPPED, reject_reason="A new message.")

    assert store.call(record.id).status == CallStatus.SKIPPED and CallStatus.SKIPPED in SETTLED_STATUSES
    assert [c.id for c in store.calls(conversation_id=conversation.id, status=CallStatus.SKIPPED)] == [record.id]
    with pytest.raises(InvalidStateError, match="already skipped"):
        store.transition(record.id, expected=CallStatus.PROPOSED, to=CallStatus.CONFIRMED)
    store.close()


def test_one_of_many_replicas_takes_a_conversations_lease(database_url: str) -> None:
    stores = [Store(database_url, instance=f"replica-{i}") for i in range(4)]
    conversation = stores[0].create_conversation(owner=stores[0].user("ann"))
    winners: list[str] = []
    barrier = threading.Barrier(8)

    def take(index: int) -> None:
        barrier.wait()
        if stores[index % 4].take_lease(conversation.id, holder=f"reply-{index}", ttl=timedelta(minutes=1)):
            winners.append(f"reply-{index}")

    threads = [threading.Thread(target=take, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    (winner,) = winners
    store = stores[0]
    assert store.lease_holder(conversation.id) == winner
    assert not store.renew_lease(conversation.id, holder="someone-else", ttl=timedelta(minutes=1))
    store.release_lease(conversation.id, holder="someone-else")
    assert store.lease_holder(conversation.id) == winner, "only its holder gives a lease back"
    store.release_lease(conversation.id, holder=winner)
    assert store.lease_holder(conversation.id) is None
    assert store.take_lease(conversation.id, holder="next", ttl=timedelta(minutes=1))
    store.delete_conversation(conversation.id, user=store.user("ann"))  # a held lease goes with its conversation
    for each in stores:
        each.close()


def test_an_expired_lease_is_taken_over_and_its_old_holder_cannot_renew_it(database_url: str) -> None:
    store = Store(database_url)
    conversation = store.create_conversation(owner=store.user("ann"))
    assert store.take_lease(conversation.id, holder="crashed", ttl=timedelta(minutes=1))
    with store.engine.begin() as connection:  # its holder died a while ago: the expiry is behind us
        connection.execute(ConversationLease.__table__.update().values(expires_at=utcnow() - timedelta(seconds=1)))

    assert store.lease_holder(conversation.id) is None
    assert store.take_lease(conversation.id, holder="alive", ttl=timedelta(minutes=1))
    assert not store.renew_lease(conversation.id, holder="crashed", ttl=timedelta(minutes=1))
    store.release_lease(conversation.id, holder="crashed")
    assert store.lease_holder(conversation.id) == "alive"
    assert not store.take_lease(conversation.id, holder="crashed", ttl=timedelta(minutes=1))
    store.close()
