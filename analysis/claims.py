"""The claims registry: each finding of Liu et al. (2025) that r1zero checks against its own runs.

One :class:`Claim` per finding and testbed (``<finding>@<experiment>``). A claim names the runs it reads (a
selector on the runs' configs, :class:`Select`), the two arms it compares, the metric and the per-run statistic,
and what counts as holding (the effect, arm A minus arm B, against a threshold). ``python -m r1zero_analysis claims
--runs results/`` evaluates every claim (:mod:`r1zero_analysis.verdicts`): the effect, a 95% bootstrap interval over
seeds, the seeds per arm, and PASS, FAIL, INCONCLUSIVE or NOT RUN. A claim that does not hold is reported, never
dropped: add a claim here, never remove one because it fails.

Selectors read the run's resolved ``config.yaml`` by dotted key (``algo.name``, ``model.name``) and the Hydra
choices of its ``.hydra/hydra.yaml`` as ``choices.<group>`` (``choices.experiment``: ``length_bias``, ``laptop``);
a value may be a list (any of them).

Per-run statistics (:data:`r1zero_analysis.verdicts.STATISTICS`):

* ``growth``: mean of the metric over the last quarter of the logged steps minus its mean over the first 3 steps
  (a seed's initial policy is the same under every algorithm, so the runs start alike);
* ``last_quarter``: mean over the last quarter of the logged steps;
* ``final``: the value at the last step that logged the metric (an eval metric: the last evaluation);
* ``initial``: the value at the first step that logged it (an eval metric with ``eval.at_start``: step 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Selector = dict[str, object]


@dataclass(frozen=True)
class Claim:
    """One checked finding.

    ``kind="difference"``: effect = mean over arm A's seeds minus mean over arm B's, of ``statistic`` of
    ``metric`` per run; paired by seed when both arms ran the same seeds. It holds when the effect is above
    ``threshold``: PASS when the whole 95% interval is, FAIL when the whole interval is at or below it,
    INCONCLUSIVE when it straddles it or an arm has fewer than ``min_seeds`` seeds.

    ``kind="duet"``: Fig. 6's template/question-set duet. For each question set (``data.name``) and each pair of
    templates whose ``initial`` accuracy differs (95% interval of the gap above 0), the effect is the far
    template's ``final`` accuracy minus the near template's ``initial`` one (RL rebuilt what the mismatched
    template destroyed). The claim reports the pair with the highest interval and holds when that is above
    ``threshold``.

    ``kind="expectation"``: one arm's statistic against a reference value: effect = mean over seeds of ``statistic``
    minus ``expected``; holds above ``threshold``. For a paper number that users with GPUs check their runs against,
    ``expected`` is the paper's value and ``threshold`` a tolerance below it (NOT RUN until such runs exist); for a
    direction (incorrect responses grow), ``expected`` is 0.
    """

    id: str
    source: str                 # where the paper shows it: figure, table or section
    statement: str              # the finding in one sentence
    select: Selector            # the runs this claim reads
    metric: str
    statistic: Literal["growth", "last_quarter", "final", "initial"]
    kind: Literal["difference", "duet", "expectation"] = "difference"
    arm_a: Selector = field(default_factory=dict)
    arm_b: Selector = field(default_factory=dict)
    threshold: float = 0.0      # holds when effect > threshold
    expected: float | None = None  # kind="expectation": the paper's value
    min_seeds: int = 3          # per arm; fewer is INCONCLUSIVE
    unit: str = ""

    @property
    def finding(self) -> str:
        """The finding's name without its testbed (``length_bias`` for ``length_bias@laptop``)."""
        return self.id.split("@")[0]


GRPO, DRGRPO = {"algo.name": "grpo"}, {"algo.name": "drgrpo"}
NO_STD, NO_LEN = {"algo.name": "grpo_no_std_norm"}, {"algo.name": "grpo_no_len_norm"}
INCORRECT_LENGTH = "rollout/response_length_incorrect"


def _testbed_claims(experiment: str, accuracy_metric: str | None) -> list[Claim]:
    """The Fig. 5 / Fig. 8 claims on one testbed (``choices.experiment``)."""
    where = {"choices.experiment": experiment}
    claims = [
        Claim(f"length_bias@{experiment}", "Fig. 5", "Under GRPO incorrect responses grow longer than under Dr. GRPO",
              where, INCORRECT_LENGTH, "growth", arm_a=GRPO, arm_b=DRGRPO, unit="tokens"),
        Claim(f"grpo_incorrect_grows@{experiment}", "Fig. 5", "Under GRPO incorrect responses grow longer over training "
              "(growth above 0)", {**where, **GRPO}, INCORRECT_LENGTH, "growth", kind="expectation", expected=0.0,
              min_seeds=3, unit="tokens"),
        Claim(f"length_bias_cause@{experiment}", "Fig. 8",
              "The length normaliser causes it: incorrect responses grow more under GRPO -std-norm (1/|o| kept) "
              "than under GRPO -len-norm (1/|o| removed)",
              where, INCORRECT_LENGTH, "growth", arm_a=NO_STD, arm_b=NO_LEN, unit="tokens"),
        Claim(f"length_bias_finished@{experiment}", "Fig. 5",
              "The same, counting only incorrect responses that ended on their own (truncated ones score 0 for "
              "their length)",
              where, "rollout/response_length_incorrect_finished", "growth", arm_a=GRPO, arm_b=DRGRPO, unit="tokens"),
        Claim(f"drgrpo_token_efficiency@{experiment}", "Fig. 5, Fig. 7 (right)",
              "Dr. GRPO's responses end shorter than GRPO's (mean length over the last quarter, GRPO minus Dr. GRPO)",
              where, "rollout/response_length_mean", "last_quarter", arm_a=GRPO, arm_b=DRGRPO, unit="tokens"),
    ]
    if accuracy_metric:
        claims.append(Claim(
            f"drgrpo_accuracy@{experiment}", "Fig. 5 (bottom)",
            "Dr. GRPO's final held-out accuracy is not lower than GRPO's by more than 0.05 (non-inferiority)",
            where, accuracy_metric, "final", arm_a=DRGRPO, arm_b=GRPO, threshold=-0.05))
    return claims


