"""Numbers, prices, dates, times and phone numbers spelled in Chinese characters."""

from __future__ import annotations

import numpy as np

DIGITS = "零一二三四五六七八九"
_UNITS = ("", "十", "百", "千")


def _below_10000(n: int) -> str:
    out, pending_zero = [], False
    for pos in (3, 2, 1, 0):
        d = n // 10**pos % 10
        if d == 0:
            pending_zero = pending_zero or bool(out)
            continue
        if pending_zero:
            out.append("零")
            pending_zero = False
        out.append(DIGITS[d] + _UNITS[pos])
    return "".join(out)


def int_to_hanzi(n: int) -> str:
    """Spell 0 <= n < 10**8 the way it is read: 10 -> 十, 105 -> 一百零五, 20010 -> 二万零一十."""
    if not 0 <= n < 10**8:
        raise ValueError(f"int_to_hanzi supports 0 <= n < 10**8, got {n}")
    if n == 0:
        return "零"
    high, low = divmod(n, 10000)
    if high:
        s = _below_10000(high) + "万"
        if low:
            s += ("零" if low < 1000 else "") + _below_10000(low)
    else:
        s = _below_10000(low)
    if s.startswith("一十"):
        s = s[1:]
    return s


def digits_to_hanzi(digits: str, yao: bool = False) -> str:
    """Read a digit string digit by digit (phone numbers, room numbers); 1 as 幺 if `yao`."""
    table = DIGITS.replace("一", "幺") if yao else DIGITS
    return "".join(table[int(d)] for d in digits)


def _count(n: int) -> str:
    """A count before a measure word: 2 is 两."""
    return "两" if n == 2 else int_to_hanzi(n)


def clock_time(rng: np.random.Generator) -> str:
    part = ("早上", "上午", "中午", "下午", "晚上", "凌晨", "")[int(rng.integers(7))]
    hour = int(rng.integers(1, 13))
    minute = int(rng.choice([0, 0, 15, 30, 30, 45, int(rng.integers(1, 60))]))
    s = part + _count(hour) + "点"
    if minute == 30 and rng.random() < 0.6:
        s += "半"
    elif minute == 15 and rng.random() < 0.4:
        s += "一刻"
    elif minute:
        s += ("零" if minute < 10 else "") + int_to_hanzi(minute) + "分"
    return s


def calendar_date(rng: np.random.Generator) -> str:
    r = rng.random()
    if r < 0.3:
        return ("今天", "明天", "后天", "昨天", "大后天", "下周", "这周末", "下个月")[
            int(rng.integers(8))
        ]
    if r < 0.5:
        return ("星期", "周", "下周")[int(rng.integers(3))] + "一二三四五六日"[int(rng.integers(7))]
    month = int(rng.integers(1, 13))
    day = int(rng.integers(1, 32 if month != 2 else 29))
    return int_to_hanzi(month) + "月" + int_to_hanzi(day) + ("号", "日")[int(rng.integers(2))]


def year(rng: np.random.Generator) -> str:
    return digits_to_hanzi(str(int(rng.integers(1950, 2031)))) + "年"


def phone_number(rng: np.random.Generator) -> str:
    digits = "1" + str(int(rng.integers(3, 10))) + "".join(str(d) for d in rng.integers(0, 10, 9))
    return digits_to_hanzi(digits, yao=bool(rng.random() < 0.5))


def price(rng: np.random.Generator) -> str:
    n = int(
        rng.choice([rng.integers(1, 100), rng.integers(100, 10000), rng.integers(1000, 100000)])
    )
    return _count(n) + ("块", "元", "块钱")[int(rng.integers(3))]


def temperature(rng: np.random.Generator) -> str:
    n = int(rng.integers(0, 41))
    return ("零下" if rng.random() < 0.15 else "") + int_to_hanzi(n) + "度"


def quantity(rng: np.random.Generator) -> str:
    n = int(rng.choice([rng.integers(1, 11), rng.integers(1, 1000)]))
    return _count(n)


def big_number(rng: np.random.Generator) -> str:
    return int_to_hanzi(int(10 ** rng.uniform(0, 7.9)))


def duration(rng: np.random.Generator) -> str:
    n = int(rng.integers(1, 61))
    return _count(n) + ("分钟", "秒", "个小时", "天")[int(rng.integers(4))]


def percent(rng: np.random.Generator) -> str:
    return "百分之" + int_to_hanzi(int(rng.integers(1, 101)))
