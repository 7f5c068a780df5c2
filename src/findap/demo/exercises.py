"""Finance calculation exercises with computed answers and step-by-step solutions.

Answers are verifiable, which is what outcome and process reward models need (GenORM checks the final
answer, GenPRM looks for the first wrong step). Every exercise is a dict

    {"id", "question", "answer" (float), "unit", "solution", "topic", "params"}

where `solution` is a chain of "Step k: what = arithmetic = value" lines ending in "Answer: <number>"
(see worksheet.py), and `params` holds the sampled inputs so the worked solution can be rebuilt or tampered.

Generation is deterministic and prefix-stable: exercise i of seed s depends only on (s, i), so
`generate_exercises(10, 0)` is the first ten rows of `generate_exercises(500, 0)`.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable

from findap.demo.worksheet import Worksheet, round_answer, show

PEOPLE = ["Maya", "Tomas", "Priya", "Kenji", "Amara", "Lucas", "Fatima", "Oliver", "Ingrid", "Diego", "Mei", "Samuel"]
COMPANIES = [
    "Northwind Robotics", "Bluefin Foods", "Cedar Ridge Utilities", "Alder Pharmaceuticals", "Kestrel Logistics",
    "Ironvale Mining", "Lumen Retail", "Solace Software", "Pinecrest Bank", "Tidewater Shipping",
    "Granite Peak Cement", "Orchid Telecom",
]
PRODUCTS = ["desk lamps", "bicycles", "coffee grinders", "backpacks", "phone cases", "garden chairs", "water filters"]
# (from, via, to, from->via rate, via->to rate): roughly realistic cross rates; the via currency is the US dollar.
CROSSES = [
    ("EUR", "USD", "JPY", [1.05, 1.08, 1.1, 1.12], [140.5, 145.2, 149.8, 152.4]),
    ("GBP", "USD", "CAD", [1.22, 1.26, 1.29, 1.31], [1.33, 1.35, 1.37, 1.39]),
    ("AUD", "USD", "CHF", [0.63, 0.65, 0.67, 0.69], [0.84, 0.87, 0.89, 0.91]),
    ("USD", "USD", "MXN", [1.0], [16.8, 17.4, 18.1, 19.6]),
]


def _money(x: float) -> str:
    return f"${x:,.2f}" if not float(x).is_integer() else f"${int(x):,}"


def _millions(x: float) -> str:
    amount = f"{int(x):,}" if float(x).is_integer() else show(x)
    return f"${amount} million"


def _possessive(name: str) -> str:
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def _steps(lo: float, hi: float, step: float) -> list[float]:
    """Evenly spaced candidate values, so sampled inputs are round numbers a textbook would use."""
    count = int(round((hi - lo) / step)) + 1
    return [round(lo + i * step, 6) for i in range(count)]


# Each topic: sample(rng) -> params, ask(params) -> question, work(params, ws) -> final value, unit(params).


def _simple_interest(rng: random.Random) -> dict:
    return {"name": rng.choice(PEOPLE), "principal": rng.choice(_steps(1000, 50000, 500)),
            "rate": rng.choice(_steps(1.5, 9, 0.25)), "years": rng.randint(1, 10)}


def _ask_simple_interest(p: dict) -> str:
    return (f"{p['name']} deposits {_money(p['principal'])} in an account that pays {show(p['rate'])}% simple "
            f"interest per year. What is the account balance after {p['years']} years?")


def _work_simple_interest(p: dict, ws: Worksheet) -> float:
    r = ws.step("Rate as a decimal", f"{show(p['rate'])} / 100", p["rate"] / 100)
    interest = ws.step("Interest earned", f"{show(p['principal'])} × {show(r)} × {p['years']}",
                       p["principal"] * r * p["years"])
    return ws.step("Balance", f"{show(p['principal'])} + {show(interest)}", p["principal"] + interest)


COMPOUNDING = {1: "annually", 4: "quarterly", 12: "monthly"}


def _compound_interest(rng: random.Random) -> dict:
    return {"name": rng.choice(PEOPLE), "principal": rng.choice(_steps(1000, 40000, 1000)),
            "rate": rng.choice(_steps(2, 9, 0.5)), "per_year": rng.choice([1, 4, 12]), "years": rng.randint(2, 15)}


def _ask_compound_interest(p: dict) -> str:
    return (f"{p['name']} invests {_money(p['principal'])} at {show(p['rate'])}% per year, compounded "
            f"{COMPOUNDING[p['per_year']]}. What is the investment worth after {p['years']} years?")


def _work_compound_interest(p: dict, ws: Worksheet) -> float:
    r = ws.step("Annual rate as a decimal", f"{show(p['rate'])} / 100", p["rate"] / 100)
    i = ws.step("Rate per period", f"{show(r)} / {p['per_year']}", r / p["per_year"])
    n = ws.step("Number of periods", f"{p['per_year']} × {p['years']}", p["per_year"] * p["years"], whole=True)
    growth = ws.step("Growth factor", f"(1 + {show(i)})^{show(n)}", (1 + i) ** n)
    return ws.step("Future value", f"{show(p['principal'])} × {show(growth)}", p["principal"] * growth)


def _present_value(rng: random.Random) -> dict:
    return {"name": rng.choice(PEOPLE), "target": rng.choice(_steps(5000, 100000, 2500)),
            "rate": rng.choice(_steps(2, 10, 0.5)), "years": rng.randint(2, 20)}


def _ask_present_value(p: dict) -> str:
    return (f"{p['name']} wants to have {_money(p['target'])} in {p['years']} years. With an annual return of "
            f"{show(p['rate'])}%, compounded annually, how much must be invested today?")


def _work_present_value(p: dict, ws: Worksheet) -> float:
    r = ws.step("Rate as a decimal", f"{show(p['rate'])} / 100", p["rate"] / 100)
    factor = ws.step("Compounding factor", f"(1 + {show(r)})^{p['years']}", (1 + r) ** p["years"])
    return ws.step("Present value", f"{show(p['target'])} / {show(factor)}", p["target"] / factor)


def _loan_payment(rng: random.Random) -> dict:
    if rng.random() < 0.5:
        return {"kind": "mortgage", "principal": rng.choice(_steps(100000, 500000, 5000)),
                "rate": rng.choice(_steps(3, 8, 0.25)), "years": rng.choice([15, 20, 25, 30])}
    return {"kind": "car loan", "principal": rng.choice(_steps(8000, 45000, 500)),
            "rate": rng.choice(_steps(2.5, 11, 0.5)), "years": rng.randint(2, 6)}


def _ask_loan_payment(p: dict) -> str:
    return (f"A {p['years']}-year {p['kind']} of {_money(p['principal'])} carries an annual interest rate of "
            f"{show(p['rate'])}%, with fixed monthly payments and monthly compounding. What is the monthly payment?")


def _work_loan_payment(p: dict, ws: Worksheet) -> float:
    r = ws.step("Annual rate as a decimal", f"{show(p['rate'])} / 100", p["rate"] / 100)
    i = ws.step("Monthly rate", f"{show(r)} / 12", r / 12)
    n = ws.step("Number of payments", f"12 × {p['years']}", 12 * p["years"], whole=True)
    discount = ws.step("Discount term", f"(1 + {show(i)})^-{show(n)}", (1 + i) ** -n)
    denominator = ws.step("Annuity denominator", f"1 - {show(discount)}", 1 - discount)
    return ws.step("Monthly payment", f"{show(p['principal'])} × {show(i)} / {show(denominator)}",
                   p["principal"] * i / denominator)


def _bond_price(rng: random.Random) -> dict:
    return {"issuer": rng.choice(COMPANIES), "face": rng.choice([1000, 1000, 100, 5000]),
            "coupon": rng.choice(_steps(2, 8, 0.5)), "yield": rng.choice(_steps(2, 9, 0.25)),
            "years": rng.randint(2, 15)}


def _ask_bond_price(p: dict) -> str:
    return (f"A bond issued by {p['issuer']} has a face value of {_money(p['face'])}, pays a coupon of "
            f"{show(p['coupon'])}% of face value once a year and matures in {p['years']} years. If the market "
            f"yield is {show(p['yield'])}% per year, what is the bond's price?")


def _work_bond_price(p: dict, ws: Worksheet) -> float:
    coupon = ws.step("Annual coupon", f"{show(p['face'])} × {show(p['coupon'])} / 100", p["face"] * p["coupon"] / 100)
    y = ws.step("Yield as a decimal", f"{show(p['yield'])} / 100", p["yield"] / 100)
    discount = ws.step("Discount term", f"(1 + {show(y)})^-{p['years']}", (1 + y) ** -p["years"])
    annuity = ws.step("Annuity factor", f"(1 - {show(discount)}) / {show(y)}", (1 - discount) / y)
    coupons = ws.step("Value of the coupons", f"{show(coupon)} × {show(annuity)}", coupon * annuity)
    face = ws.step("Value of the face amount", f"{show(p['face'])} × {show(discount)}", p["face"] * discount)
    return ws.step("Bond price", f"{show(coupons)} + {show(face)}", coupons + face)


def _percentage_change(rng: random.Random) -> dict:
    old = rng.choice(_steps(12, 240, 0.5))
    new = round(old * rng.choice(_steps(0.55, 1.6, 0.01)), 2)
    if new == old:
        new = round(old + 1.5, 2)
    return {"company": rng.choice(COMPANIES), "old": old, "new": new}


def _ask_percentage_change(p: dict) -> str:
    return (f"Shares of {p['company']} closed at {_money(p['old'])} last month and at {_money(p['new'])} today. "
            "What is the percentage change in the share price?")


def _work_percentage_change(p: dict, ws: Worksheet) -> float:
    change = ws.step("Price change", f"{show(p['new'])} - {show(p['old'])}", p["new"] - p["old"])
    relative = ws.step("Relative change", f"{show(change)} / {show(p['old'])}", change / p["old"])
    return ws.step("Percentage change", f"{show(relative)} × 100", relative * 100)


def _pe_ratio(rng: random.Random) -> dict:
    income, shares = rng.choice(_steps(20, 900, 5)), rng.choice(_steps(10, 400, 5))
    # The price is drawn around a realistic multiple (6x to 40x earnings) so ratios look like real ones.
    price = round(income / shares * rng.choice(_steps(6, 40, 0.5)), 2)
    return {"company": rng.choice(COMPANIES), "net_income": income, "shares": shares, "price": max(price, 1.0)}


def _ask_pe_ratio(p: dict) -> str:
    return (f"{p['company']} earned a net income of {_millions(p['net_income'])} last year and has "
            f"{show(p['shares'])} million shares outstanding. Its share price is {_money(p['price'])}. "
            "What is its price-to-earnings ratio?")


def _work_pe_ratio(p: dict, ws: Worksheet) -> float:
    eps = ws.step("Earnings per share", f"{show(p['net_income'])} / {show(p['shares'])}",
                  p["net_income"] / p["shares"])
    return ws.step("P/E ratio", f"{show(p['price'])} / {show(eps)}", p["price"] / eps)


def _dividend_yield(rng: random.Random) -> dict:
    return {"company": rng.choice(COMPANIES), "quarterly": rng.choice(_steps(0.1, 1.6, 0.02)),
            "price": rng.choice(_steps(15, 220, 0.5))}


def _ask_dividend_yield(p: dict) -> str:
    return (f"{p['company']} pays a dividend of {_money(p['quarterly'])} per share every quarter, and its shares "
            f"trade at {_money(p['price'])}. What is the annual dividend yield in percent?")


def _work_dividend_yield(p: dict, ws: Worksheet) -> float:
    annual = ws.step("Annual dividend", f"{show(p['quarterly'])} × 4", p["quarterly"] * 4)
    return ws.step("Dividend yield", f"{show(annual)} / {show(p['price'])} × 100", annual / p["price"] * 100)


def _roe(rng: random.Random) -> dict:
    start = rng.choice(_steps(200, 5000, 50))
    return {"company": rng.choice(COMPANIES), "net_income": round(start * rng.choice(_steps(0.03, 0.25, 0.01)), 1),
            "equity_start": start, "equity_end": round(start * rng.choice(_steps(0.9, 1.3, 0.02)))}


def _ask_roe(p: dict) -> str:
    return (f"{p['company']} reported net income of {_millions(p['net_income'])}. Shareholders' equity was "
            f"{_millions(p['equity_start'])} at the start of the year and {_millions(p['equity_end'])} at "
            "the end. Using average equity, what is the return on equity in percent?")


def _work_roe(p: dict, ws: Worksheet) -> float:
    average = ws.step("Average equity", f"({show(p['equity_start'])} + {show(p['equity_end'])}) / 2",
                      (p["equity_start"] + p["equity_end"]) / 2)
    return ws.step("Return on equity", f"{show(p['net_income'])} / {show(average)} × 100",
                   p["net_income"] / average * 100)


def _gross_margin(rng: random.Random) -> dict:
    revenue = rng.choice(_steps(50, 3000, 10))
    return {"company": rng.choice(COMPANIES), "revenue": revenue,
            "cogs": round(revenue * rng.choice(_steps(0.3, 0.9, 0.01)), 1)}


def _ask_gross_margin(p: dict) -> str:
    return (f"{p['company']} had revenue of {_millions(p['revenue'])} and cost of goods sold of "
            f"{_millions(p['cogs'])}. What is its gross margin in percent?")


def _work_gross_margin(p: dict, ws: Worksheet) -> float:
    profit = ws.step("Gross profit", f"{show(p['revenue'])} - {show(p['cogs'])}", p["revenue"] - p["cogs"])
    return ws.step("Gross margin", f"{show(profit)} / {show(p['revenue'])} × 100", profit / p["revenue"] * 100)


def _break_even(rng: random.Random) -> dict:
    variable = rng.choice(_steps(4, 120, 0.5))
    price = round(variable * rng.choice(_steps(1.2, 3, 0.05)), 2)
    return {"product": rng.choice(PRODUCTS), "fixed": rng.choice(_steps(10000, 500000, 2500)),
            "price": price, "variable": variable}


def _ask_break_even(p: dict) -> str:
    return (f"A workshop making {p['product']} has fixed costs of {_money(p['fixed'])} a year. Each unit sells for "
            f"{_money(p['price'])} and costs {_money(p['variable'])} in materials and labour. How many units must it "
            "sell in a year to break even?")


def _work_break_even(p: dict, ws: Worksheet) -> float:
    margin = ws.step("Contribution margin per unit", f"{show(p['price'])} - {show(p['variable'])}",
                     p["price"] - p["variable"])
    units = ws.step("Units to cover fixed costs", f"{show(p['fixed'])} / {show(margin)}", p["fixed"] / margin)
    # A fraction of a unit cannot be sold, so the break-even count rounds up.
    return ws.step("Round up to whole units", f"ceil({show(units)})", math.ceil(units - 1e-9), whole=True)


def _currency(rng: random.Random) -> dict:
    source, via, target, first_rates, second_rates = rng.choice(CROSSES)
    return {"name": rng.choice(PEOPLE), "amount": rng.choice(_steps(200, 20000, 100)), "source": source,
            "via": via, "target": target, "first_rate": rng.choice(first_rates),
            "second_rate": rng.choice(second_rates), "fee": rng.choice([0.25, 0.5, 0.75, 1.0, 1.5])}


def _ask_currency(p: dict) -> str:
    if p["source"] == p["via"]:
        rates = f"The rate is 1 {p['via']} = {show(p['second_rate'])} {p['target']}"
    else:
        rates = (f"The rates are 1 {p['source']} = {show(p['first_rate'])} {p['via']} and "
                 f"1 {p['via']} = {show(p['second_rate'])} {p['target']}")
    return (f"{p['name']} converts {p['amount']:,.0f} {p['source']} into {p['target']}. {rates}, and "
            f"the bank keeps a fee of {show(p['fee'])}% of the converted amount. How many {p['target']} does "
            f"{p['name']} receive?")


def _work_currency(p: dict, ws: Worksheet) -> float:
    value = p["amount"]
    if p["source"] != p["via"]:
        value = ws.step(f"Amount in {p['via']}", f"{show(p['amount'])} × {show(p['first_rate'])}",
                        p["amount"] * p["first_rate"])
    gross = ws.step(f"Amount in {p['target']}", f"{show(value)} × {show(p['second_rate'])}", value * p["second_rate"])
    fee = ws.step("Bank fee", f"{show(gross)} × {show(p['fee'])} / 100", gross * p["fee"] / 100)
    return ws.step("Amount received", f"{show(gross)} - {show(fee)}", gross - fee)


def _cagr(rng: random.Random) -> dict:
    start = rng.choice(_steps(5, 900, 5))
    return {"company": rng.choice(COMPANIES), "start": start,
            "end": round(start * rng.choice(_steps(0.6, 4, 0.05)), 1), "years": rng.randint(2, 10)}


def _ask_cagr(p: dict) -> str:
    return (f"{_possessive(p['company'])} annual revenue grew from {_millions(p['start'])} to {_millions(p['end'])} "
            f"over {p['years']} years. What was its compound annual growth rate in percent?")


def _work_cagr(p: dict, ws: Worksheet) -> float:
    multiple = ws.step("Growth multiple", f"{show(p['end'])} / {show(p['start'])}", p["end"] / p["start"])
    factor = ws.step("Yearly growth factor", f"{show(multiple)}^(1 / {p['years']})", multiple ** (1 / p["years"]))
    return ws.step("CAGR", f"({show(factor)} - 1) × 100", (factor - 1) * 100)


def _gordon(rng: random.Random) -> dict:
    growth = rng.choice(_steps(1, 5, 0.5))
    return {"company": rng.choice(COMPANIES), "dividend": rng.choice(_steps(0.5, 6, 0.1)), "growth": growth,
            "required": growth + rng.choice(_steps(2, 8, 0.5))}


def _ask_gordon(p: dict) -> str:
    return (f"{p['company']} just paid an annual dividend of {_money(p['dividend'])} per share. Dividends are "
            f"expected to grow {show(p['growth'])}% a year forever, and investors require a {show(p['required'])}% "
            "return. What is the share's value under the constant-growth dividend discount model?")


def _work_gordon(p: dict, ws: Worksheet) -> float:
    nxt = ws.step("Next year's dividend", f"{show(p['dividend'])} × (1 + {show(p['growth'])} / 100)",
                  p["dividend"] * (1 + p["growth"] / 100))
    spread = ws.step("Required return minus growth", f"({show(p['required'])} - {show(p['growth'])}) / 100",
                     (p["required"] - p["growth"]) / 100)
    return ws.step("Share value", f"{show(nxt)} / {show(spread)}", nxt / spread)


def _wacc(rng: random.Random) -> dict:
    return {"company": rng.choice(COMPANIES), "equity": rng.choice(_steps(100, 5000, 50)),
            "debt": rng.choice(_steps(50, 3000, 50)), "cost_equity": rng.choice(_steps(7, 14, 0.5)),
            "cost_debt": rng.choice(_steps(3, 8, 0.25)), "tax": rng.choice([15, 20, 21, 25, 30])}


def _ask_wacc(p: dict) -> str:
    return (f"{p['company']} has equity worth {_millions(p['equity'])} and debt worth {_millions(p['debt'])} "
            f"at market value. Its cost of equity is {show(p['cost_equity'])}%, its pre-tax cost of debt is "
            f"{show(p['cost_debt'])}% and its tax rate is {p['tax']}%. What is its weighted average cost of capital "
            "in percent?")


def _work_wacc(p: dict, ws: Worksheet) -> float:
    total = ws.step("Total capital", f"{show(p['equity'])} + {show(p['debt'])}", p["equity"] + p["debt"])
    w_equity = ws.step("Equity weight", f"{show(p['equity'])} / {show(total)}", p["equity"] / total)
    w_debt = ws.step("Debt weight", f"{show(p['debt'])} / {show(total)}", p["debt"] / total)
    after_tax = ws.step("After-tax cost of debt", f"{show(p['cost_debt'])} × (1 - {p['tax']} / 100)",
                        p["cost_debt"] * (1 - p["tax"] / 100))
    return ws.step("WACC", f"{show(w_equity)} × {show(p['cost_equity'])} + {show(w_debt)} × {show(after_tax)}",
                   w_equity * p["cost_equity"] + w_debt * after_tax)


def _real_rate(rng: random.Random) -> dict:
    return {"name": rng.choice(PEOPLE), "nominal": rng.choice(_steps(1, 12, 0.25)),
            "inflation": rng.choice(_steps(0.5, 9, 0.25))}


def _ask_real_rate(p: dict) -> str:
    return (f"{_possessive(p['name'])} savings account pays {show(p['nominal'])}% a year while inflation runs at "
            f"{show(p['inflation'])}% a year. Using the exact Fisher relation, what is the real interest rate in "
            "percent?")


def _work_real_rate(p: dict, ws: Worksheet) -> float:
    nominal = ws.step("Nominal growth factor", f"1 + {show(p['nominal'])} / 100", 1 + p["nominal"] / 100)
    prices = ws.step("Price level factor", f"1 + {show(p['inflation'])} / 100", 1 + p["inflation"] / 100)
    real = ws.step("Real growth factor", f"{show(nominal)} / {show(prices)}", nominal / prices)
    return ws.step("Real interest rate", f"({show(real)} - 1) × 100", (real - 1) * 100)


def _holding_return(rng: random.Random) -> dict:
    buy = rng.choice(_steps(10, 300, 0.5))
    return {"name": rng.choice(PEOPLE), "company": rng.choice(COMPANIES), "buy": buy,
            "sell": round(buy * rng.choice(_steps(0.6, 1.8, 0.01)), 2),
            "dividends": round(buy * rng.choice(_steps(0, 0.06, 0.005)), 2)}


def _ask_holding_return(p: dict) -> str:
    return (f"{p['name']} bought shares of {p['company']} at {_money(p['buy'])}, received {_money(p['dividends'])} "
            f"per share in dividends, and sold them at {_money(p['sell'])}. What was the holding period return in "
            "percent?")


def _work_holding_return(p: dict, ws: Worksheet) -> float:
    gain = ws.step("Gain per share", f"{show(p['sell'])} - {show(p['buy'])} + {show(p['dividends'])}",
                   p["sell"] - p["buy"] + p["dividends"])
    return ws.step("Holding period return", f"{show(gain)} / {show(p['buy'])} × 100", gain / p["buy"] * 100)


@dataclass(frozen=True)
class Topic:
    sample: Callable[[random.Random], dict]
    ask: Callable[[dict], str]
    work: Callable[[dict, Worksheet], float]
    unit: Callable[[dict], str]


def _dollars(p: dict) -> str:
    return "USD"


def _percent(p: dict) -> str:
    return "%"


TOPICS: dict[str, Topic] = {
    "simple_interest": Topic(_simple_interest, _ask_simple_interest, _work_simple_interest, _dollars),
    "compound_interest": Topic(_compound_interest, _ask_compound_interest, _work_compound_interest, _dollars),
    "present_value": Topic(_present_value, _ask_present_value, _work_present_value, _dollars),
    "loan_payment": Topic(_loan_payment, _ask_loan_payment, _work_loan_payment, _dollars),
    "bond_price": Topic(_bond_price, _ask_bond_price, _work_bond_price, _dollars),
    "percentage_change": Topic(_percentage_change, _ask_percentage_change, _work_percentage_change, _percent),
    "pe_ratio": Topic(_pe_ratio, _ask_pe_ratio, _work_pe_ratio, lambda p: "x"),
    "dividend_yield": Topic(_dividend_yield, _ask_dividend_yield, _work_dividend_yield, _percent),
    "roe": Topic(_roe, _ask_roe, _work_roe, _percent),
    "gross_margin": Topic(_gross_margin, _ask_gross_margin, _work_gross_margin, _percent),
    "break_even": Topic(_break_even, _ask_break_even, _work_break_even, lambda p: "units"),
    "currency_conversion": Topic(_currency, _ask_currency, _work_currency, lambda p: p["target"]),
    "cagr": Topic(_cagr, _ask_cagr, _work_cagr, _percent),
    "dividend_discount": Topic(_gordon, _ask_gordon, _work_gordon, _dollars),
    "wacc": Topic(_wacc, _ask_wacc, _work_wacc, _percent),
    "real_interest_rate": Topic(_real_rate, _ask_real_rate, _work_real_rate, _percent),
    "holding_period_return": Topic(_holding_return, _ask_holding_return, _work_holding_return, _percent),
}


def solve(topic: str, params: dict, tamper=None) -> tuple[Worksheet, float]:
    """Work the exercise; returns the worksheet and the rounded final answer."""
    ws = Worksheet(tamper=tamper)
    final = TOPICS[topic].work(params, ws)
    return ws, round_answer(final, 2)


def make_exercise(seed: int, index: int) -> dict:
    """Exercise `index` of `seed`: topics cycle in a fixed order so any 17 consecutive rows cover all of them."""
    names = list(TOPICS)
    topic = names[index % len(names)]
    # A string seed is hashed with SHA-512 by `random`, so it is stable across processes and Python versions.
    rng = random.Random(f"findap-exercise:{seed}:{index}")
    params = TOPICS[topic].sample(rng)
    ws, answer = solve(topic, params)
    return {"id": f"ex-{seed}-{index:05d}", "question": TOPICS[topic].ask(params), "answer": answer,
            "unit": TOPICS[topic].unit(params), "solution": ws.text(answer), "topic": topic, "params": params}


def generate_exercises(n: int, seed: int = 0) -> list[dict]:
    """`n` exercises for `seed`, deterministic and prefix-stable."""
    if n < 0:
        raise ValueError(f"generate_exercises: n must be >= 0, got {n}")
    return [make_exercise(seed, i) for i in range(n)]


ERRORS = {
    # A slip in the arithmetic of one step: the result is off by a plausible amount.
    "arithmetic": [0.8, 0.9, 1.1, 1.25],
    # A misplaced decimal point (percent left as a whole number, or an extra zero).
    "decimal": [10.0, 0.1],
}


def _differs(wrong: float, right: float) -> bool:
    return abs(wrong - right) > max(0.01, 0.005 * abs(right))


def corrupt_solution(ex: dict, rng: random.Random, *, step: int | None = None) -> dict:
    """A wrong trajectory for `ex`: one step's result is wrong and every later step builds on it.

    Returns the exercise with `solution` replaced by the wrong trajectory and these fields added:
    `first_wrong_step` (1-based; the steps before it are identical to the reference), `error` (the kind of
    slip), `solution_answer` (the trajectory's wrong final answer) and `reference_solution`. `answer` stays the
    correct answer. Raises ValueError if no slip at that step changes the final answer.
    """
    reference, _ = solve(ex["topic"], ex["params"])
    number = step if step is not None else rng.randint(1, len(reference.steps))
    if not 1 <= number <= len(reference.steps):
        raise ValueError(f"{ex['id']}: step {number} is outside 1..{len(reference.steps)}")
    kinds = list(ERRORS)
    rng.shuffle(kinds)
    for kind in kinds:
        factors = list(ERRORS[kind])
        rng.shuffle(factors)
        for factor in factors:
            ws, wrong = solve(ex["topic"], ex["params"], tamper=(number, lambda v, f=factor: v * f))
            changed = abs(ws.steps[number - 1].value - reference.steps[number - 1].value) > 1e-9
            if changed and _differs(wrong, ex["answer"]):
                return {**ex, "id": f"{ex['id']}-wrong{number}", "solution": ws.text(wrong),
                        "solution_answer": wrong, "first_wrong_step": number, "error": kind,
                        "reference_solution": ex["solution"]}
    raise ValueError(f"{ex['id']}: no slip at step {number} changes the final answer")
