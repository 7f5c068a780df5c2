"""UCI German credit (Hofmann 1994, `german.data`): one applicant per line, 21 space-separated values.

The first 20 are the attributes in code-book order, coded (`A11`: checking account below 0 DM) or numeric; the
last is the label, 1 good or 2 bad. `decode_row` gives each attribute's name and meaning in words plus the label
name. Curation's training prompts and FinEval's items both read these words, or the model would be scored on a
vocabulary it was not trained on; the train/eval split hashes the raw line.
"""
from __future__ import annotations

from findap.datasets import RowError

# Attribute names and code meanings from the UCI documentation of german.data, in column order. None = numeric.
ATTRIBUTES: list[tuple[str, dict[str, str] | None]] = [
    ("checking account", {"A11": "below 0 DM", "A12": "0 to 200 DM", "A13": "200 DM or more / salary",
                          "A14": "no checking account"}),
    ("duration in months", None),
    ("credit history", {"A30": "no credits taken / all paid back duly", "A31": "all credits at this bank paid back",
                        "A32": "existing credits paid back duly so far", "A33": "delays in paying off in the past",
                        "A34": "critical account / other credits elsewhere"}),
    ("purpose", {"A40": "new car", "A41": "used car", "A42": "furniture/equipment", "A43": "radio/television",
                 "A44": "domestic appliances", "A45": "repairs", "A46": "education", "A47": "vacation",
                 "A48": "retraining", "A49": "business", "A410": "other"}),
    ("credit amount (DM)", None),
    ("savings", {"A61": "below 100 DM", "A62": "100 to 500 DM", "A63": "500 to 1000 DM", "A64": "1000 DM or more",
                 "A65": "unknown / none"}),
    ("employed since", {"A71": "unemployed", "A72": "less than 1 year", "A73": "1 to 4 years",
                        "A74": "4 to 7 years", "A75": "7 years or more"}),
    ("installment rate (% of disposable income)", None),
    ("personal status and sex", {"A91": "male, divorced/separated", "A92": "female, divorced/separated/married",
                                 "A93": "male, single", "A94": "male, married/widowed", "A95": "female, single"}),
    ("other debtors / guarantors", {"A101": "none", "A102": "co-applicant", "A103": "guarantor"}),
    ("present residence since (years)", None),
    ("property", {"A121": "real estate", "A122": "building society savings / life insurance",
                  "A123": "car or other", "A124": "unknown / no property"}),
    ("age (years)", None),
    ("other installment plans", {"A141": "bank", "A142": "stores", "A143": "none"}),
    ("housing", {"A151": "rent", "A152": "own", "A153": "for free"}),
    ("existing credits at this bank", None),
    ("job", {"A171": "unemployed / unskilled non-resident", "A172": "unskilled resident",
             "A173": "skilled employee / official", "A174": "management / self-employed / highly qualified"}),
    ("people financially dependent on the applicant", None),
    ("telephone", {"A191": "none", "A192": "yes, registered"}),
    ("foreign worker", {"A201": "yes", "A202": "no"}),
]
LABELS = {"1": "good", "2": "bad"}


def decode_row(values: list[str]) -> tuple[list[tuple[str, str]], str]:
    """20 coded attributes + the 1/2 label -> ([(attribute, meaning), ...], 'good' | 'bad'); RowError names the
    attribute that does not follow the code book."""
    if len(values) != len(ATTRIBUTES) + 1:
        raise RowError("row", f"expected {len(ATTRIBUTES) + 1} space-separated values, got {len(values)}")
    decoded = []
    for (name, codes), value in zip(ATTRIBUTES, values):
        if codes is None and not value.isdigit():
            raise RowError(name, f"expected a number, got {value!r}")
        if codes is not None and value not in codes:
            raise RowError(name, f"unknown code {value!r}")
        decoded.append((name, codes[value] if codes else value))
    if values[-1] not in LABELS:
        raise RowError("label", f"{values[-1]!r} is not 1 (good) or 2 (bad)")
    return decoded, LABELS[values[-1]]
