#!/usr/bin/env python3
"""Generate tests/reference/hub/, the Python reference for stancer's hub NLI models (issue 13).

Run from the repository root:

    python3 tests/reference/make_hub_reference.py

It reuses the virtual environment .venv-ref/ of make_reference.py (same pinned
tests/reference/requirements.txt; created on first use) and re-executes itself inside it. The Hugging
Face hub is never contacted: everything is built locally, deterministically, from fixed seeds.

The script builds four tiny RANDOM-weight sequence-classification NLI models, one per architecture
stancer supports, each in tests/reference/hub/<name>/ (config.json, model.safetensors, tokenizer.json,
tokenizer_config.json):

    bert         BertForSequenceClassification        WordPiece tokenizer (lowercasing)
    roberta      RobertaForSequenceClassification     byte-level BPE tokenizer, 2 labels
    xlm-roberta  XLMRobertaForSequenceClassification  Unigram tokenizer, NFKC + Metaspace
    deberta-v3   DebertaV2ForSequenceClassification   Unigram tokenizer, Metaspace; relative attention

Each tokenizer is trained with the `tokenizers` library on the fixed in-script corpus. Then it writes

    hub/pairs.jsonl       per (premise, hypothesis) pair: the windows, each window's logits, and
                          the length-weighted mean logits (the window rule of stancer's Rust code)
    hub/zero_shot.jsonl   transformers' zero-shot-classification pipeline scores
    hub/encoder.jsonl     the same weights as a sentence encoder (the base model without its head,
                          mean pooling over every token, L2-normalised), for texts of one window
    hub/manifest.json     per model: labels, special-token counts, model inputs, versions

See README.md ("Hub NLI models (issue 13)") for the formats and the exact window rule.

Options:
    --setup-only   create/refresh the venv and exit
    --out DIR      write somewhere other than tests/reference/hub/
"""

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENV = ROOT / ".venv-ref"
REQUIREMENTS = HERE / "requirements.txt"
DEFAULT_OUT = HERE / "hub"
STAMP_NAME = ".requirements.sha256"
REEXEC_GUARD = "STANCER_REF_IN_VENV"

# ---------------------------------------------------------------------------------------------
# Bootstrap: make sure .venv-ref/ exists with the pinned requirements, then re-exec inside it.
# (The same venv and the same logic as make_reference.py.)
# ---------------------------------------------------------------------------------------------


def _venv_python() -> Path:
    return VENV / "bin" / "python"


def _ensure_venv() -> None:
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = VENV / STAMP_NAME
    if _venv_python().exists() and stamp.exists() and stamp.read_text().strip() == want:
        return
    t0 = time.monotonic()
    if not _venv_python().exists():
        print(f"[setup] creating venv {VENV}", flush=True)
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
    print(f"[setup] installing {REQUIREMENTS.relative_to(ROOT)} (torch pulls large nvidia-* wheels)", flush=True)
    subprocess.check_call(
        [
            str(_venv_python()), "-m", "pip", "install",
            "--disable-pip-version-check", "--no-input", "--only-binary=:all:",
            "-r", str(REQUIREMENTS),
        ]
    )
    stamp.write_text(want + "\n")
    print(f"[setup] venv ready in {time.monotonic() - t0:.1f} s", flush=True)


def _bootstrap() -> None:
    in_venv = Path(sys.prefix).resolve() == VENV.resolve()
    if in_venv:
        return
    if os.environ.get(REEXEC_GUARD):
        sys.exit(f"re-exec into {VENV} did not land in the venv (sys.prefix={sys.prefix})")
    _ensure_venv()
    if "--setup-only" in sys.argv[1:]:
        sys.exit(0)
    env = dict(os.environ)
    env[REEXEC_GUARD] = "1"
    py = str(_venv_python())
    os.execve(py, [py, str(Path(__file__).resolve()), *sys.argv[1:]], env)


if __name__ == "__main__":
    _bootstrap()

# Single-threaded and offline before any of the libraries is imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"

# ---------------------------------------------------------------------------------------------
# Training corpus for the tokenizers (fixed; a few hundred varied sentences).
# ---------------------------------------------------------------------------------------------

