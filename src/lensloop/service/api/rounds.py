"""``/v1`` routes for selection rounds: run one, list them, walk one as a labelling queue."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from lensloop.catalog.labels import current_class_paths_of
from lensloop.catalog.models import SelectionItem, SelectionRound
from lensloop.catalog.queries import image_rows
from lensloop.errors import NotFoundError
from lensloop.service.api.deps import RoundId, State
from lensloop.service.api.explore import default_backbone
from lensloop.service.api.schemas import (
    RoundItemOut,
    RoundOut,
    RoundSummaryOut,
    SelectRequest,
    image_out,
)
from lensloop.service.state import ServiceState

__all__ = ["router"]

router = APIRouter(tags=["selection"])


def _round(state: ServiceState, round_id: int) -> RoundOut:
    with state.project.catalog.reader() as session:
        head = session.get(SelectionRound, round_id)
        if head is None:
            raise NotFoundError(f"no selection round {round_id}")
        items = session.execute(
            select(SelectionItem.rank, SelectionItem.image_id)
            .where(SelectionItem.round_id == round_id)
            .order_by(SelectionItem.rank)
        ).all()
        rows = image_rows(session, [image_id for _, image_id in items])
        strategy, created_at = head.strategy, head.created_at
    return RoundOut(
        id=round_id,
        strategy=strategy,
        created_at=created_at,
        items=[
            RoundItemOut(rank=int(rank), image=image_out(rows[image_id]))
            for rank, image_id in items
            if image_id in rows
        ],
    )


@router.post("/select", response_model=RoundOut, status_code=201, summary="Run a selection round")
def post_select(state: State, body: SelectRequest) -> RoundOut:
    """Choose the next images worth labelling (as ``lensloop select``) and record the round."""
    from lensloop.select.balance import parse_balance
    from lensloop.select.rounds import select_round
    from lensloop.select.strategy import parse_strategy

    parsed = parse_strategy(body.strategy)
    balance = parse_balance(body.balance) if body.balance else None
    result = select_round(
        state.project,
        body.n,
        body.strategy,
        parsed,
        backbone=default_backbone(state, body.backbone),
        seed=body.seed,
        balance=balance,
    )
    return _round(state, result.round_id)


@router.get(
    "/rounds", response_model=list[RoundSummaryOut], summary="Selection rounds, newest first"
)
def list_rounds(state: State) -> list[RoundSummaryOut]:
    with state.project.catalog.reader() as session:
        heads = session.execute(
            select(SelectionRound.id, SelectionRound.strategy, SelectionRound.created_at).order_by(
                SelectionRound.id.desc()
            )
        ).all()
        members: dict[int, list[int]] = {}
        for round_id, image_id in session.execute(
            select(SelectionItem.round_id, SelectionItem.image_id)
        ):
            members.setdefault(int(round_id), []).append(int(image_id))
        labelled = set(
            current_class_paths_of(session, sorted({i for ids in members.values() for i in ids}))
        )
    return [
        RoundSummaryOut(
            id=int(round_id),
            strategy=strategy,
            created_at=created_at,
            size=len(members.get(int(round_id), [])),
            labelled=sum(1 for i in members.get(int(round_id), []) if i in labelled),
        )
        for round_id, strategy, created_at in heads
    ]


@router.get("/rounds/{round_id}", response_model=RoundOut, summary="One round, as a queue")
def get_round(state: State, round_id: RoundId) -> RoundOut:
    return _round(state, round_id)