#: The objective presets beyond the paper (sweep=objectives, docs/objectives.md) and where each comes from.
OBJECTIVES = {"rloo": "RLOO, arXiv 2402.14740", "dapo": "DAPO, arXiv 2503.14476", "gspo": "GSPO, arXiv 2507.18071",
              "cispo": "CISPO, arXiv 2506.13585", "reinforce_pp": "REINFORCE++, arXiv 2501.03262",
              "lite_ppo": "Lite PPO, arXiv 2508.08221"}


def _objective_claims(experiment: str) -> list[Claim]:
    """Each preset of sweep=objectives against Dr. GRPO (sweep=ablation's arm) on one testbed: accuracy, and the
    length of incorrect responses (whether its loss aggregation shows the length bias Dr. GRPO removes)."""
    where = {"choices.experiment": experiment}
    out = []
    for name, source in OBJECTIVES.items():
        preset = {"algo.name": name}
        out.append(Claim(f"{name}_accuracy@{experiment}", source,
                         f"{name}'s final held-out accuracy is not lower than Dr. GRPO's by more than 0.05 "
                         "(non-inferiority)", where, "eval/average/accuracy", "final", arm_a=preset, arm_b=DRGRPO,
                         threshold=-0.05))
        out.append(Claim(f"{name}_length_bias@{experiment}", f"{source}; Fig. 5",
                         f"Incorrect responses grow longer under {name} than under Dr. GRPO", where,
                         INCORRECT_LENGTH, "growth", arm_a=preset, arm_b=DRGRPO, unit="tokens"))
    return out


def _paper_scale(sweep: str, model: str, average: float, per_bench: dict[str, float], base: str) -> list[Claim]:
    """Table 4's row of a paper model: the five-benchmark average and each benchmark, within 2 points."""
    where = {"choices.sweep": sweep, "model.name": model, "algo.name": "drgrpo"}
    out = [Claim(f"table4_average@{sweep}", "Table 4",
                 f"{sweep} averages {average} over AIME24, AMC, MATH500, Minerva and OlympiadBench (from {base})",
                 where, "eval/average/accuracy", "final", kind="expectation", expected=average / 100,
                 threshold=-0.02, min_seeds=1)]
    for bench, value in per_bench.items():
        out.append(Claim(f"table4_{bench}@{sweep}", "Table 4", f"{sweep} scores {value} on {bench}", where,
                         f"eval/{bench}/accuracy", "final", kind="expectation", expected=value / 100,
                         threshold=-0.02, min_seeds=1))
    return out


#: Every claim, in the order docs/claims.md lists them.
CLAIMS: list[Claim] = [
    # The mechanism (experiment=length_bias): the tiny random model, a length-free reward; no held-out accuracy.
    *_testbed_claims("length_bias", accuracy_metric=None),
    # The real-model laptop testbed (experiment=laptop): SmolLM2-135M-Instruct on generated arithmetic.
    *_testbed_claims("laptop", accuracy_metric="eval/average/accuracy"),
    # The duet at laptop scale: sweep=duet experiment=laptop_duet (templates x question sets of the laptop testbed).
    Claim("duet@laptop_duet", "Fig. 6",
          "A template far from the model's habits starts lower, and RL rebuilds the accuracy the near template "
          "started with (far final minus near initial, best pair)",
          {"choices.experiment": "laptop_duet", "choices.sweep": "duet"}, "eval/average/accuracy", "final",
          kind="duet"),
    # Beyond the paper: the objective presets on the laptop testbed (sweep=objectives experiment=laptop).
    *_objective_claims("laptop"),
    # Paper scale (GPU): the paper's numbers as expectations.
    *_paper_scale("oat_zero_1.5b", "qwen_math15", 42.1,
                  {"aime": 20.0, "amc": 53.0, "math500": 74.2, "minerva": 25.7, "olympiad": 37.6},
                  "24.2 with no template, 33.1 with the best"),
    *_paper_scale("oat_zero_7b", "qwen_math7", 51.4,
                  {"aime": 43.3, "amc": 62.7, "math500": 80.0, "minerva": 30.1, "olympiad": 41.0},
                  "the base Qwen2.5-Math-7B"),
]