EN_SENTENCES = [
    "The parliament passed the budget after a long and heated debate.",
    "The committee approved the new spending plan on Tuesday morning.",
    "Should the city raise the minimum wage to fifteen dollars an hour?",
    "Rent control reduces the supply of housing over time, economists argue.",
    "A revenue-neutral carbon tax would price emissions at their source.",
    "The proceeds would be returned to households as equal per-capita dividends.",
    "Modelling by the finance ministry suggests emissions would fall by a fifth within a decade.",
    "Lower-income households spend less on energy in absolute terms.",
    "The main political risk is visibility: fuel prices rise immediately.",
    "Restrictive zoning remains the largest constraint on new housing supply.",
    "Roughly seventy percent of residential land is reserved for detached homes.",
    "Allowing up to four units per parcel near transit would raise capacity.",
    "Opponents argue that neighbourhood character and infrastructure would suffer.",
    "The proposal caps out-of-pocket spending on prescription drugs at 2,000 dollars a year.",
    "Insurers would absorb a larger share of spending above the cap.",
    "Actuarial estimates indicate that premiums could rise by one to two percent.",
    "Tariffs on imported steel were justified on national-security grounds.",
    "Retaliatory duties have fallen disproportionately on agricultural exports.",
    "A phased removal of the tariffs would likely produce a net gain in employment.",
    "Funding formulas that rely on local property taxes entrench inequality between schools.",
    "The reform would weight allocations by student need, poverty and disability.",
    "Should automated decision systems used in hiring be subject to independent audits?",
    "Vendors argue that disclosure could expose proprietary methods.",
    "Civil-rights groups say that without transparency it is impossible to detect discrimination.",
    "The striker scored twice as the home team won the championship final on penalties.",
    "The coach praised the defence after a narrow victory in the derby.",
    "Olympic officials confirmed that the marathon will start at dawn.",
    "The central bank kept interest rates unchanged for the third month in a row.",
    "Inflation eased to 2.4 percent in March, according to official figures.",
    "Unemployment fell slightly, but wages are still growing slowly.",
    "Shares in the technology company dropped after disappointing quarterly earnings.",
    "The government announced a new strategy to reduce hospital waiting lists.",
    "Doctors warned that the flu season could be more severe than usual.",
    "Vaccination rates among children have recovered after the pandemic.",
    "The minister did not support the proposal and voted against it.",
    "Critics say the bill gives too much power to the executive.",
    "Supporters contend that the financial protection is worth the price.",
    "The senator is strongly in favour of expanding public transport.",
    "The author is clearly opposed to any increase in fuel taxes.",
    "Voters will decide in a referendum whether to leave the alliance.",
    "The opposition leader called for an early election.",
    "Turnout was higher than expected in the rural districts.",
    "Heavy rain caused flooding in several coastal towns overnight.",
    "Scientists reported record temperatures across southern Europe this summer.",
    "Wind and solar generation now supply roughly a third of annual electricity output.",
    "Coal plants are closing ahead of schedule as renewable output grows.",
    "Transmission capacity, not generation cost, is now the binding constraint.",
    "The new film broke box-office records in its opening weekend.",
    "The orchestra will perform a programme of Beethoven and Brahms.",
    "The museum reopened after a two-year renovation of its main gallery.",
    "Farmers protested against cuts to agricultural subsidies in the capital.",
    "The trade agreement removes tariffs on most industrial goods.",
    "Negotiators failed to reach a deal before the midnight deadline.",
    "The court ruled that the surveillance programme was unconstitutional.",
    "Police arrested three suspects in connection with the robbery.",
    "The city council will vote on the housing plan next week.",
    "Automation has reshaped the kinds of work that are available.",
    "Public training programmes have a mixed record of raising earnings.",
    "Wage insurance would top up the earnings of displaced workers.",
    "Regional differences complicate the picture for policymakers.",
    "Better measurement would allow a faster response to disruption.",
    "The water utility recorded more than four hundred main breaks last winter.",
    "A risk-based programme would rank pipe segments by the probability of failure.",
    "Rates have risen faster than inflation for six consecutive years.",
    "This example is politics.",
    "This example is sports.",
    "This example is economy.",
    "This example is health.",
    "This example is climate.",
    "This example is technology.",
    "This example is entertainment.",
    "This example is education.",
    "This example is housing.",
    "This example is finance.",
    "This example is energy policy.",
    "This example is infrastructure.",
    "This text is about politics.",
    "This text is about the environment.",
    "This text is about sports and culture.",
    "The author is in favor of a carbon tax.",
    "The author is against a carbon tax.",
    "The author supports zoning reform.",
    "The author opposes the new housing policy.",
    "The author is neutral about the proposal.",
    "The minister supported the proposal.",
    "BREAKING: PARLIAMENT DISSOLVED AFTER NO-CONFIDENCE VOTE",
    "The EU's NATO partners rejected the deal, said the eBay CEO.",
    "See https://www.example.gov/policy/2024/climate-action-plan for the full schedule.",
    "The ledger total was 3,141,592 units, or 1,234,567.89 dollars after conversion.",
    "Revenue grew by 4% in Q3, despite persistent headwinds.",
    "First line of the memo.\r\nSecond line, after a CRLF.",
    "Columns:\tname\tvalue\tunit",
    "“Policy,” she said — ‘is the art of the possible’… – not the pursuit of the ideal.",
    "Is it true? Yes! No... Maybe; perhaps: (really) [sic] {ok} <b>bold</b> #tag @user",
    "## Findings\n\n- Emissions fell 3%\n- Costs rose 1.2%",
]

DE_SENTENCES = [
    "Die Bundesregierung prüft eine Erhöhung der Grundsteuer.",
    "Bürgerinnen und Bürger äußern Bedenken über die zusätzliche Belastung.",
    "Der Bundestag hat heute über die Rentenreform abgestimmt.",
    "Die Mieten in München und Hamburg steigen weiter.",
    "Die Opposition fordert eine Senkung der Energiepreise.",
    "Der Verkehrsminister will das Schienennetz bis 2030 ausbauen.",
    "Die Fußballmannschaft gewann das Endspiel nach Verlängerung.",
    "Viele Unternehmen klagen über den Fachkräftemangel.",
    "Die Gewerkschaft kündigte einen Streik im öffentlichen Dienst an.",
    "Dieser Text handelt von Politik.",
    "Dieser Text handelt von Steuern.",
    "Der Autor ist für eine CO2-Steuer.",
    "Größere Städte brauchen mehr bezahlbaren Wohnraum für Familien.",
    "Die Straße wurde wegen Bauarbeiten für drei Wochen gesperrt.",
    "Das Gericht hat die Klage gegen das neue Gesetz abgewiesen.",
    "Die Inflation ist im Mai überraschend deutlich gesunken.",
    "Süddeutschland erlebte den heißesten Sommer seit Beginn der Aufzeichnungen.",
    "Die Schulen sollen bis Ende des Jahres digital besser ausgestattet werden.",
]

FR_SENTENCES = [
    "L'Assemblée nationale a adopté la réforme des retraites après un débat animé.",
    "Les élus de l'opposition dénoncent un « passage en force » au cœur de l'été.",
    "Le gouvernement annonce un plan pour réduire les émissions de carbone.",
    "Les prix de l'énergie ont fortement augmenté cet hiver.",
    "Le maire veut créer davantage de logements sociaux dans le centre-ville.",
    "L'équipe de France a remporté le match grâce à un but tardif.",
    "Ce texte parle de politique.",
    "Ce texte parle d'économie et de finances publiques.",
    "Les médecins réclament plus de moyens pour l'hôpital public.",
    "La grève des transports perturbe fortement la circulation à Paris.",
    "Les agriculteurs s'inquiètent de la sécheresse qui frappe le sud du pays.",
    "Le Conseil constitutionnel a validé l'essentiel de la loi.",
]

RU_SENTENCES = [
    "Правительство объявило о новых мерах поддержки малого бизнеса в регионах.",
    "Правительство представило программу модернизации общественного транспорта.",
    "Планируется обновить парк автобусов и трамваев и построить новые линии метро.",
    "Эксперты отмечают, что главным препятствием остаётся финансирование.",
    "Региональные бюджеты не способны покрыть расходы без помощи федерального центра.",
    "Жители пригородов ежедневно тратят на дорогу до работы более двух часов.",
    "Этот текст о политике.",
    "Этот текст о транспорте.",
    "Этот текст об экономике.",
    "Центральный банк сохранил ключевую ставку без изменений.",
    "Сборная выиграла финал чемпионата в серии пенальти.",
    "Цены на жильё в крупных городах продолжают расти.",
]

