"""Published numbers from Table 4 of Liu et al. 2025 (arXiv:2503.20783, appendix B).

Greedy decoding, 3k-token generation budget unless ``@ 8k``. ``*`` rows use no prompt template.
Transcribed as printed in the paper; values are percentages.
"""

from __future__ import annotations

#: Display columns of the table, in the paper's order.
BENCH_COLUMNS = ["AIME24", "AMC", "MATH500", "Minerva", "OlympiadBench"]
AVG_COLUMN = "Avg."
SOURCE = "Liu et al. 2025, Table 4"

#: (model, AIME24, AMC, MATH500, Minerva, OlympiadBench, Avg.)
PAPER_TABLE4: list[tuple[str, float, float, float, float, float, float]] = [
    ("Qwen2.5-Math-1.5B", 20.0, 32.5, 33.0, 12.5, 22.8, 24.2),
    ("Qwen2.5-Math-1.5B*", 16.7, 43.4, 61.8, 15.1, 28.4, 33.1),
    ("Oat-Zero-1.5B", 20.0, 53.0, 74.2, 25.7, 37.6, 42.1),
    ("R1-Distill-Qwen-1.5B @ 3k", 2.5, 21.7, 52.2, 16.3, 17.3, 22.0),
    ("R1-Distill-Qwen-1.5B @ 8k", 20.0, 49.4, 77.4, 25.0, 35.8, 41.5),
    ("Qwen2.5-Math-1.5B-Instruct", 10.0, 48.2, 74.2, 26.5, 40.2, 39.8),
    ("Llama-3.2-3B", 0.0, 2.4, 6.4, 6.3, 1.3, 3.3),
    ("Llama-3.2-3B + Dr. GRPO", 3.3, 7.2, 10.0, 11.0, 2.2, 6.8),
    ("Llama-3.2-3B-FineMath", 0.0, 3.6, 18.4, 5.9, 2.2, 6.0),
    ("Llama-3.2-3B-FineMath + Dr. GRPO", 3.3, 10.8, 38.0, 12.9, 9.0, 14.8),
    ("Llama-3.2-3B-NuminaQA", 0.0, 0.0, 0.6, 0.0, 0.1, 0.14),
    ("Oat-Zero-3B (Llama-3.2-3B-NuminaQA + Dr. GRPO)", 6.7, 18.1, 50.0, 14.3, 14.7, 20.7),
    ("Llama-3.2-3B-Instruct", 6.7, 15.7, 38.8, 11.8, 12.6, 17.1),
    ("Qwen2.5-Math-7B", 16.7, 38.6, 50.6, 9.9, 16.6, 26.5),
    # AIME24 is printed as 0.2 in the paper although its Avg. (38.2) implies 20.0; kept as printed.
    ("Qwen2.5-Math-7B*", 0.2, 45.8, 69.0, 21.3, 34.7, 38.2),
    ("SimpleRL-Zero-7B", 26.7, 60.2, 78.2, 27.6, 40.3, 46.6),
    ("PRIME-Zero-7B", 16.7, 62.7, 83.8, 36.0, 40.9, 48.0),
    ("OpenReasoner-Zero-7B @ 3k", 13.3, 47.0, 79.2, 31.6, 44.0, 43.0),
    ("OpenReasoner-Zero-7B @ 8k", 13.3, 54.2, 82.4, 31.6, 47.9, 45.9),
    ("Oat-Zero-7B", 43.3, 62.7, 80.0, 30.1, 41.0, 51.4),
    ("R1-Distill-Qwen-7B @ 3k", 10.0, 26.2, 60.1, 23.0, 23.1, 28.5),
    ("R1-Distill-Qwen-7B @ 8k", 33.3, 68.4, 88.1, 35.9, 47.7, 54.7),
    ("Qwen2.5-Math-7B-Instruct", 16.7, 53.0, 83.6, 29.8, 42.7, 45.1),
]

#: ``--paper-rows oat``: only the paper's own models.
OAT_ROWS = {"Oat-Zero-1.5B", "Oat-Zero-3B (Llama-3.2-3B-NuminaQA + Dr. GRPO)", "Oat-Zero-7B"}

#: Benchmark names as logged (``eval/<bench>/accuracy``) -> table column. Several spellings are
#: accepted because benchmark names come from the eval config, not from a fixed list.
BENCH_ALIASES = {
    "aime": "AIME24",
    "aime24": "AIME24",
    "aime2024": "AIME24",
    "aime_2024": "AIME24",
    "amc": "AMC",
    "amc23": "AMC",
    "amc2023": "AMC",
    "math": "MATH500",
    "math500": "MATH500",
    "math_500": "MATH500",
    "math-500": "MATH500",
    "minerva": "Minerva",
    "minerva_math": "Minerva",
    "minervamath": "Minerva",
    "olympiad_bench": "OlympiadBench",
    "olympiadbench": "OlympiadBench",
    "olympiad": "OlympiadBench",
}


def paper_rows(which: str = "all") -> list[dict[str, object]]:
    """Table 4 rows as dicts (``name`` + the display columns); ``which`` is all, oat or none."""
    if which not in ("all", "oat", "none"):
        raise ValueError(f"paper rows must be all, oat or none, not {which!r}")
    rows = []
    for name, *values in PAPER_TABLE4:
        if which == "none" or (which == "oat" and name not in OAT_ROWS):
            continue
        rows.append({"name": name, **dict(zip([*BENCH_COLUMNS, AVG_COLUMN], values))})
    return rows
