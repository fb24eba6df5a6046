"""An offline, synthetic Arabic corpus in Wojood format with nested entities.

Owns: a seeded, deterministic generator of sentences from templates whose slots are filled with
entities that nest the way Wojood's do (an occupation holding an organisation holding a place;
dates holding ordinals; money holding a number and a currency; events holding dates). Runs take it
with `--synthetic` (tests, smoke variants, notebooks' smoke mode): everything then runs without any
corpus or network (the experiments' default data is the shipped Wojood sample). It is synthetic: its
scores say nothing about real Arabic NER.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from arner_jax.data.wojood import Sentence, write_wojood

Part = list[tuple[str, list[str]]]  # words with their tags, outermost first ([] = no tag yet)

FIRST = ["محمد", "أحمد", "فاطمة", "سمير", "ليلى", "خالد", "مريم", "يوسف", "نور", "عمر", "هدى", "رامي"]
FAMILY = ["الخطيب", "حداد", "منصور", "عودة", "سلامة", "البرغوثي", "الشامي", "نصار"]
GPE = ["نابلس", "رام الله", "القدس", "عمان", "بيروت", "دمشق", "القاهرة", "غزة", "الخليل", "جنين", "فلسطين"]
LOC = ["نهر الأردن", "البحر الميت", "جبل الشيخ", "وادي عربة", "سهل مرج ابن عامر"]
ORG_PLAIN = ["وزارة الصحة", "جامعة بيرزيت", "مجلس الأمن", "شركة الاتصالات", "الأمم المتحدة", "نقابة المحامين"]
ORG_OF_PLACE = ["بلدية", "جامعة", "غرفة تجارة", "محافظة", "مستشفى"]
OCC = ["رئيس", "وزير", "سكرتير", "مدير", "عضو", "الناطق باسم"]
ORDINAL = ["الأول", "الثاني", "الثالث", "الخامس", "العاشر", "التاسع عشر"]
MONTH = ["كانون الثاني", "شباط", "آذار", "نيسان", "أيار", "حزيران", "تموز", "آب"]
DAY = ["الأحد", "الاثنين", "الثلاثاء", "الأربعاء", "الخميس", "الجمعة", "السبت"]
CARDINAL = ["12", "ثلاثة", "خمسة", "عشرين", "مئة", "1500", "سبعة"]
CURR = ["دينار", "دولار", "شيكل", "يورو"]
NORP = ["الفلسطينية", "العربية", "الأردنية", "اللبنانية"]
EVENT_HEAD = ["مؤتمر", "مهرجان", "معرض", "قمة"]
FILLER = ["و", "،", "$#$", "كما", "أيضا", "اليوم"]


def _plain(text: str) -> Part:
    return [(w, []) for w in text.split()]


def _ent(entity_type: str, *parts: Part) -> Part:
    """Wrap parts in an entity: the outer tag goes first on every word."""
    words = [w for p in parts for w in p]
    return [(w, [("B-" if i == 0 else "I-") + entity_type] + tags) for i, (w, tags) in enumerate(words)]


class _Gen:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def pick(self, items):
        return items[int(self.rng.integers(len(items)))]

    def pers(self) -> Part:
        name = self.pick(FIRST) + (" " + self.pick(FAMILY) if self.rng.random() < 0.7 else "")
        return _ent("PERS", _plain(name))

    def gpe(self) -> Part:
        return _ent("GPE", _plain(self.pick(GPE)))

    def org(self) -> Part:
        if self.rng.random() < 0.5:  # an organisation named after a place: ORG holding GPE
            return _ent("ORG", _plain(self.pick(ORG_OF_PLACE)), self.gpe())
        if self.rng.random() < 0.3:  # with a nationality: ORG holding NORP
            head = _plain(self.pick(["وزارة الصحة", "الجامعة", "الحكومة"]))
            return _ent("ORG", head, _ent("NORP", _plain(self.pick(NORP))))
        return _ent("ORG", _plain(self.pick(ORG_PLAIN)))

    def occ(self) -> Part:  # OCC holding ORG holding GPE, as in "رئيس بلدية نابلس"
        return _ent("OCC", _plain(self.pick(OCC)), self.org())

    def date(self) -> Part:
        r = self.rng.random()
        if r < 0.3:
            return _ent("DATE", _plain("يوم " + self.pick(DAY)))
        if r < 0.6:  # DATE holding ORDINAL
            return _ent("DATE", _ent("ORDINAL", _plain(self.pick(ORDINAL))), _plain("من " + self.pick(MONTH)))
        if r < 0.8:
            return _ent("DATE", _plain("عام " + str(int(self.rng.integers(1948, 2025)))))
        return _ent("DATE", _plain("القرن"), _ent("ORDINAL", _plain(self.pick(ORDINAL))))

    def money(self) -> Part:  # MONEY holding CARDINAL and CURR
        return _ent("MONEY", _ent("CARDINAL", _plain(self.pick(CARDINAL))), _ent("CURR", _plain(self.pick(CURR))))

    def event(self) -> Part:  # EVENT holding GPE and DATE
        return _ent("EVENT", _plain(self.pick(EVENT_HEAD)), self.gpe(), self.date())

    def loc(self) -> Part:
        return _ent("LOC", _plain(self.pick(LOC)))

    def cardinal(self) -> Part:
        return _ent("CARDINAL", _plain(self.pick(CARDINAL)))

    def sentence(self) -> Part:
        templates = [
            lambda: [self.pers(), _plain("يعمل"), self.occ(), _plain("منذ"), self.date()],
            lambda: [_plain("أعلنت"), self.org(), self.date(), _plain("عن"), self.cardinal(),
                     _plain("إصابات جديدة في"), self.gpe()],
            lambda: [_plain("التقى"), self.occ(), self.pers(), _plain("في"), self.gpe(), self.date()],
            lambda: [_plain("وصل"), self.pers(), _plain("إلى"), self.gpe(), _plain("قادما من"), self.gpe()],
            lambda: [_plain("بلغت قيمة الصفقة"), self.money(), _plain("حسب"), self.org()],
            lambda: [_plain("شارك"), self.cardinal(), _plain("شخصا في"), self.event()],
            lambda: [_plain("زار الوفد"), self.loc(), _plain("قرب"), self.gpe(), _plain("برفقة"), self.occ()],
            lambda: [_plain("قال"), self.pers(), _plain("إن"), self.org(), _plain("ستفتتح فرعا في"), self.gpe()],
        ]
        parts = self.pick(templates)()
        if self.rng.random() < 0.4:
            parts.insert(int(self.rng.integers(len(parts) + 1)), _plain(self.pick(FILLER)))
        parts.append(_plain("."))
        return [w for p in parts for w in p]


def generate_sentences(n: int, seed: int = 0) -> list[Sentence]:
    """`n` synthetic sentences, the same for the same seed."""
    gen = _Gen(np.random.default_rng(seed))
    out = []
    for _ in range(n):
        words = gen.sentence()
        out.append(Sentence([w for w, _ in words], [tags or ["O"] for _, tags in words]))
    return out


SIZES = {"train": 2000, "val": 300, "test": 500}


def synthetic_splits(sizes: dict[str, int] | None = None, seed: int = 0) -> dict[str, list[Sentence]]:
    """The synthetic corpus's splits (train/val/test by default), each from its own seed."""
    return {split: generate_sentences(n, seed=seed * 1000 + k) for k, (split, n) in enumerate((sizes or SIZES).items())}


def write_synthetic_corpus(out_dir: str | Path, seed: int = 0, sizes: dict[str, int] | None = None) -> dict[str, Path]:
    """Write train/val/test Wojood files of the synthetic corpus; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, sentences in synthetic_splits(sizes, seed).items():
        paths[split] = out_dir / f"{split}.txt"
        write_wojood(paths[split], sentences)
    return paths