ZH_SENTENCES = [
    "政府宣布了新的住房政策，以降低城市居民的租金负担。",
    "在二〇二五年前新建五十万套保障性住房。",
    "中央银行决定维持利率不变。",
    "这个例子是关于政治的。",
    "这个例子是关于住房的。",
    "这个例子是关于体育的。",
    "议会通过了新的环境保护法。",
    "城市交通拥堵问题日益严重。",
    "足球队在决赛中获得了冠军。",
    "经济增长放缓，失业率上升。",
]

MISC_SENTENCES = [
    "Great news for climate policy 🌍🔥👍 — finally! 🎉",
    "Family 👨‍👩‍👧‍👦 and flag 🇩🇪 included 😀😂🙏",
    "This example is 🌍 climate.",
    "?!... — *** ### !!! ??? ... ;;; :: -- –– ——",
    "Ελλάδα και 日本の政策 meet Ñandú, naïve coöperation, and Łódź’s mayor.",
    "أعلنت الحكومة عن خطة جديدة لتحسين التعليم في المناطق الريفية.",
    "Café owners in São Paulo oppose the new régime fiscal.",
    "Ｆｕｌｌｗｉｄｔｈ ｔｅｘｔ ① ﬁnance ﬂow ½ ™ №",
    "Budget\u00a0review\u2003for\u3000fiscal\u2009year 2025.",
    "x y z a b c 1 2 3 4 5 6 7 8 9 0 100 2024 % $ € £ ¥",
]

# Templated sentences: a deterministic walk through subjects x verbs x objects.
_SUBJECTS = [
    "The government", "The minister", "The city council", "The opposition", "The central bank",
    "The committee", "The union", "The court", "Voters", "Economists", "The author", "Critics",
    "The mayor", "Farmers", "Teachers", "Doctors", "The company", "Activists", "The senator",
]
_VERBS = [
    "supports", "opposes", "proposes", "criticises", "welcomes", "rejects", "delays",
    "announces", "questions", "defends", "reviews", "approves", "blocks",
]
_OBJECTS = [
    "a carbon tax", "the housing plan", "new tariffs on steel", "higher wages for nurses",
    "the pension reform", "cheaper public transport", "stricter rules for banks",
    "more money for schools", "the climate target", "a ban on petrol cars", "the trade agreement",
    "lower income taxes", "the new football stadium", "faster broadband in rural areas",
    "an audit of hiring algorithms", "rent control in the capital", "the health budget",
]
_TAILS = ["", " this week", " after the election", " despite strong protests", " in a televised speech"]


def templated_sentences(n: int = 200) -> list:
    out = []
    for i in range(n):
        s = _SUBJECTS[i % len(_SUBJECTS)]
        v = _VERBS[(i * 7) % len(_VERBS)]
        o = _OBJECTS[(i * 11) % len(_OBJECTS)]
        t = _TAILS[(i * 3) % len(_TAILS)]
        out.append(f"{s} {v} {o}{t}.")
    return out


# ---------------------------------------------------------------------------------------------
# Premises and hypotheses of the reference pairs.
# ---------------------------------------------------------------------------------------------

POLICY_CARBON = (
    "A revenue-neutral carbon tax would price emissions at their source while returning the "
    "proceeds to households as equal per-capita dividends. Because lower-income households spend "
    "less on energy in absolute terms, most of them would receive more in dividends than they pay."
)

POLICY_HOUSING = (
    "Restrictive zoning remains the single largest constraint on new housing supply. Allowing up to "
    "four units per parcel near transit corridors would raise capacity without large subsidies."
)

POLICY_HEALTH = (
    "The proposal to cap out-of-pocket spending on prescription drugs targets the small group of "
    "patients who face catastrophic costs; premiums could rise by one to two percent."
)

LONG_WATER = (
    "The city's water system was built in three waves: a brick-lined core laid before 1910, a "
    "cast-iron expansion during the post-war boom, and a patchwork of ductile pipe added as the "
    "suburbs grew. Each generation of pipe is now failing for different reasons. The oldest mains "
    "leak at their joints, the cast-iron lines crack during hard freezes, and some of the newer pipe "
    "corrodes early because it was laid in acidic soil. Last winter the utility recorded more than "
    "four hundred main breaks, nearly double the figure from ten years ago. Replacing everything at "
    "once is neither affordable nor necessary. A risk-based programme would rank segments by the "
    "probability of failure and the consequence of a break, putting hospitals, schools and trunk "
    "lines first."
)

LONG_AUTOMATION = (
    "Automation has not produced the mass unemployment that many forecasters predicted a decade "
    "ago, but it has reshaped the kinds of work that are available and who does them. Routine "
    "clerical jobs have declined steadily, while demand for care workers, technicians and logistics "
    "staff has grown. Three policy levers are under discussion. The first is retraining: short "
    "courses designed with employers tend to raise earnings, whereas generic classroom programmes "
    "frequently do not. The second lever is wage insurance, which would top up the earnings of "
    "displaced workers who accept a lower-paid job for a limited period. The third is a change in "
    "the tax treatment of capital investment, because generous depreciation allowances make "
    "machines cheaper relative to workers than they would otherwise be. Regional differences "
    "complicate the picture, and the data used to track these changes are poor. A sensible package "
    "would start with what is known to work."
)

LONG_ENERGY = (
    "The national electricity system is in the middle of its most rapid change since the grid was "
    "first interconnected. Wind and solar generation have grown to roughly a third of annual output, "
    "coal plants are closing ahead of schedule, and the remaining gas fleet is used for balancing. "
    "The binding constraints are now transmission capacity, the speed of planning and permitting, "
    "and the availability of flexible resources during long periods of low wind. Most of the best "
    "wind resources are in the north and offshore, while most demand is in the south. Three new "
    "north-south corridors have been proposed; two are stuck in planning. Compensating communities "
    "directly, for example through reduced electricity bills near new lines, would reduce local "
    "opposition. The average onshore wind project takes more than six years from application to "
    "operation, of which less than one year is construction. Batteries, demand response and "
    "interconnectors can cover short gaps, but a cold, still week in January remains the hardest "
    "case for any system that relies on the weather. Die Bundesregierung prüft ähnliche Pläne; "
    "правительство также обсуждает новые линии. 政府也在讨论电网。 🌍⚡"
)

