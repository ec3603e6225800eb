"""Training configuration: the fields of the ``set_config`` tool.

This pydantic model is the single source of truth for the training knobs: the
``set_config`` tool schema, its validation and its usage text derive from it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class TrainConfig(BaseModel):
    """Hyper-parameters of one supervised fine-tuning run."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    method: Literal["lora", "full"] = Field("lora", description="LoRA adapters or full fine-tuning")
    learning_rate: float = Field(1e-3, gt=0, le=1.0, description="peak learning rate")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "linear", description="learning-rate schedule after warm-up")
    warmup_ratio: float = Field(0.0, ge=0, le=0.5, description="share of steps used for linear warm-up")
    num_epochs: float = Field(1.0, gt=0, le=20, description="passes over the training set (ignored when max_steps > 0)")
    max_steps: int = Field(0, ge=0, le=100_000, description="optimizer steps; 0 means use num_epochs")
    batch_size: int = Field(8, ge=1, le=256, description="sequences per optimizer step")
    max_len: int = Field(512, ge=16, le=8192, description="sequences are truncated to this many tokens")
    lora_r: int = Field(16, ge=1, le=512, description="LoRA rank")
    lora_alpha: int = Field(32, ge=1, le=2048, description="LoRA scaling numerator")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout")
    lora_targets: list[Literal[LORA_TARGETS]] | Literal["all-linear"] = Field(  # type: ignore[valid-type]
        "all-linear", description="modules that get LoRA adapters")
    weight_decay: float = Field(0.0, ge=0, le=1, description="AdamW weight decay")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="training seed (data order, init)")

    @model_validator(mode="after")
    def _targets_non_empty(self):
        if isinstance(self.lora_targets, list) and not self.lora_targets:
            raise ValueError("lora_targets must name at least one module or be 'all-linear'")
        return self
