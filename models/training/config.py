"""Training configuration: time split, LightGBM, calibration, MQL policy, registry."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.rules.scorecard import ScorecardConfig


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SplitConfig(_Frozen):
    """Shares of snapshot times, oldest first: train, validation, calibration, then test."""

    test_share: float = Field(0.2, gt=0, lt=1)
    calibration_share: float = Field(0.15, gt=0, lt=1)
    validation_share: float = Field(0.15, gt=0, lt=1)
    # Drop the snapshots whose label window runs into the test period, as it would in production:
    # at deployment only outcomes before the first test snapshot are known.
    embargo: bool = True

    @model_validator(mode="after")
    def _shares_leave_training_data(self) -> SplitConfig:
        if self.test_share + self.calibration_share + self.validation_share >= 0.9:
            raise ValueError("test, calibration and validation shares leave under 10% to train on")
        return self


class LightGBMConfig(_Frozen):
    # Small, regularised trees: on a held-out newest slice they beat bigger ones (lead data
    # are noisy; most of the signal is in a few interactions of fit and recent behaviour).
    learning_rate: float = Field(0.03, gt=0)
    num_leaves: int = Field(15, ge=2)
    # Shallow trees held out better here, and make per-lead reasons (TreeSHAP) cheaper. -1: none.
    max_depth: int = Field(4, ge=-1)
    min_child_samples: int = Field(200, ge=1)
    max_rounds: int = Field(2000, ge=1)
    # Early stopping on a drifting validation slice can stop after 2 rounds (one score for
    # everyone); fewer rounds than this are not kept.
    min_rounds: int = Field(50, ge=1)
    early_stopping_rounds: int = Field(100, ge=1)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    bagging_freq: int = Field(1, ge=0)
    lambda_l2: float = Field(1.0, ge=0)
    num_threads: int = Field(2, ge=1)
    seed: int = 0
    # Never let more engagement (counts of positive actions) lower the score.
    monotone_engagement: bool = False


class LogisticConfig(_Frozen):
    """The L2 logistic regression candidate, on one-hot bins of every feature."""

    # Numeric features are cut at most into this many quantile bins (plus one for missing).
    bins: int = Field(10, ge=2)
    # Inverse L2 strengths tried (scikit-learn's C); the lowest validation log loss wins.
    strengths: list[float] = Field([0.01, 0.03, 0.1, 0.3, 1.0], min_length=1)
    max_iter: int = Field(2000, ge=10)


class PolicyConfig(_Frozen):
    """How calibrated probabilities become MQLs, fixed on the calibration slice at training."""

    method: Literal[
        "rules_volume", "top_share", "capacity_per_week", "precision", "expected_value"
    ] = "rules_volume"
    top_share: float = Field(0.1, gt=0, lt=1, description="top_share: share of leads made MQL")
    capacity_per_week: int | None = Field(None, gt=0, description="leads sales can take a week")
    target_precision: float | None = Field(None, gt=0, lt=1, description="MQL-to-won rate wanted")
    deal_value: float | None = Field(None, gt=0, description="expected_value: value of a won deal")
    cost_per_contact: float | None = Field(None, gt=0, description="expected_value: cost per MQL")
    # Tiers by cumulative share of leads, best first: A is the top 5%, B the next 10%, ...
    tier_shares: dict[str, float] = {"A": 0.05, "B": 0.15, "C": 0.40}

    @model_validator(mode="after")
    def _parameters_present(self) -> PolicyConfig:
        needed = {
            "capacity_per_week": ["capacity_per_week"],
            "precision": ["target_precision"],
            "expected_value": ["deal_value", "cost_per_contact"],
        }.get(self.method, [])
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"policy method '{self.method}' needs {', '.join(missing)}")
        shares = list(self.tier_shares.values())
        if shares != sorted(shares) or not all(0 < s < 1 for s in shares):
            raise ValueError("tier_shares must be increasing cumulative shares between 0 and 1")
        return self


class TrainConfig(_Frozen):
    split: SplitConfig = SplitConfig()
    # holdout: the booster learns on the train slice and is calibrated on the calibration slice.
    # walk_forward (for small exports, a few thousand leads): the rounds are found the same way;
    # then the newest `walk_forward_share` of the rows before the test is cut into
    # `walk_forward_folds` time blocks, each scored by a booster trained on every older row (only
    # the past predicts the future, as in production), calibration learns from those scores, and
    # the final booster learns from every row before the test. The test stays unseen by all.
    strategy: Literal["holdout", "walk_forward"] = "holdout"
    walk_forward_folds: int = Field(3, ge=1)
    walk_forward_share: float = Field(0.5, gt=0, lt=1)
    # Under drift, newer rows can be made to count more: each row's weight halves every this
    # share of the rows before the test, counted back from the newest (e.g. 0.25: the oldest
    # quarter counts 1/16 as much). None: every row counts the same.
    recency_half_life_share: float | None = Field(None, gt=0)
    # Fit the calibrator on only the newest this share of the calibration rows (1: all).
    calibration_newest_share: float = Field(1.0, gt=0, le=1)
    # The suggested points table fitted to the model after training (logged beside it).
    scorecard: ScorecardConfig = ScorecardConfig()
    # Learners fitted on the same slices; the lowest log loss on the newest rows before the
    # test wins. "blend" averages the raw scores of the other two (and needs both fitted).
    candidates: list[Literal["lightgbm", "logistic", "blend"]] = Field(
        ["lightgbm", "logistic", "blend"], min_length=1
    )
    lightgbm: LightGBMConfig = LightGBMConfig()
    logistic: LogisticConfig = LogisticConfig()
    calibration_methods: list[Literal["isotonic", "sigmoid"]] = ["isotonic", "sigmoid"]
    policy: PolicyConfig = PolicyConfig()
    # Salesforce Einstein asks for 120 conversions; fewer cannot support an honest model.
    min_conversions: int = Field(120, ge=1)
    model_name: str = "leadscore"

    experiment: str = "leadscore"
    # A new model takes `champion` unless worse than it by more than this on the same holdout.
    promotion_tolerance: float = Field(0.002, ge=0)

    @property
    def base_candidates(self) -> list[str]:
        """The learners fitted on their own: a blend needs both of them."""
        wanted = set(self.candidates)
        if "blend" in wanted:
            wanted |= {"lightgbm", "logistic"}
        return [name for name in ("lightgbm", "logistic") if name in wanted]