LONG_RUSSIAN = (
    "Правительство представило программу модернизации системы общественного транспорта в крупных "
    "городах. Планируется обновить парк автобусов и трамваев, построить новые линии метро и внедрить "
    "единую систему оплаты проезда. Эксперты отмечают, что главным препятствием остаётся "
    "финансирование: региональные бюджеты не способны покрыть расходы без помощи федерального "
    "центра. Кроме того, необходимо учитывать интересы жителей пригородов, которые ежедневно тратят "
    "на дорогу до работы более двух часов."
)

LONG_WORD_300 = (
    "supercalifragilisticexpialidociousantidisestablishmentarianismfloccinaucinihilipilification"
    "pneumonoultramicroscopicsilicovolcanoconiosishippopotomonstrosesquippedaliophobia"
    "incomprehensibilitiesthyroparathyroidectomizedspectrophotofluorometricallypsychoneuroimmunology"
    "counterrevolutionariesuncharacteristicallyquinquagenarian"
)[:300]

H_POLITICS = "This example is politics."
H_LONG = "The author argues that the government should raise fuel taxes and return the money to households."

PAIR_CASES = [
    ("short-politics", "The parliament passed the budget after a long debate.", H_POLITICS),
    ("short-sports", "The team won the championship final on penalties.", "This example is sports."),
    ("carbon-tax-favor", POLICY_CARBON, "The author is in favor of a carbon tax."),
    ("carbon-tax-against", POLICY_CARBON, "The author is against a carbon tax."),
    ("housing-zoning", POLICY_HOUSING, "The author supports zoning reform."),
    ("drug-price-cap", POLICY_HEALTH, "This example is health."),
    ("question", "Should the city raise the minimum wage?", "This example is economy."),
    ("negation", "The minister did not support the proposal.", "The minister supported the proposal."),
    ("long-water", LONG_WATER, "This example is infrastructure."),
    ("long-automation", LONG_AUTOMATION, "The author is in favor of retraining programmes."),
    ("long-energy-mixed", LONG_ENERGY, "This example is energy policy."),
    ("long-russian", LONG_RUSSIAN, "Этот текст о транспорте."),
    ("long-word-300", LONG_WORD_300, H_POLITICS),
    ("german", "Die Bundesregierung prüft eine Erhöhung der Grundsteuer; Bürger äußern Bedenken.",
     "Dieser Text handelt von Steuern."),
    ("german-english-hypothesis", "Der Bundestag hat heute über die Rentenreform abgestimmt.", H_POLITICS),
    ("french", "L'Assemblée nationale a adopté la réforme des retraites : « passage en force » !",
     "Ce texte parle de politique."),
    ("russian", "Центральный банк сохранил ключевую ставку без изменений.", "This example is economy."),
    ("chinese", "政府宣布了新的住房政策，以降低城市居民的租金负担。", "这个例子是关于住房的。"),
    ("emoji", "Great news for climate policy 🌍🔥👍 — finally! 🎉 Family 👨‍👩‍👧‍👦 🇩🇪",
     "The author is happy about climate policy."),
    ("emoji-hypothesis", "Heavy rain caused flooding in several coastal towns.", "This example is 🌍 climate."),
    ("mixed-scripts", "Ελλάδα και 日本の政策 meet Ñandú, naïve coöperation, and Łódź’s mayor.",
     "This example is politics."),
    ("nfkc-sensitive", "Ｆｕｌｌｗｉｄｔｈ ｔｅｘｔ ① ﬁnance ﬂow ½ ™ №", "This example is finance."),
    ("combining-accents", "Cafe\u0301 owners in Sa\u0303o Paulo oppose the new re\u0301gime fiscal.",
     "This example is economy."),
    ("unicode-spaces", "Budget\u00a0review\u2003for\u3000fiscal\u2009year\u202f2025.", "This example is finance."),
    ("empty-premise", "", H_POLITICS),
    ("space-premise", " ", H_POLITICS),
    ("single-letter", "x", H_POLITICS),
    ("punct-question-bang", "?!...", H_POLITICS),
    ("punct-em-dash", "—", H_POLITICS),
    ("crlf", "First line of the memo.\r\nSecond line, after a CRLF.\r\n\r\nThird paragraph.", H_POLITICS),
    ("tabs-spaces", "Revenue\t\tgrew   by    4%\tin   Q3,\t\tdespite    persistent     headwinds.",
     "This example is economy."),
    ("leading-trailing-whitespace", "   \n\tThe vote is scheduled for next week.  \n  ", H_POLITICS),
    ("all-caps", "BREAKING: PARLIAMENT DISSOLVED AFTER NO-CONFIDENCE VOTE", H_POLITICS),
    ("long-hypothesis", "Fuel prices rose again this month.", H_LONG),
    ("long-premise-long-hypothesis", LONG_WATER, H_LONG),
]

# Premises built to land exactly on window-rule boundaries for the hypothesis H_POLITICS, measured
# in premise content tokens of each model's own tokenizer (body = max_tokens - specials - len(h)):
#   body      -> largest single window;      body + 1  -> first two-window case (starts 0, 1);
#   body + stride -> two windows, the last start equals the stride;  body + stride + 1 -> 3 windows.
BOUNDARY_KINDS = ["body", "body+1", "body+stride", "body+stride+1"]
FILLER_WORDS = ["the", "and", "of", "to", "in"]

ZS_SEQUENCES = [
    ("carbon-tax", "The parliament voted to raise the carbon tax next year.",
     ["politics", "economy", "sports", "environment"]),
    ("german-pension", "Der Bundestag hat heute über die Rentenreform abgestimmt.",
     ["politics", "health", "sports"]),
    ("football-emoji", "The striker scored twice as the home team won the final 🎉",
     ["sports", "politics", "entertainment", "finance", "climate"]),
    ("rents", "Rents keep rising while wages stagnate in most cities.",
     ["housing", "economy", "education"]),
]
ZS_TEMPLATES = [("default", "This example is {}."), ("about", "This text is about {}.")]
ZS_SINGLE_LABEL = ("single-label", "The central bank kept interest rates unchanged.", ["finance"])
ZS_TRUNCATED = [
    ("truncated-water", LONG_WATER, ["infrastructure", "politics", "sports"]),
    ("truncated-automation", LONG_AUTOMATION, ["economy", "education", "climate", "health"]),
]

# ---------------------------------------------------------------------------------------------
# Models.
# ---------------------------------------------------------------------------------------------

MAX_TOKENS = 64
VOCAB_SIZE = 1500
HIDDEN = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)

