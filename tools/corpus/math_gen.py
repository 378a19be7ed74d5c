"""Synthetic, seeded, templated math text (the 'math' domain is SYNTHETIC).

Problem kinds: integer arithmetic, linear equations solved step by step,
fraction simplification, expansions of products, short word problems.
Everything is generated from a random.Random instance: same seed, same text.
"""
from math import gcd

NAMES = ["Anna", "Ben", "Carla", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas",
         "Kira", "Liam", "Maya", "Noah", "Olga", "Pablo", "Rosa", "Sam", "Tara", "Omar"]
ITEMS = [("apple", "apples"), ("book", "books"), ("pencil", "pencils"), ("marble", "marbles"),
         ("ticket", "tickets"), ("cookie", "cookies"), ("stamp", "stamps"), ("card", "cards")]


def arithmetic(r):
    a, b = r.randint(2, 999), r.randint(2, 999)
    op = r.choice("+-*")
    if op == "*":
        a, b = r.randint(2, 99), r.randint(2, 99)
    val = eval(f"{a}{op}{b}")
    sym = {"+": "+", "-": "-", "*": "×"}[op]
    if r.random() < 0.5:
        c = r.randint(2, 20)
        return f"Compute ({a} {sym} {b}) + {c}.\nFirst, {a} {sym} {b} = {val}.\nThen {val} + {c} = {val + c}.\nAnswer: {val + c}"
    return f"Compute {a} {sym} {b}.\n{a} {sym} {b} = {val}\nAnswer: {val}"


def linear(r):
    x = r.randint(-20, 20)
    a = r.choice([i for i in range(-12, 13) if i not in (0, 1)])
    b = r.randint(-50, 50)
    c = a * x + b
    bs = f"+ {b}" if b >= 0 else f"- {-b}"
    lines = [f"Solve for x: {a}x {bs} = {c}."]
    if b >= 0:
        lines.append(f"Subtract {b} from both sides: {a}x = {c} - {b} = {c - b}.")
    else:
        lines.append(f"Add {-b} to both sides: {a}x = {c} + {-b} = {c - b}.")
    lines.append(f"Divide both sides by {a}: x = {c - b} / {a} = {x}.")
    lines.append(f"Check: {a} · {x} {bs} = {a * x} {bs} = {c}. Correct.")
    lines.append(f"Answer: x = {x}")
    return "\n".join(lines)


def fraction(r):
    g = r.randint(2, 15)
    p, q = r.randint(1, 20), r.randint(2, 20)
    n, d = p * g, q * g
    k = gcd(n, d)
    s = f"Simplify the fraction {n}/{d}.\nThe greatest common divisor of {n} and {d} is {k}.\n"
    s += f"Divide numerator and denominator by {k}: {n}/{d} = {n // k}/{d // k}."
    if d // k == 1:
        s += f"\nSo the fraction equals the whole number {n // k}."
    return s + f"\nAnswer: {n // k}/{d // k}" if d // k != 1 else s + f"\nAnswer: {n // k}"


def fraction_add(r):
    a, b, c, d = r.randint(1, 9), r.randint(2, 12), r.randint(1, 9), r.randint(2, 12)
    num, den = a * d + c * b, b * d
    k = gcd(num, den)
    return (f"Add the fractions {a}/{b} + {c}/{d}.\nCommon denominator: {b} · {d} = {den}.\n"
            f"{a}/{b} = {a * d}/{den} and {c}/{d} = {c * b}/{den}.\n"
            f"Sum: ({a * d} + {c * b})/{den} = {num}/{den}.\n"
            + (f"Simplify by {k}: {num // k}/{den // k}.\nAnswer: {num // k}/{den // k}" if den // k != 1
               else f"Simplify by {k}: {num // k}/1 = {num // k}.\nAnswer: {num // k}"))


def expand(r):
    a, b = r.randint(-9, 9) or 1, r.randint(-9, 9) or 2
    def t(v):
        return f"+ {v}" if v >= 0 else f"- {-v}"
    return (f"Expand (x {t(a)})(x {t(b)}).\n(x {t(a)})(x {t(b)}) = x² {t(a)}x {t(b)}x {t(a * b)}\n"
            f"= x² {t(a + b)}x {t(a * b)}.\nAnswer: x² {t(a + b)}x {t(a * b)}")


def word(r):
    n1 = r.choice(NAMES)
    n2 = r.choice([n for n in NAMES if n != n1])
    sing, pl = r.choice(ITEMS)
    a, b = r.randint(3, 60), r.randint(2, 40)
    kind = r.randint(0, 2)
    if kind == 0:
        return (f"{n1} has {a} {pl}. {n2} gives {n1} {b} more {pl}. How many {pl} does {n1} have now?\n"
                f"{n1} starts with {a} {pl} and receives {b}, so {a} + {b} = {a + b}.\nAnswer: {a + b} {pl}")
    if kind == 1:
        p = r.randint(2, 12)
        return (f"One {sing} costs {p} euros. {n1} buys {b} {pl}. How much does {n1} pay?\n"
                f"The cost is {b} × {p} = {b * p} euros.\nAnswer: {b * p} euros")
    k = r.randint(2, 9)
    total = k * b
    return (f"{n1} shares {total} {pl} equally among {k} friends. How many {pl} does each friend get?\n"
            f"Each friend gets {total} ÷ {k} = {b} {pl}.\nAnswer: {b} {pl}")


KINDS = [arithmetic, linear, fraction, fraction_add, expand, word]


def gen_document(r, n=None):
    n = n or r.randint(8, 20)
    parts = []
    for i in range(n):
        f = r.choice(KINDS)
        parts.append(f"Problem {i + 1}. " + f(r))
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    import random
    print(gen_document(random.Random(0), 6))
