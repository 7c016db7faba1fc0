"""Request and response bodies of the serving app (pydantic models; they make the OpenAPI docs).

Ids are the ORIGINAL ids of the training data, as JSON strings or integers (``"196"`` and ``196``
both find user 196 of MovieLens, whose ids are numbers).
"""
from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

#: most users / items one request may ask for (bigger lists: several requests, or recommend_all)
MAX_IDS_PER_REQUEST = 10_000

Id = Union[StrictInt, StrictStr]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelled field is a 422, not silently ignored


class RecommendRequest(_Strict):
    """``POST /recommend``: top-k lists for several users."""

    users: List[Id] = Field(..., max_length=MAX_IDS_PER_REQUEST, description="original user ids",
                            examples=[["196", "186"]])
    k: StrictInt = Field(10, ge=1, description="items per user (1 .. number of items)")
    exclude_seen: StrictBool = Field(True, description="leave out items the user interacted with")
    unknown: Literal["error", "popular"] = Field(
        "error", description="unknown users: 'error' (404) or 'popular' (the most popular train items)")


class UserRecommendations(BaseModel):
    """One user's list, best first; shorter than k when fewer items are left to recommend."""

    user: Id
    items: List[Id]
    scores: List[float]
    fallback: Optional[Literal["popular"]] = Field(
        None, description="'popular' when the user is unknown and got the popularity fallback "
                          "(scores are then train interaction counts)")


class RecommendResponse(BaseModel):
    k: int
    results: List[UserRecommendations]


class SimilarItemsRequest(_Strict):
    """``POST /similar_items``: the most similar items to each given item (item-tower models)."""

    items: List[Id] = Field(..., max_length=MAX_IDS_PER_REQUEST, description="original item ids",
                            examples=[["50", "181"]])
    k: StrictInt = Field(10, ge=1, description="neighbours per item (1 .. number of items - 1)")


class ItemNeighbours(BaseModel):
    item: Id
    items: List[Id]
    scores: List[float]


class SimilarItemsResponse(BaseModel):
    k: int
    results: List[ItemNeighbours]


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    model: str
    base: str
    num_users: int = Field(..., description="users the model knows (padding excluded)")
    num_items: int = Field(..., description="items the model ranks (padding excluded)")
    ann: Optional[str] = Field(None, description="the ANN index answering top-k, or null (exact torch top-k)")
    similar_items: bool = Field(..., description="whether POST /similar_items works for this model")


class ScoreRequest(_Strict):
    """``POST /score`` (feature / CTR models): click probabilities of rows of RAW feature values."""

    rows: List[Dict[str, Any]] = Field(..., max_length=MAX_IDS_PER_REQUEST,
                                       description="one object per row: the user id, the item id and every context "
                                                   "field, as in the training data (GET /fields lists them)",
                                       examples=[[{"user_id": "u1", "item_id": "i3", "daytime": "morning"}]])


class ScoreResponse(BaseModel):
    probabilities: List[float] = Field(..., description="click probability of each row, in request order")
    oov: List[List[str]] = Field(..., description="per row, the fields whose value the model did not know "
                                                  "(scored with the out-of-vocabulary id 0)")


class RankRequest(_Strict):
    """``POST /rank`` (feature / CTR models): candidate items of one user ordered by click probability."""

    user: Id = Field(..., description="original user id (an unknown user is scored out of vocabulary)")
    items: List[Id] = Field(..., min_length=1, max_length=MAX_IDS_PER_REQUEST,
                            description="candidate item ids, each once (unknown items: 404)", examples=[["i3", "i7"]])
    context: Dict[str, Any] = Field(default_factory=dict,
                                    description="context field -> raw value; fields left out are absent (id 0 / 0)")
    k: Optional[StrictInt] = Field(None, ge=1, description="return the best k candidates only (null: all)")


class RankResponse(BaseModel):
    user: Id
    items: List[Id] = Field(..., description="the candidates, best first (ties in request order)")
    scores: List[float] = Field(..., description="their click probabilities")
    oov: List[str] = Field(..., description="user / context fields scored out of vocabulary")


class FieldsResponse(BaseModel):
    fields: Dict[str, Dict[str, Any]] = Field(..., description="raw field -> its type, role and encoding")
    from_ids: Dict[str, str] = Field(..., description="user / item feature fields the model reads from the ids "
                                                      "(not sent)")
    servable: bool
    unavailable: Optional[str] = None


class ErrorResponse(BaseModel):
    detail: str