MODELS = {
    "bert": dict(seed=1301, id2label={0: "contradiction", 1: "neutral", 2: "entailment"}),
    "roberta": dict(seed=1302, id2label={0: "entailment", 1: "not_entailment"}),
    "xlm-roberta": dict(seed=1303, id2label={0: "entailment", 1: "neutral", 2: "contradiction"}),
    "deberta-v3": dict(seed=1304, id2label={0: "entailment", 1: "neutral", 2: "contradiction"}),
}

PADDED_BATCH_TOL = 1e-5
PIPELINE_TOL = 1e-5
MIN_LOGIT_STD = 0.05


def fmt_f32(x) -> float:
    return float(f"{float(x):.9g}")


def corpus() -> list:
    return (EN_SENTENCES + DE_SENTENCES + FR_SENTENCES + RU_SENTENCES + ZH_SENTENCES + MISC_SENTENCES
            + templated_sentences() + [LONG_WATER, LONG_AUTOMATION, LONG_ENERGY, LONG_RUSSIAN])


def _continuation_pieces(tok, texts: list) -> list:
    """Every "##c" piece WordPiece training can create, sorted (see build_tokenizer)."""
    chars = set()
    for t in texts:
        for word, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(t)):
            chars.update(word[1:])
    return ["##" + c for c in sorted(chars)]


UNIGRAM_PENALTY_STEP = 1e-4  # tokenizers' UnigramTrainer: min_score_penalty_delta
UNIGRAM_SCORE_DECIMALS = 6


def _canonical_unigram(tok, n_specials: int):
    """A copy of a trained Unigram tokenizer with a run-independent vocabulary (see build_tokenizer)."""
    import json

    from tokenizers import Tokenizer

    data = json.loads(tok.to_str())
    vocab = [(p, float(s)) for p, s in data["model"]["vocab"]]
    specials, rest = vocab[:n_specials], vocab[n_specials:]
    # Characters that EM dropped are re-added by the trainer at min_score + k * 1e-4, k taken in
    # HashMap order. Find that chain (single characters only) and re-number it in code-point order.
    m = min(s for _, s in rest)
    chain = []
    k = 0
    while True:
        step = [p for p, s in rest if len(p) == 1 and abs(s - (m + k * UNIGRAM_PENALTY_STEP)) < 1e-7]
        if not step:
            break
        chain.extend(step)
        k += 1
    chain_set = set(chain)
    base = round(m, UNIGRAM_SCORE_DECIMALS)
    rescored = {c: round(base + i * UNIGRAM_PENALTY_STEP, UNIGRAM_SCORE_DECIMALS)
                for i, c in enumerate(sorted(chain_set))}
    # EM scores differ between runs only by float summation order (~1e-15): round them, then order
    # by (score desc, piece) so that exact ties are broken the same way every time.
    rest = [(p, rescored[p] if p in chain_set else round(s, UNIGRAM_SCORE_DECIMALS)) for p, s in rest]
    rest.sort(key=lambda x: (-x[1], x[0]))
    data["model"]["vocab"] = [[p, s] for p, s in specials] + [[p, s] for p, s in rest]
    return Tokenizer.from_str(json.dumps(data, ensure_ascii=False)), len(chain_set)


