"""Voice-search query templates and the sentence generator that fills their slots.

A template is a string with ``{slot}`` fields.  Dictionary slots (``place``, ``person``,
``noun`` ...) are drawn from jieba's dictionary (see `lexicon_source`), numeric slots are
spelled in Chinese characters (see `numbers`), and a few closed-class slots (apps, point
of interest types, music genres) come from short lists here.  Every produced sentence
consists only of hanzi that pypinyin can pronounce; anything else is rejected.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator

import numpy as np

from local.mandarin.pron import is_pronounceable
from local.synth import numbers
from local.synth.lexicon_source import WordPool, load_word_pools

CLOSED_SLOTS: dict[str, tuple[str, ...]] = {
    "poi": (
        "机场",
        "火车站",
        "医院",
        "大学",
        "公园",
        "酒店",
        "银行",
        "超市",
        "商场",
        "加油站",
        "地铁站",
        "停车场",
        "饭店",
        "博物馆",
        "图书馆",
        "体育馆",
        "派出所",
        "汽车站",
        "广场",
        "电影院",
        "咖啡馆",
        "小区",
        "中学",
        "书店",
        "菜市场",
        "药店",
        "步行街",
        "服务区",
    ),
    "app": (
        "微信",
        "支付宝",
        "淘宝",
        "地图",
        "相机",
        "日历",
        "音乐",
        "设置",
        "浏览器",
        "计算器",
        "相册",
        "闹钟",
        "天气",
        "邮件",
        "短信",
        "录音机",
        "手电筒",
        "蓝牙",
        "无线网络",
        "微博",
        "抖音",
        "导航",
        "视频",
        "通讯录",
        "备忘录",
        "应用商店",
        "飞行模式",
        "热点",
    ),
    "genre": (
        "流行",
        "摇滚",
        "民谣",
        "古典",
        "爵士",
        "儿歌",
        "轻音乐",
        "经典老歌",
        "网络歌曲",
        "钢琴曲",
        "戏曲",
        "相声",
        "评书",
        "广场舞",
    ),
    "weather": ("下雨", "下雪", "刮风", "降温", "有雾", "出太阳", "打雷", "晴天", "阴天", "多云"),
    "relative": (
        "妈妈",
        "爸爸",
        "老婆",
        "老公",
        "儿子",
        "女儿",
        "爷爷",
        "奶奶",
        "老板",
        "同事",
        "老师",
        "哥哥",
        "姐姐",
        "弟弟",
        "妹妹",
        "朋友",
        "外婆",
        "师傅",
    ),
    "media": ("电影", "电视剧", "纪录片", "动画片", "综艺节目", "新闻", "小说", "有声书", "直播"),
    "shop": ("京东", "淘宝", "拼多多", "超市", "商城", "苏宁"),
    "setting": ("音量", "亮度", "字体", "铃声", "壁纸", "温度", "风速", "屏幕亮度"),
    "direction": ("调高", "调低", "调大", "调小", "打开", "关闭"),
}

NUMERIC_SLOTS: dict[str, Callable[[np.random.Generator], str]] = {
    "time": numbers.clock_time,
    "date": numbers.calendar_date,
    "year": numbers.year,
    "phone": numbers.phone_number,
    "price": numbers.price,
    "temp": numbers.temperature,
    "qty": numbers.quantity,
    "bignum": numbers.big_number,
    "dur": numbers.duration,
    "pct": numbers.percent,
}

TEMPLATES: dict[str, tuple[str, ...]] = {
    "navigation": (
        "导航到{place}",
        "去{place}{poi}怎么走",
        "附近的{poi}在哪里",
        "从{place}到{place}有多远",
        "带我去最近的{poi}",
        "{place}{poi}",
        "到{place}要多长时间",
        "查一下去{place}的路线",
        "避开拥堵去{place}",
        "{place}附近有什么好吃的",
        "开车去{place}{poi}",
        "我要去{place}",
        "{place}到{place}的高铁",
        "坐地铁去{place}{poi}",
        "{place}{poi}几点关门",
    ),
    "music": (
        "播放{person}的歌",
        "我想听{person}的{noun}",
        "来一首{genre}",
        "播放{genre}音乐",
        "放一首{adj}的歌",
        "下一首",
        "单曲循环{person}的歌",
        "播放{proper}主题曲",
        "我想听{genre}",
        "搜索歌曲{noun}",
        "{person}唱的{noun}",
        "收藏这首歌",
        "随便放一首{genre}",
    ),
    "weather": (
        "{place}{date}天气怎么样",
        "{date}会{weather}吗",
        "{place}{date}多少度",
        "{date}{place}{weather}吗",
        "现在外面{temp}吗",
        "{place}这周的天气预报",
        "{date}需要带伞吗",
        "{place}空气质量怎么样",
        "{date}{time}会不会{weather}",
    ),
    "shopping": (
        "{noun}多少钱",
        "在{shop}买一个{noun}",
        "{price}以内的{noun}",
        "帮我搜一下{thing}",
        "最便宜的{noun}",
        "{adj}一点的{noun}",
        "买{qty}个{noun}",
        "{thing}哪里卖",
        "{person}同款{noun}",
        "查看我的订单",
        "{shop}上的{noun}怎么样",
        "把{noun}加入购物车",
    ),
    "apps": (
        "打开{app}",
        "关闭{app}",
        "启动{app}",
        "把{setting}{direction}一点",
        "{direction}{app}",
        "用{app}给{relative}发消息",
        "打开{app}扫一扫",
        "卸载{app}",
        "{setting}调到{pct}",
    ),
    "numbers": (
        "{bignum}加{bignum}等于多少",
        "{bignum}乘以{qty}",
        "{bignum}除以{qty}是多少",
        "{pct}是多少",
        "{bignum}的平方根",
        "{price}换算成美元",
        "{qty}公斤等于多少斤",
        "{bignum}减去{bignum}",
    ),
    "dates": (
        "{date}{time}叫我起床",
        "设置一个{time}的闹钟",
        "{date}{time}提醒我{verb}",
        "{dur}后提醒我",
        "{date}是星期几",
        "{year}{date}是什么日子",
        "定一个{dur}的倒计时",
        "{date}{time}开会",
        "取消{time}的闹钟",
        "{date}有什么安排",
        "离{date}还有几天",
    ),
    "phone": (
        "打电话给{person}",
        "给{relative}打电话",
        "拨打{phone}",
        "呼叫{person}",
        "给{person}发短信说{verb}",
        "把{phone}存为{person}",
        "{person}的电话号码是多少",
        "回拨{phone}",
        "打给{relative}的手机",
    ),
    "search": (
        "{person}是谁",
        "{thing}是什么意思",
        "搜索{thing}",
        "{place}有哪些景点",
        "{noun}怎么{verb}",
        "{proper}的官网",
        "百度一下{thing}",
        "{place}的人口有多少",
        "{person}的{noun}",
        "{adj}的{noun}有哪些",
        "怎么{verb}{noun}",
        "{year}的{proper}",
        "{thing}和{thing}的区别",
        "{place}{proper}",
        "关于{noun}的{media}",
    ),
    "video": (
        "我想看{person}演的{media}",
        "播放{proper}",
        "打开{media}{noun}",
        "{media}{thing}第{qty}集",
        "最近有什么好看的{media}",
        "搜索{person}的{media}",
        "继续播放{media}",
    ),
}

# relative weights of categories in the spoken corpus and the LM text
CATEGORY_WEIGHTS: dict[str, float] = {
    "navigation": 1.5,
    "music": 1.2,
    "weather": 1.0,
    "shopping": 1.2,
    "apps": 0.8,
    "numbers": 0.6,
    "dates": 1.0,
    "phone": 0.9,
    "search": 1.5,
    "video": 0.8,
}

_SLOT_RE = re.compile(r"\{(\w+)\}")


def sentence_bucket(sentence: str, fractions: dict[str, float]) -> str:
    """Assign a sentence to one text partition (e.g. test/dev/train/lm) by a stable hash.

    Because the partition is a function of the text alone, the splits' sentences and the
    LM text are disjoint by construction, whatever order they are drawn in.
    """
    h = int.from_bytes(hashlib.blake2b(sentence.encode("utf-8"), digest_size=8).digest(), "big")
    u = (h % 1_000_000) / 1_000_000
    total = sum(fractions.values())
    acc = 0.0
    for name in sorted(fractions):
        acc += fractions[name] / total
        if u < acc:
            return name
    return sorted(fractions)[-1]


class SentenceGenerator:
    """Fills templates with dictionary words; `generate(rng)` -> (sentence, category)."""

    def __init__(self, min_freq: int = 20, power: float = 0.5, max_words: int = 6000) -> None:
        self.pools: dict[str, WordPool] = load_word_pools(min_freq, power, max_words)
        self.categories = sorted(TEMPLATES)
        w = np.array([CATEGORY_WEIGHTS[c] for c in self.categories])
        self._cat_cum = np.cumsum(w / w.sum())
        self._parsed = {c: [_SLOT_RE.split(t) for t in TEMPLATES[c]] for c in self.categories}
        for c, parts_list in self._parsed.items():
            for parts in parts_list:
                for slot in parts[1::2]:
                    if (
                        slot not in self.pools
                        and slot not in CLOSED_SLOTS
                        and slot not in NUMERIC_SLOTS
                    ):
                        raise ValueError(f"template in {c!r} uses unknown slot {{{slot}}}")

    def _fill(self, slot: str, rng: np.random.Generator) -> str:
        if slot in NUMERIC_SLOTS:
            return NUMERIC_SLOTS[slot](rng)
        if slot in CLOSED_SLOTS:
            options = CLOSED_SLOTS[slot]
            return options[int(rng.integers(len(options)))]
        return self.pools[slot].draw(rng)

    def generate(self, rng: np.random.Generator) -> tuple[str, str]:
        """One pronounceable sentence and its category (retries on the rare bad draw)."""
        while True:
            cat = self.categories[
                int(
                    np.searchsorted(self._cat_cum, rng.random(), side="right").clip(
                        0, len(self.categories) - 1
                    )
                )
            ]
            templates = self._parsed[cat]
            parts = templates[int(rng.integers(len(templates)))]
            text = "".join(p if i % 2 == 0 else self._fill(p, rng) for i, p in enumerate(parts))
            if text and all(is_pronounceable(ch, basic_block=True) for ch in text):
                return text, cat

    def stream(
        self,
        rng: np.random.Generator,
        bucket: str | None = None,
        fractions: dict[str, float] | None = None,
        exclude: set[str] | None = None,
        max_tries: int = 2_000_000,
    ) -> Iterator[tuple[str, str]]:
        """Distinct sentences (optionally only those hashed into `bucket`), in draw order."""
        seen: set[str] = set(exclude or ())
        for _ in range(max_tries):
            text, cat = self.generate(rng)
            if text in seen:
                continue
            if bucket is not None and sentence_bucket(text, fractions or {}) != bucket:
                continue
            seen.add(text)
            yield text, cat
        raise RuntimeError(
            f"sentence generator exhausted after {max_tries} draws (bucket {bucket!r})"
        )
