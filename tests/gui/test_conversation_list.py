"""The sidebar's item model, checked by Qt's own model tester."""

from __future__ import annotations

from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot

from engine.history.types import Conversation
from ui.conversation_list import ID_ROLE, ConversationList, ConversationListModel


def conv(cid: int, updated: float, title: str = "") -> Conversation:
    return Conversation(cid, title or f"chat {cid}", created_at=0.0, updated_at=updated)


def ids(model: ConversationListModel) -> list[int]:
    return [model.data(model.index(r), ID_ROLE) for r in range(model.rowCount())]


def test_model_is_consistent_and_newest_first(qtmodeltester: ModelTester) -> None:
    model = ConversationListModel()
    model.set_conversations([conv(3, 30), conv(2, 20), conv(1, 10)])
    qtmodeltester.check(model)
    model.upsert(conv(4, 40))  # new, newest
    model.upsert(conv(1, 50))  # oldest becomes newest: moves up
    model.upsert(conv(4, 5))  # moves to the bottom
    model.upsert(conv(2, 20, "renamed"))  # same place, new title
    assert ids(model) == [1, 3, 2, 4]
    assert model.data(model.index(2)) == "renamed"
    model.remove(3)
    assert ids(model) == [1, 2, 4]
    qtmodeltester.check(model)


def test_a_chat_moving_in_the_list_stays_selected_and_opens_nothing(qtbot: QtBot) -> None:
    model = ConversationListModel()
    view = ConversationList(model)
    qtbot.addWidget(view)
    model.set_conversations([conv(3, 30), conv(2, 20), conv(1, 10)])
    view.select_conversation(1)
    opened: list[int] = []
    view.conversation_activated.connect(opened.append)
    model.upsert(conv(1, 99))  # a new message in the selected chat moves it to the top
    assert view.current_id() == 1 and ids(model)[0] == 1
    model.remove(1)  # deleting it must not silently open a neighbour
    assert opened == []
    view.setCurrentIndex(model.index(1))  # a person's choice does open one
    assert opened == [2]


def test_long_histories_are_listed_a_page_at_a_time(qtmodeltester: ModelTester) -> None:
    everything = [conv(i, float(i)) for i in range(450, 0, -1)]  # newest first
    asked: list[int] = []

    def more(offset: int) -> list[Conversation]:
        asked.append(offset)
        return everything[offset : offset + 200]

    model = ConversationListModel()
    model.set_conversations(everything[:200], more)
    assert model.rowCount() == 200 and model.canFetchMore()
    model.fetchMore()
    model.fetchMore()
    assert model.rowCount() == 450 and asked == [200, 400]
    model.fetchMore()  # the end: nothing more, and no more asking
    assert not model.canFetchMore() and asked == [200, 400, 450]
    assert ids(model) == [c.id for c in everything]
    qtmodeltester.check(model)
