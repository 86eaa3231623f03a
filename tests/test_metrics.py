"""Word counts and answer F1: Unicode-aware, unlike the article's ASCII regex."""

from __future__ import annotations

import pytest

from raq.core.metrics import average_ranks, best_f1, count_words, normalize_answer, token_f1


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("The quick brown fox.", 4),
        ("It's 3.5 km away—isn't it?", 6),
        ("state-of-the-art models", 2),
        ("北京是中国的首都", 8),
        ("Tokyo は日本の首都です", 9),
        ("Ünïcödé wörds çount", 3),
        ("", 0),
        ("  ...  !!! ", 0),
    ],
)
def test_count_words(text: str, words: int) -> None:
    assert count_words(text) == words


def test_normalize_answer_follows_squad() -> None:
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("«Paris»,") == "paris"


def test_token_f1() -> None:
    assert token_f1("the Eiffel Tower", "Eiffel Tower") == 1.0
    assert token_f1("Paris", "London") == 0.0
    assert token_f1("in Paris France", "Paris") == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))


def test_best_f1_takes_the_max_over_acceptable_answers() -> None:
    assert best_f1("July 1969", ("1969", "July 1969")) == 1.0


def test_f1_on_cjk_counts_characters() -> None:
    assert token_f1("北京", "北京市") == pytest.approx(0.8)


def test_average_ranks_share_ties() -> None:
    assert average_ranks({"a": 0.9, "b": 0.5, "c": 0.5, "d": 0.1}) == {
        "a": 1.0,
        "b": 2.5,
        "c": 2.5,
        "d": 4.0,
    }
