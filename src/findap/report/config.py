"""Recipe section for the report stage: how the report decides which differences to the base model it marks."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from findap.eval.uncertainty import N_BOOT


class ReportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    adjust: Literal["none", "holm", "bh"] = Field(
        "none", description="marks of the paired tests against the base model: none (each test's own 95% interval), "
        "holm (Holm-adjusted p-values over every test the report shows: family-wise error 5%) or bh "
        "(Benjamini-Hochberg: false discovery rate 5%)")
    n_boot: int = Field(N_BOOT, ge=100, description="bootstrap resamples per interval and paired test; the smallest "
                        "p-value they can give is 2/(n_boot+1), so an adjustment over m tests needs n_boot >= 40 m "
                        "for one strong difference to pass")