def build_tokenizer(name: str, texts: list):
    """Train the backend tokenizer and wrap it in the transformers class a real hub model would use.

    transformers 5.x rebuilds the normalizer / pre-tokenizer / decoder of a model-specific tokenizer
    class (BertTokenizer, RobertaTokenizer, DebertaV2Tokenizer...) in the class's __init__ and only takes
    vocab, merges and post-processor from tokenizer.json. So each backend below is trained with exactly
    the components that class builds; the script then checks that tokenizer.json and the loaded
    transformers tokenizer agree. xlm-roberta uses the generic TokenizersBackend instead (its class
    would drop the NFKC normalizer: it keeps only a SentencePiece `Precompiled` one).

    Determinism: the `tokenizers` trainers iterate Rust HashMaps (random order per process).
    - WordPiece training creates the "##c" continuation pieces in that order, and their ids break
      ties between equally frequent merges, so even the vocabulary set changes from run to run. All
      "##c" pieces are therefore registered up front (sorted) as trainer special tokens, which makes
      every id and merge deterministic; BertTokenizer then rebuilds the tokenizer from the plain vocab,
      so they end up as ordinary vocabulary entries.
    - Unigram training gives the same piece set, but tie order, float noise in the EM scores, and the
      1e-4 score penalties of re-added characters vary. `_canonical_unigram` fixes all three.
    """
    import json

    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizer, DebertaV2Tokenizer, PreTrainedTokenizerFast, RobertaTokenizer

    common = dict(model_max_length=MAX_TOKENS)
    if name == "bert":
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(
            vocab_size=VOCAB_SIZE, min_frequency=1, special_tokens=specials + _continuation_pieces(tok, texts),
            continuing_subword_prefix="##", show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        hf = BertTokenizer(vocab=tok.get_vocab(), do_lower_case=True, **common)
    elif name == "roberta":
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(
            vocab_size=VOCAB_SIZE, min_frequency=1, special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        model_json = json.loads(tok.to_str())["model"]
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model_json["merges"]]
        hf = RobertaTokenizer(vocab=model_json["vocab"], merges=merges, add_prefix_space=False, **common)
    elif name == "xlm-roberta":
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"),
        ])
        trainer = trainers.UnigramTrainer(
            vocab_size=VOCAB_SIZE, special_tokens=specials, unk_token="<unk>", max_piece_length=16,
            show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        tok, _ = _canonical_unigram(tok, len(specials))
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
            special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
        hf = PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
            unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
            model_input_names=["input_ids", "attention_mask"], **common)
    elif name == "deberta-v3":
        specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.Sequence([
            normalizers.Replace(Regex(r"\s{2,}|[\n\r\t]"), " "),
            normalizers.NFC(),
            normalizers.Strip(left=False, right=True),
        ])
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"),
        ])
        trainer = trainers.UnigramTrainer(
            vocab_size=VOCAB_SIZE, special_tokens=specials, unk_token="[UNK]", max_piece_length=16,
            show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        tok, _ = _canonical_unigram(tok, len(specials))
        vocab = [tuple(x) for x in json.loads(tok.to_str())["model"]["vocab"]]
        hf = DebertaV2Tokenizer(vocab=vocab, do_lower_case=False, split_by_punct=False, add_prefix_space=True,
                                **common)
    else:
        raise ValueError(name)
    assert [hf.convert_tokens_to_ids(s) for s in specials] == list(range(len(specials))), name
    return hf


def make_config(name: str, vocab_size: int, id2label: dict):
    from transformers import BertConfig, DebertaV2Config, RobertaConfig, XLMRobertaConfig

    labels = dict(id2label=dict(id2label), label2id={v: k for k, v in id2label.items()})
    if name == "bert":
        return BertConfig(vocab_size=vocab_size, max_position_embeddings=MAX_TOKENS, type_vocab_size=2,
                          pad_token_id=0, hidden_act="gelu", **HIDDEN, **labels)
    if name in ("roberta", "xlm-roberta"):
        cls = RobertaConfig if name == "roberta" else XLMRobertaConfig
        # positions start at padding_idx + 1 = 2, so 64 tokens need 66 position embeddings
        return cls(vocab_size=vocab_size, max_position_embeddings=MAX_TOKENS + 2, type_vocab_size=1,
                   pad_token_id=1, bos_token_id=0, eos_token_id=2, hidden_act="gelu", **HIDDEN, **labels)
    if name == "deberta-v3":
        return DebertaV2Config(
            vocab_size=vocab_size, max_position_embeddings=MAX_TOKENS, type_vocab_size=0, pad_token_id=0,
            relative_attention=True, position_biased_input=False, pos_att_type=["p2c", "c2p"],
            max_relative_positions=-1, position_buckets=32, norm_rel_ebd="layer_norm", share_att_key=True,
            hidden_act="gelu", pooler_hidden_act="gelu", pooler_hidden_size=32, pooler_dropout=0,
            layer_norm_eps=1e-7, **HIDDEN, **labels)
    raise ValueError(name)


def perturb(model, seed: int) -> None:
    """Non-degenerate random weights: matrices N(0, .2), LayerNorm gains 1 + N(0, .1), biases N(0, .1)."""
    import torch

    norm_params = set()
    for mod in model.modules():
        if "layernorm" in type(mod).__name__.lower():
            for p in mod.parameters(recurse=False):
                norm_params.add(id(p))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            elif id(p) in norm_params and pname.endswith("weight"):
                p.copy_(1.0 + torch.randn(p.shape, generator=g) * 0.1)
            elif pname.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            else:
                raise RuntimeError(f"unclassified parameter {pname} {tuple(p.shape)}")


# ---------------------------------------------------------------------------------------------
# The window rule (mirrors stancer's Rust implementation).
# ---------------------------------------------------------------------------------------------


def window_starts(n: int, body: int) -> list:
    """Start offsets (into the premise content ids) of the windows for n premise tokens."""
    if n <= body:
        return [0]
    overlap = body // 4
    stride = body - overlap
    starts = []
    s = 0
    while s + body < n:
        starts.append(s)
        s += stride
    starts.append(n - body)  # the last window ends exactly at the end
    return starts


def build_windows(tok, premise: str, hypothesis: str, specials: int):
    """[(ids, type_ids)] for each window: the pair template around (window of premise, whole hypothesis)."""
    ep = tok.encode(premise, add_special_tokens=False)
    eh = tok.encode(hypothesis, add_special_tokens=False)
    n = len(ep.ids)
    body = MAX_TOKENS - specials - len(eh.ids)
    assert body > 0, (premise[:30], hypothesis)
    out = []
    for s in window_starts(n, body):
        w = tok.encode(premise, add_special_tokens=False)
        if n > body:
            w.truncate(n - s, direction="left")  # drop the first s tokens
            w.truncate(body, direction="right")  # keep `body` tokens
            assert w.ids == ep.ids[s:s + body]
        enc = tok.post_process(w, tok.encode(hypothesis, add_special_tokens=False), add_special_tokens=True)
        out.append((list(enc.ids), list(enc.type_ids)))
    return out, n, len(eh.ids), body


def manual_template(name: str, p: list, h: list, special_ids: dict):
    """The expected pair sequence, written out by hand (cross-checks tok.post_process)."""
    if name in ("bert", "deberta-v3"):
        c, s = special_ids["cls"], special_ids["sep"]
        return [c] + p + [s] + h + [s], [0] * (len(p) + 2) + [1] * (len(h) + 1)
    c, s = special_ids["cls"], special_ids["sep"]
    return [c] + p + [s, s] + h + [s], None  # type ids: whatever the post-processor says


def boundary_premise(tok, target: int, source: str) -> str:
    """A prefix of `source` (whole words) padded with one-token filler words to exactly `target` tokens."""
    def count(t):
        return len(tok.encode(t, add_special_tokens=False).ids)

    words = source.split()
    lo, hi = 0, len(words)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(" ".join(words[:mid])) <= target - 2:
            lo = mid
        else:
            hi = mid - 1
    base = " ".join(words[:lo])
    for filler in FILLER_WORDS:
        text = base
        while count(text) < target:
            text = text + " " + filler
        if count(text) == target:
            return text
    raise RuntimeError(f"could not hit {target} tokens")


# ---------------------------------------------------------------------------------------------
# Main (runs inside .venv-ref/).
# ---------------------------------------------------------------------------------------------


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--setup-only", action="store_true")
    args = ap.parse_args()
    if args.setup_only:
        return

    import json
    import platform
    import shutil

    import numpy as np
    import safetensors
    import tokenizers
    import torch
    import transformers
    from tokenizers import Tokenizer
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(1)  # small and deterministic; the machine is shared
    torch.use_deterministic_algorithms(True)
    t_start = time.monotonic()

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
    }
    print("versions:", json.dumps(versions))

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = corpus()
    print(f"tokenizer corpus: {len(texts)} texts")

    from transformers import (BertForSequenceClassification, DebertaV2ForSequenceClassification,
                              RobertaForSequenceClassification, XLMRobertaForSequenceClassification)
    model_classes = {
        "bert": BertForSequenceClassification,
        "roberta": RobertaForSequenceClassification,
        "xlm-roberta": XLMRobertaForSequenceClassification,
        "deberta-v3": DebertaV2ForSequenceClassification,
    }

    pair_records = []
    zs_records = []
    encoder_records = []
    manifest = {"max_tokens": MAX_TOKENS, "versions": versions, "models": {}}

    for name, spec in MODELS.items():
        t_model = time.monotonic()
        folder = out_dir / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)

        # ---- tokenizer ----------------------------------------------------------------------
        hf_tok = build_tokenizer(name, texts)
        # training again (new HashMap seeds inside `tokenizers`) must give the very same tokenizer
        again = build_tokenizer(name, texts)
        assert hf_tok.backend_tokenizer.to_str() == again.backend_tokenizer.to_str(), f"{name}: training not deterministic"
        del again
        hf_tok.save_pretrained(str(folder))
        vocab_size = len(hf_tok)
        assert 1000 <= vocab_size <= 2000, (name, vocab_size)

        # ---- model --------------------------------------------------------------------------
        config = make_config(name, vocab_size, spec["id2label"])
        torch.manual_seed(spec["seed"])
        model = model_classes[name](config)
        perturb(model, spec["seed"])
        model.eval()
        model.save_pretrained(str(folder))  # transformers 5.x always writes model.safetensors
        del model
        for f in folder.iterdir():
            f.chmod(0o644)  # safetensors writes 0600
        assert sorted(f.name for f in folder.iterdir()) == [
            "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"], list(folder.iterdir())
        folder_bytes = sum(f.stat().st_size for f in folder.iterdir())
        assert folder_bytes < 1_000_000, (name, folder_bytes)

        # ---- reload exactly as a user would ---------------------------------------------------
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tok.no_padding()
        tok.no_truncation()
        auto_tok = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModelForSequenceClassification.from_pretrained(str(folder))
        model.eval()
        assert type(model).__name__ == model_classes[name].__name__, type(model)
        assert auto_tok.model_max_length == MAX_TOKENS, auto_tok.model_max_length
        feeds_type_ids = "token_type_ids" in auto_tok.model_input_names
        if name == "bert":
            assert feeds_type_ids

        # The backend transformers actually uses must equal tokenizer.json (what stancer loads).
        file_json = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
        used_json = json.loads(auto_tok.backend_tokenizer.to_str())
        for key in ("normalizer", "pre_tokenizer", "post_processor", "decoder", "model"):
            assert file_json[key] == used_json[key], (name, key, file_json[key], used_json[key])

        special_ids = {
            "cls": auto_tok.cls_token_id, "sep": auto_tok.sep_token_id, "pad": auto_tok.pad_token_id,
            "unk": auto_tok.unk_token_id,
        }
        single_specials = tok.post_processor.num_special_tokens_to_add(False)
        pair_specials = tok.post_processor.num_special_tokens_to_add(True)
        assert pair_specials == (3 if name in ("bert", "deberta-v3") else 4), (name, pair_specials)
        # the model's unk id must be the real [UNK]/<unk> (DebertaV2Tokenizer guesses it from the vocab)
        assert json.loads(tok.to_str())["model"].get("unk_id", special_ids["unk"]) == special_ids["unk"]

        def run_model(ids, type_ids):
            inputs = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
            if feeds_type_ids:
                inputs["token_type_ids"] = torch.tensor([type_ids])
            with torch.no_grad():
                return model(**inputs).logits[0].float().numpy()

        # ---- pairs -------------------------------------------------------------------------
        cases = list(PAIR_CASES)
        h_pol_len = len(tok.encode(H_POLITICS, add_special_tokens=False).ids)
        body_pol = MAX_TOKENS - pair_specials - h_pol_len
        stride_pol = body_pol - body_pol // 4
        targets = {"body": body_pol, "body+1": body_pol + 1, "body+stride": body_pol + stride_pol,
                   "body+stride+1": body_pol + stride_pol + 1}
        for kind in BOUNDARY_KINDS:
            cases.append((f"exact-{kind}", boundary_premise(tok, targets[kind], LONG_AUTOMATION), H_POLITICS))
        names = [c[0] for c in cases]
        assert len(set(names)) == len(names), "duplicate names"

        all_windows = []  # (ids, type_ids, logits) for the padded-batch check
        model_pairs = []
        for case_name, premise, hypothesis in cases:
            windows, n_p, n_h, body = build_windows(tok, premise, hypothesis, pair_specials)
            p_ids = tok.encode(premise, add_special_tokens=False).ids
            h_ids = tok.encode(hypothesis, add_special_tokens=False).ids
            starts = window_starts(n_p, body)
            for (ids, type_ids), s in zip(windows, starts):
                exp_ids, exp_types = manual_template(name, p_ids[s:s + body], h_ids, special_ids)
                assert ids == exp_ids, (name, case_name)
                if exp_types is not None:
                    assert type_ids == exp_types, (name, case_name)
                assert len(ids) <= MAX_TOKENS
            if len(windows) == 1:
                enc = auto_tok(premise, hypothesis, truncation=False)
                assert list(enc["input_ids"]) == windows[0][0], (name, case_name)
                if "token_type_ids" in enc:
                    assert list(enc["token_type_ids"]) == windows[0][1], (name, case_name)
            else:
                assert max(len(w[0]) for w in windows) == MAX_TOKENS, (name, case_name)

            wl = []
            for ids, type_ids in windows:
                lg = run_model(ids, type_ids)
                wl.append(lg)
                all_windows.append((ids, type_ids, lg))
            lens = np.asarray([len(w[0]) for w in windows], dtype=np.float64)
            combined = (lens[:, None] * np.stack(wl).astype(np.float64)).sum(axis=0) / lens.sum()

            if len(windows) == 1:
                # the transformers way: tokenizer(premise, hypothesis) -> only model_input_names
                enc = auto_tok(premise, hypothesis, return_tensors="pt")
                with torch.no_grad():
                    ref = model(**{k: enc[k] for k in auto_tok.model_input_names}).logits[0].numpy()
                assert np.array_equal(ref, wl[0]), (name, case_name, ref, wl[0])

            rec = {
                "model": name,
                "name": case_name,
                "premise": premise,
                "hypothesis": hypothesis,
                "max_tokens": MAX_TOKENS,
                "windows": [{"ids": ids, "type_ids": type_ids} for ids, type_ids in windows],
                "window_logits": [[fmt_f32(x) for x in lg.tolist()] for lg in wl],
                "logits": [fmt_f32(x) for x in combined.tolist()],
            }
            model_pairs.append(rec)
            print(f"  {name:11s} {case_name:30s} p={n_p:4d} h={n_h:3d} body={body:3d} windows={len(windows)}"
                  f"{' starts=' + str(starts) if len(starts) > 1 else ''}")
        pair_records.extend(model_pairs)

        # logits must differ visibly between inputs
        logit_std = np.std(np.stack([np.asarray(r["logits"]) for r in model_pairs]), axis=0)
        assert logit_std.min() > MIN_LOGIT_STD, (name, logit_std)

        # padded batch of all windows == windows run alone
        pad_id = special_ids["pad"]
        maxlen = max(len(w[0]) for w in all_windows)
        ids_b = torch.full((len(all_windows), maxlen), pad_id, dtype=torch.long)
        mask_b = torch.zeros((len(all_windows), maxlen), dtype=torch.long)
        types_b = torch.zeros((len(all_windows), maxlen), dtype=torch.long)
        for i, (ids, type_ids, _) in enumerate(all_windows):
            ids_b[i, :len(ids)] = torch.tensor(ids)
            mask_b[i, :len(ids)] = 1
            types_b[i, :len(ids)] = torch.tensor(type_ids)
        batch_inputs = {"input_ids": ids_b, "attention_mask": mask_b}
        if feeds_type_ids:
            batch_inputs["token_type_ids"] = types_b
        with torch.no_grad():
            batch_logits = model(**batch_inputs).logits.numpy()
        single = np.stack([w[2] for w in all_windows])
        batch_diff = float(np.abs(batch_logits - single).max())
        assert batch_diff < PADDED_BATCH_TOL, (name, batch_diff)

        # ---- zero-shot pipeline ---------------------------------------------------------------
        clf = pipeline("zero-shot-classification", model=str(folder), tokenizer=str(folder), device="cpu")
        entail_id = clf.entailment_id
        zs_cases = []
        for seq_name, seq, labels in ZS_SEQUENCES:
            for tmpl_name, tmpl in ZS_TEMPLATES:
                for multi in (False, True):
                    zs_cases.append((f"{seq_name}-{tmpl_name}-{'multi' if multi else 'single'}",
                                     seq, labels, tmpl, multi, False))
        zs_cases.append((ZS_SINGLE_LABEL[0], ZS_SINGLE_LABEL[1], ZS_SINGLE_LABEL[2], "This example is {}.", False,
                         False))
        for seq_name, seq, labels in ZS_TRUNCATED:
            zs_cases.append((seq_name, seq, labels, "This example is {}.", False, True))
            zs_cases.append((seq_name + "-multi", seq, labels, "This example is {}.", True, True))
        worst_zs = 0.0
        for case_name, seq, labels, tmpl, multi, truncated in zs_cases:
            hyps = [tmpl.format(lab) for lab in labels]
            fits = all(len(build_windows(tok, seq, h, pair_specials)[0]) == 1 for h in hyps)
            assert fits != truncated, (name, case_name)
            res = clf(seq, candidate_labels=labels, hypothesis_template=tmpl, multi_label=multi)
            scores = dict(zip(res["labels"], res["scores"]))
            if not truncated:
                # recompute from the window logits: one window each
                lg = np.stack([run_model(*build_windows(tok, seq, h, pair_specials)[0][0]) for h in hyps])
                lg = lg.astype(np.float64)
                if multi or len(labels) == 1:
                    contr = -1 if entail_id == 0 else 0
                    ec = lg[:, [contr, entail_id]]
                    mine = np.exp(ec[:, 1]) / np.exp(ec).sum(axis=1)
                else:
                    e = np.exp(lg[:, entail_id])
                    mine = e / e.sum()
                for lab, m in zip(labels, mine):
                    worst_zs = max(worst_zs, abs(scores[lab] - m))
                    assert abs(scores[lab] - m) < PIPELINE_TOL, (name, case_name, lab, scores[lab], m)
            zs_records.append({
                "model": name,
                "name": case_name,
                "sequence": seq,
                "candidate_labels": labels,
                "template": tmpl,
                "multi_label": multi,
                "truncated": truncated,
                "scores": {lab: fmt_f32(scores[lab]) for lab in labels},
            })

        # ---- as a sentence encoder (the same weights, without the head) ------------------------
        # sentence-transformers' recipe: the base model's last hidden states, mean over every real
        # token (special tokens included), L2-normalised. Texts that fit one window.
        base = model.base_model
        for case_name, premise, _ in PAIR_CASES:
            enc = auto_tok(premise, truncation=False)
            ids = list(enc["input_ids"])
            if len(ids) > MAX_TOKENS:
                continue
            assert ids == tok.encode(premise).ids, (name, case_name)
            inputs = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
            if feeds_type_ids:
                inputs["token_type_ids"] = torch.zeros(1, len(ids), dtype=torch.long)
            with torch.no_grad():
                hidden = base(**inputs).last_hidden_state[0].double().numpy()
            mean = hidden.mean(axis=0)
            vector = mean / np.linalg.norm(mean)
            encoder_records.append({
                "model": name,
                "name": case_name,
                "text": premise,
                "ids": ids,
                "embedding": [fmt_f32(x) for x in vector.tolist()],
            })

        manifest["models"][name] = {
            "architecture": model_classes[name].__name__,
            "tokenizer_class": type(auto_tok).__name__,
            "id2label": {str(k): v for k, v in spec["id2label"].items()},
            "entailment_id": entail_id,
            "pair_special_tokens": pair_specials,
            "single_special_tokens": single_specials,
            "model_input_names": list(auto_tok.model_input_names),
            "feeds_token_type_ids": feeds_type_ids,
            "special_ids": special_ids,
            "vocab_size": vocab_size,
            "boundary_premise_tokens": targets,
        }
        print(f"{name}: vocab={vocab_size} specials(pair)={pair_specials} inputs={auto_tok.model_input_names} "
              f"entailment_id={entail_id} logit std={np.round(logit_std, 3).tolist()} "
              f"padded-batch max diff={batch_diff:.1e} pipeline max diff={worst_zs:.1e} "
              f"({time.monotonic() - t_model:.1f} s)")

    with open(out_dir / "pairs.jsonl", "w", encoding="utf-8", newline="\n") as f:
        for r in pair_records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(out_dir / "zero_shot.jsonl", "w", encoding="utf-8", newline="\n") as f:
        for r in zs_records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(out_dir / "encoder.jsonl", "w", encoding="utf-8", newline="\n") as f:
        for r in encoder_records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(out_dir / "manifest.json", "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
    print(f"wrote {out_dir}: {len(pair_records)} pairs, {len(zs_records)} zero-shot cases, "
          f"{len(encoder_records)} encoder texts "
          f"in {time.monotonic() - t_start:.1f} s")


if __name__ == "__main__":
    main()
