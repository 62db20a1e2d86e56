"""Search outside the models: greedy, beam search and sampling over any ``step(tokens, state)``."""

from .search import (
    ATTENTION_KEY,
    BeamOptions,
    Hypothesis,
    SearchResult,
    beam_search,
    beam_search_with,
    expand_state,
    filter_logits,
    greedy,
    length_penalty_factor,
    map_state,
    sample,
    select_state,
)

__all__ = [
    "ATTENTION_KEY",
    "BeamOptions",
    "Hypothesis",
    "SearchResult",
    "beam_search",
    "beam_search_with",
    "expand_state",
    "filter_logits",
    "greedy",
    "length_penalty_factor",
    "map_state",
    "sample",
    "select_state",
]
